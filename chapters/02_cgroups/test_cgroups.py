"""Chapter 02: cgroups, what the process may use.   Check your work: pytest chapters/02_cgroups"""
import platform
import subprocess
from pathlib import Path

from chapters.harness import LAB, inspect, wait_running
from lab import cgroups, syscalls

# Every loop here is bounded, so that a runtime whose limits do not work fails the test
# without hurting the machine: at most ~1 GB of memory, 40 processes, 2 s of CPU.
MEMORY_HOG = 'x=a; i=0; while [ $i -lt 28 ]; do x=$x$x; i=$((i+1)); done'
FORK_BOMB = 'i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; wait'
# (timeout runs under a shell: as PID 1 the loop would ignore timeout's SIGTERM, see chapter 01)
BUSY_LOOP = ["sh", "-c", "timeout 2 dd if=/dev/zero of=/dev/null bs=1 2>/dev/null; true"]   # (in the kernel mostly)


def test_a_memory_hog_is_oom_killed_exits_137_and_inspect_says_so(lab):
    result = lab("run", "--name", "hog", "-m", "32m", "busybox", "sh", "-c", MEMORY_HOG)
    assert result.returncode == 137
    assert "ran out of memory (limit 32m)" in result.stderr
    info = inspect("hog")
    assert info["State"]["OOMKilled"] is True and info["HostConfig"]["Memory"] == 32 << 20
    peak = info["Cgroup"]["MemoryPeak"]
    if peak is None:            # cgroup v2 has memory.peak only from Linux 5.19 on
        release = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:2])
        assert cgroups.version() == "v2" and release < (5, 19), "no MemoryPeak recorded"
    else:
        assert 16 << 20 < peak <= 32 << 20, f"MemoryPeak {peak}: the most it used (it died at the limit), not what it uses now"
    lab("rm", "hog")


def test_a_fork_bomb_is_stopped_at_the_pids_limit(lab):
    assert lab("run", "--name", "bomb", "--pids-limit", "20", "busybox", "sh", "-c", FORK_BOMB).returncode != 0
    assert inspect("bomb")["Cgroup"]["PidsRefused"] > 0       # the kernel said no to forks
    assert lab("run", "--name", "roomy", "--pids-limit", "50", "busybox", "sh", "-c", FORK_BOMB).returncode == 0
    assert inspect("roomy")["Cgroup"]["PidsRefused"] == 0
    lab("rm", "bomb", "roomy")


def test_cpus_holds_a_busy_loop_to_its_share_by_the_cgroups_own_counters(lab):
    assert lab("run", "--name", "spin", "--cpus", "0.2", "busybox", *BUSY_LOOP).returncode == 0
    cgroup = inspect("spin")["Cgroup"]
    lab("rm", "spin")
    # CPU time used per scheduler period (100 ms) in which it wanted to run: at most 0.2.
    share = cgroup["CpuTimeSeconds"] / (cgroup["CpuPeriods"] * 0.1)
    assert cgroup["CpuThrottled"] > 0 and 0.1 <= share <= 0.22, cgroup


def test_the_container_runs_in_a_cgroup_of_its_own_that_is_gone_after(lab):
    run = subprocess.Popen([LAB, "run", "--name", "own", "-m", "64m", "busybox", "sleep", "30"],
                           stderr=subprocess.PIPE, text=True)
    paths = {}
    try:
        info = wait_running("own", run)
        paths = info["Cgroup"]["Paths"]
        assert paths, "the running container has no cgroup"
        name = f"lab-{info['Id'][:12]}"
        for path in paths.values():
            assert path.endswith("/" + name)
            assert int(Path(path, "cgroup.procs").read_text().split()[0]) == info["State"]["Pid"]
        seen_by_the_host = Path(f"/proc/{info['State']['Pid']}/cgroup").read_text().splitlines()
        assert any(line.endswith("/" + name) for line in seen_by_the_host)
        memory = Path(paths.get("memory") or paths["unified"])          # -m 64m, and no swap past it:
        if (memory / "memory.limit_in_bytes").exists():                  # v1: memory + swap, or no swapping
            swap = memory / ("memory.memsw.limit_in_bytes" if (memory / "memory.memsw.limit_in_bytes").exists()
                             else "memory.swappiness")
            expected = str(64 << 20) if swap.name.startswith("memory.memsw") else "0"
        else:                                                            # v2: swap counted apart
            swap, expected = memory / "memory.swap.max", "0"
        assert not swap.exists() or swap.read_text().strip() == expected, \
            f"{swap.name} is {swap.read_text().strip()}: the container may swap past -m"
    finally:
        lab("rm", "-f", "own")
        run.wait(timeout=15)
    assert not any(Path(p).exists() for p in paths.values())


def test_the_process_is_born_in_its_cgroup_on_v2_and_joins_it_on_v1(lab, monkeypatch):
    """The lesson's "Joining costs": on v2, clone3(CLONE_INTO_CGROUP) creates the child in its
    cgroup (the parent's step that opens the folder, no join); on v1 (and on v2 before Linux 5.7,
    which has no CLONE_INTO_CGROUP) the child joins after its fork. lab's trace (LAB_TRACE=1)
    names the steps that ran."""
    monkeypatch.setenv("LAB_TRACE", "1")
    result = lab("run", "--rm", "-m", "64m", "busybox", "true")
    assert result.returncode == 0, result.stderr
    steps = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("lab-trace: ")]
    born = cgroups.version() == "v2" and syscalls.KERNEL >= (5, 7)
    expected, other = ("cgroups.birthplace", "cgroups.join") if born else ("cgroups.join", "cgroups.birthplace")
    assert expected in steps and other not in steps, result.stderr
