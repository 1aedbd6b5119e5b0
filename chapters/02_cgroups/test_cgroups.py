"""Chapter 02: cgroups, what the process may use.   Check your work: pytest chapters/02_cgroups"""
import os
import platform
import subprocess
from pathlib import Path

import pytest

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
    assert result.returncode == 137, (f"exit status {result.returncode}: the hog outlived -m 32m; is the container in "
                                      "its memory cgroup (join: every folder) and memory.limit_in_bytes set?")
    assert "ran out of memory (limit 32m)" in result.stderr, \
        "exit 137 under -m, but lab did not see an OOM kill: stats() reads oom_kill (v1: memory.oom_control; v2: memory.events)"
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
    assert cgroup["CpuThrottled"] > 0 and 0.1 <= share <= 0.22, (
        f"--cpus 0.2 should hold it to 0.2 of a CPU in each period, throttled: {share:.2f} of a CPU in "
        f"{cgroup['CpuPeriods']} periods, {cgroup['CpuThrottled']} throttled, {cgroup['CpuTimeSeconds']} s")


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
            procs = Path(path, "cgroup.procs").read_text().split()
            assert procs, f"{path} holds no process: the container did not join it (join: every folder)"
            assert int(procs[0]) == info["State"]["Pid"]
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


# A new cgroup's files as the kernel makes them (those set_limits may write), with their defaults.
DEFAULTS = {"v2": {"memory.max": "max", "memory.swap.max": "max", "cpu.max": "max 100000", "pids.max": "max"},
            "v1": {"memory/memory.limit_in_bytes": "9223372036854771712", "memory/memory.swappiness": "60",
                   "memory/memory.memsw.limit_in_bytes": "9223372036854771712", "cpu/cpu.cfs_period_us": "100000",
                   "cpu/cpu.cfs_quota_us": "-1", "pids/pids.max": "max"}}


def plain_cgroup(version: str, folder: Path) -> cgroups.Cgroup:
    """A cgroup whose folders are plain ones, with the kernel's files and defaults: what set_limits,
    stats and join write and read there can be seen on any host (v2's code on a v1 machine too)."""
    for name, default in DEFAULTS[version].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(default + "\n")
    if version == "v2":
        return cgroups.CgroupV2({"unified": folder})
    (folder / "devices").mkdir()
    return cgroups.CgroupV1({c: folder / c.replace("cpuacct", "cpu") for c in cgroups.CgroupV1.CONTROLLERS})  # (one folder)


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text().strip() for p in sorted(folder.rglob("*")) if p.is_file()}


WRITTEN = {"v2": {"memory.max": "67108864", "memory.swap.max": "0", "cpu.max": "50000 100000", "pids.max": "7"},
           "v1": {"memory/memory.limit_in_bytes": "67108864", "memory/memory.swappiness": "60",
                  "memory/memory.memsw.limit_in_bytes": "67108864", "cpu/cpu.cfs_period_us": "100000",
                  "cpu/cpu.cfs_quota_us": "50000", "pids/pids.max": "7"}}


@pytest.mark.parametrize("version", [cgroups.version()])     # (the lesson: your machine's version)
def test_set_limits_writes_each_limit_into_its_file_and_leaves_the_others(version, tmp_path):
    cgroup = plain_cgroup(version, tmp_path)
    cgroup.set_limits(cgroups.Limits())
    assert files(tmp_path) == DEFAULTS[version], \
        "set_limits(Limits()) changed files: a limit that is None is no limit, and its file stays as it is"
    cgroup.set_limits(cgroups.Limits(memory=64 << 20, cpus=0.5, pids=7))     # -m 64m --cpus 0.5 --pids-limit 7
    assert files(tmp_path) == WRITTEN[version], f"cgroup {version}: the files and what they hold"
    if version == "v1":                                          # a kernel booted with swapaccount=0
        memory = tmp_path / "memory"
        (memory / "memory.memsw.limit_in_bytes").unlink()
        cgroup.set_limits(cgroups.Limits(memory=32 << 20))
        assert (memory / "memory.limit_in_bytes").read_text().strip() == "33554432"
        assert not (memory / "memory.memsw.limit_in_bytes").exists(), "memsw written where the kernel has none"
        assert (memory / "memory.swappiness").read_text().strip() == "0", \
            "no memsw files: memory.swappiness 0, or the container may swap past -m"


COUNTED = {"v2": {"memory.peak": "33554432", "memory.current": "4096", "memory.events": "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1",
                  "cpu.stat": "usage_usec 420000\nuser_usec 400000\nsystem_usec 20000\nnr_periods 21\nnr_throttled 7\nthrottled_usec 5",
                  "pids.current": "2", "pids.events": "max 3"},
           "v1": {"memory/memory.max_usage_in_bytes": "33554432", "memory/memory.usage_in_bytes": "4096",
                  "memory/memory.failcnt": "9", "memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1",
                  "cpu/cpuacct.usage": "420000000", "cpu/cpu.stat": "nr_periods 21\nnr_throttled 7\nthrottled_time 5",
                  "pids/pids.current": "2", "pids/pids.events": "max 3"}}


@pytest.mark.parametrize("version", [cgroups.version()])     # (the lesson: your machine's version)
def test_stats_reads_each_counter_from_its_file(version, tmp_path):
    cgroup = plain_cgroup(version, tmp_path)
    for name, text in COUNTED[version].items():
        (tmp_path / name).write_text(text + "\n")
    assert cgroup.stats() == {"MemoryPeak": 33554432, "CpuUsageNs": 420000000, "CpuPeriods": 21, "CpuThrottled": 7,
                              "OOMKills": 1, "PidsRefused": 3}, f"cgroup {version}: the counters, from the files above"


@pytest.mark.parametrize("version", [cgroups.version()])     # (the lesson: your machine's version)
def test_join_writes_into_every_folder_of_the_cgroup(version, tmp_path):
    cgroup = plain_cgroup(version, tmp_path)
    cgroup.join()
    for folder in cgroup.folders():
        moved = folder / cgroup.MOVE_FILE
        assert moved.exists(), (f"join() wrote nothing into {moved}: every folder's {cgroup.MOVE_FILE}" +
                                (" (v1: tasks moves one thread, and skips the lock a process's move takes: "
                                 "the lesson's 'Joining costs')" if version == "v1" else ""))
        assert moved.read_text().strip() in ("0", str(os.getpid())), f"{moved}: 0, the process that writes"
