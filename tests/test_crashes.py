"""The runtime never loses track of a container: damaged records, killed commands, races.

State on disk is the truth, so each test damages it or kills a `lab` at a bad moment, then
checks that `lab ps -a` still tells the truth and `lab rm -f` still removes everything (the
harness checks that no process, cgroup or mount is left after each test).
"""
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

from conftest import LAB, wait_running


def root() -> Path:
    return Path(os.environ["LAB_ROOT"])


def folder(lab, name) -> Path:
    return root() / "containers" / json.loads(lab("inspect", name).stdout)[0]["Id"]


def test_a_damaged_record_affects_only_its_own_container(lab):
    for name in ("empty-state", "half-config"):
        assert lab("run", "--name", name, "busybox", "true").returncode == 0
    assert lab("run", "-d", "--name", "healthy", "busybox", "sleep", "600").returncode == 0
    (folder(lab, "empty-state") / "state.json").write_text("")
    half = folder(lab, "half-config")
    (half / "config.json").write_text((half / "config.json").read_text()[:40])
    interrupted = root() / "containers" / ("ab" * 32)          # a create that never wrote its config
    interrupted.mkdir()
    (interrupted / ".config.json.999999999.tmp").write_text("{")
    listed = lab("ps", "-a")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("Damaged") == 3 and "healthy" in listed.stdout, listed.stdout
    for command in (["inspect", "healthy"], ["logs", "healthy"], ["exec", "healthy", "true"], ["ps"]):
        assert lab(*command).returncode == 0, command
    assert "is damaged" in lab("rm", "empty-state").stderr             # rm without -f says how
    removed = lab("rm", "-f", "empty-state", half.name, interrupted.name, "healthy")
    assert removed.returncode == 0, removed.stderr
    assert lab("ps", "-a", "-q").stdout == ""
    assert list((root() / "containers").iterdir()) == [root() / "containers" / ".lock"]


def test_names_are_unique_when_ten_runs_race_for_one(lab):
    runs = [subprocess.Popen([LAB, "run", "--name", "dup", "busybox", "true"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(10)]
    statuses = [run.wait(timeout=60) for run in runs]
    errors = [run.stderr.read() for run in runs]
    try:
        assert statuses.count(0) == 1, errors
        assert all('name "dup" is already in use' in e for s, e in zip(statuses, errors) if s != 0)
    finally:
        lab("rm", "-f", "dup")


def test_a_container_whose_lab_run_was_killed_is_found_stopped_and_removed(lab):
    run = subprocess.Popen([LAB, "run", "--name", "orphan", "busybox", "sh", "-c", "trap '' TERM; sleep 600"],
                           stderr=subprocess.PIPE, text=True)
    wait_running("orphan", run)
    run.kill()
    run.wait()
    assert "Up " in lab("ps").stdout and "unwatched" in lab("ps").stdout
    stopped = lab("stop", "-t", "0.5", "orphan")                      # it ignores TERM: killed after 0.5 s
    assert stopped.returncode == 0, stopped.stderr
    assert "Exited (137)" in lab("ps", "-a").stdout
    assert lab("rm", "orphan").returncode == 0


def test_killing_lab_run_supervisors_and_imports_at_random_moments_leaves_nothing(lab, tmp_path):
    # A few dozen SIGKILLs at random points of a start, a supervised start, an import and a
    # commit; after each, ps -a must work and rm -f must remove whatever is there.
    rng = random.Random(8)
    lab("run", "--name", "base", "busybox", "sh", "-c", "echo layer > /made")
    (tmp_path / "rootfs").mkdir()
    subprocess.run(["tar", "-C", str(tmp_path / "rootfs"), "-cf", str(tmp_path / "rootfs.tar"), "."], check=True)
    commands = [["run", "--rm", "busybox", "sleep", "600"], ["run", "-d", "busybox", "sleep", "600"],
                ["image", "import", str(tmp_path / "rootfs.tar"), "imported:x"], ["commit", "base", "committed:x"]]
    for trial in range(24):
        command = commands[trial % len(commands)]
        victim = subprocess.Popen([LAB, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, 0.08))
        victim.kill()
        victim.wait()
        for pid in supervisors():                                     # and, sometimes, a supervisor
            if rng.random() < 0.5:
                os.kill(pid, signal.SIGKILL)
        listed = lab("ps", "-a", "-q")
        assert listed.returncode == 0, listed.stderr
        others = [c for c in listed.stdout.split() if c != folder(lab, "base").name[:12]]
        if others:
            removed = lab("rm", "-f", *others)
            assert removed.returncode == 0, removed.stderr
        assert lab("images").returncode == 0
    lab("rm", "-f", "base")
    for ref in ("imported:x", "committed:x"):
        lab("rmi", ref)
    lab("image", "import", str(tmp_path / "rootfs.tar"), "cleanup:x")            # the next import cleans up
    lab("rmi", "cleanup:x")
    assert [p.name for p in (root() / "layers").glob(".*") if p.name != ".lock"] == []


def supervisors() -> list[int]:
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "lab-supervisor" and \
                    os.environ["LAB_ROOT"] in (comm.parent / "environ").read_bytes().decode(errors="replace"):
                found.append(int(comm.parent.name))
        except OSError:
            pass
    return found
