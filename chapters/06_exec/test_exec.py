"""Chapter 06: exec, entering a running container.   Check your work: pytest chapters/06_exec"""
import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import LAB


@pytest.fixture
def box(lab, tmp_path):
    """A running container, "box", with a file of its own and a volume; removed afterwards."""
    started = lab("run", "-d", "--name", "box", "--hostname", "boxhost", "-v", f"{tmp_path}:/shared",
                  "busybox", "sh", "-c", "echo mine > /mine; exec sleep 600")
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 30
        while lab("exec", "box", "test", "-e", "/mine").returncode != 0:    # its first command has run
            assert time.monotonic() < deadline, "the container did not start"
            time.sleep(0.05)
        yield json.loads(lab("inspect", "box").stdout)[0]
    finally:
        lab("rm", "-f", "box")


def test_exec_runs_in_the_containers_namespaces(lab, box, tmp_path):
    (tmp_path / "from-host").write_text("hello\n")
    result = lab("exec", "box", "sh", "-c", "hostname; cat /mine /shared/from-host; ps -o pid,args")
    hostname, mine, shared, header, *processes = result.stdout.splitlines()
    assert (hostname, mine, shared) == ("boxhost", "mine", "hello")
    assert processes[0].split() == ["1", "sleep", "600"]          # its init is PID 1: the same PID namespace
    assert len(processes) <= 4                                     # and nothing of the host's


def test_the_exec_process_counts_in_the_containers_cgroup(lab, box):
    procs = Path(next(iter(box["Cgroup"]["Paths"].values()))) / "cgroup.procs"
    before = set(procs.read_text().split())
    run = subprocess.Popen([LAB, "exec", "box", "sleep", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    joined = set()
    deadline = time.monotonic() + 30
    while not joined and run.poll() is None and time.monotonic() < deadline:
        joined = set(procs.read_text().split()) - before
        time.sleep(0.02)
    assert run.wait(timeout=30) == 0, run.stderr.read().decode()
    assert len(joined) == 1, "the exec'd process never showed up in the container's cgroup"


def test_nsenter_from_the_host_agrees(lab, box):
    enter = ["nsenter", "-t", str(box["State"]["Pid"]), "-a"]
    seen = subprocess.run([*enter, "sh", "-c", "hostname; cat /mine"], capture_output=True, text=True)
    assert seen.stdout == lab("exec", "box", "sh", "-c", "hostname; cat /mine").stdout == "boxhost\nmine\n"


def test_exec_passes_on_the_status_environment_and_working_directory(lab, box):
    result = lab("exec", "-e", "GREETING=hi", "-w", "/etc", "box", "sh", "-c", 'echo "$GREETING from $(pwd)"; exit 3')
    assert (result.returncode, result.stdout) == (3, "hi from /etc\n")
    assert lab("exec", "box", "no-such-command").returncode == 127


def test_exec_reads_stdin_with_dash_i(lab, box):
    assert lab("exec", "-i", "box", "tr", "a-z", "A-Z", input="shout\n").stdout == "SHOUT\n"


def test_exec_into_a_stopped_or_unknown_container_fails_clearly(lab):
    lab("run", "-d", "--name", "ending", "busybox", "sleep", "600")
    try:
        assert lab("exec", "ending", "true").returncode == 0          # while it runs
        lab("stop", "-t", "0", "ending")
        stopped = lab("exec", "ending", "true")
    finally:
        lab("rm", "-f", "ending")
    assert stopped.returncode == 125 and stopped.stderr == \
        "lab: error: container ending is not running (`lab ps -a` shows how it ended)\n"
    unknown = lab("exec", "nobody-here", "true")
    assert unknown.returncode == 125 and "no such container: nobody-here" in unknown.stderr
