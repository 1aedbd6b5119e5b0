"""Chapter 06: exec, entering a running container.   Check your work: pytest chapters/06_exec"""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from chapters.harness import LAB, in_child, inspect, wait_until
from lab import exec as enter
from lab import syscalls


@pytest.fixture
def box(lab, detached, tmp_path):
    """A running container, "box", with a file of its own and a volume; removed afterwards."""
    detached("box", "--hostname", "boxhost", "-v", f"{tmp_path}:/shared",
             "busybox", "sh", "-c", "echo mine > /mine; exec sleep 600")

    def first_command_done():
        tried = lab("exec", "box", "test", "-e", "/mine")    # 1: not yet; 125: lab exec failed
        assert tried.returncode in (0, 1), f"lab exec box failed: {tried.stderr.strip()}"
        return tried.returncode == 0
    wait_until(first_command_done, what="`lab exec box test -e /mine` finding the container's own file /mine",
               seen=lambda: "lab exec box ls / shows: " + " ".join(lab("exec", "box", "ls", "/").stdout.split())
               + " (are they the container's files: did the exec join its mount namespace?)")
    return inspect("box")


def test_exec_runs_in_the_containers_namespaces(lab, box, tmp_path):
    (tmp_path / "from-host").write_text("hello\n")
    result = lab("exec", "box", "sh", "-c", "hostname; cat /mine /shared/from-host; ps -o pid,args")
    hostname, mine, shared, header, *processes = result.stdout.splitlines()
    assert (hostname, mine, shared) == ("boxhost", "mine", "hello"), \
        "the exec'd command should see the container's hostname (uts), its file /mine and its volume (mnt)"
    assert processes[0].split() == ["1", "sleep", "600"]          # its init is PID 1 (its /proc: its mounts)
    assert len(processes) >= 2, \
        f"the exec'd command is not in the container's PID namespace (enter_container() joins 'pid' too): {processes}"
    assert len(processes) <= 4                                     # and nothing of the host's
    joined = lab("exec", "box", "sh", "-c", 'for k in cgroup ipc mnt net pid uts; do '
                 '[ "$(readlink /proc/self/ns/$k)" = "$(readlink /proc/1/ns/$k)" ] || echo "$k"; done')
    assert joined.returncode == 0 and joined.stdout == "", \
        f"the exec'd command is not in the container's namespaces of these kinds: {joined.stdout.split()} {joined.stderr}"


def test_the_exec_process_counts_in_the_containers_cgroup(lab, box):
    folders = [Path(path) for path in box["Cgroup"]["Paths"].values()]    # (v1: one per controller)
    procs = folders[0] / "cgroup.procs"
    before = set(procs.read_text().split())
    run = subprocess.Popen([LAB, "exec", "box", "sleep", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    joined = None
    deadline = time.monotonic() + 30
    while joined is None and run.poll() is None and time.monotonic() < deadline:
        for pid in set(procs.read_text().split()) - before:
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0030\x00":
                    joined = pid
            except OSError:
                pass                                               # gone already (lab's helper)
        time.sleep(0.02)
    assert joined, (f"the exec'd process never showed up in the container's cgroup ({procs}): did "
                    f"enter_container() join it (Cgroup.from_paths(...).join())? {run.stderr.read().decode()}")
    outside = [str(folder) for folder in folders if joined not in (folder / "cgroup.procs").read_text().split()]
    os.kill(int(joined), signal.SIGKILL)
    assert not outside, f"the exec'd process is in the container's cgroup in some hierarchies only, not in {outside}"         # it is the exec's own process: lab exec ends with its status
    assert run.wait(timeout=30) == 137, run.stderr.read().decode()


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


def test_the_helper_is_undumpable_once_inside():
    """enter_container() keeps the skeleton's last line, prctl(PR_SET_DUMPABLE, 0): the helper's
    child keeps the flag until it execs, and without it the container's root could ptrace that
    child, the command before its exec, and through it reach what it still holds of the host's
    (the lesson's step 5). Tried in a child that enters its own namespaces."""
    def entered():
        assert syscalls.prctl(syscalls.PR_GET_DUMPABLE) == 1, "this test's process is not dumpable to begin with"
        enter.enter_container(enter.open_namespaces(os.getpid()), {})
        return syscalls.prctl(syscalls.PR_GET_DUMPABLE)
    assert in_child(entered) == 0, ("the helper is still dumpable once inside: keep enter_container()'s "
                                    "last line, syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)")


# Watches the container's /proc for new processes and notes which mount namespace each is in
# when first seen, until /watcher/stop appears (in a folder it makes: an exec that is not in the
# container's mounts cannot make that file on the host); prints what it saw as JSON.
WATCHER = """
import json, os
own, seen = os.readlink('/proc/self/ns/mnt'), {}
os.mkdir('/watcher')
while not os.path.exists('/watcher/stop'):
    for pid in os.listdir('/proc'):
        if pid.isdigit() and pid not in seen:
            try:
                seen[pid] = os.readlink(f'/proc/{pid}/ns/mnt') == own
            except OSError:
                pass
print(json.dumps(seen))
"""


def test_an_exec_shows_up_in_the_container_only_once_it_is_wholly_inside(lab):
    # A process that appeared in the container's PID namespace while still in the host's mount
    # namespace could be caught there by the container's root (with CAP_SYS_PTRACE): its
    # /proc/N/root is the host's /. Every exec'd process must be seen in the container's mounts.
    python = ["-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro"]
    started = lab("run", "-d", "--name", "watch", "--cap-add", "SYS_PTRACE", *python, "busybox",
                  "/usr/bin/python3", "-I", "-c", WATCHER)
    assert started.returncode == 0, started.stderr
    try:
        for _ in range(5):
            assert lab("exec", "watch", "sleep", "0.2").returncode == 0
        wait_until(lambda: lab("exec", "watch", "touch", "/watcher/stop").returncode == 0,
                   what="`lab exec watch touch /watcher/stop` (the folder the watcher makes in the container)")
        deadline = time.monotonic() + 30
        while lab("inspect", "-f", "{{.State.Running}}", "watch").stdout.strip() == "true":
            assert time.monotonic() < deadline, "the watcher did not end"
            time.sleep(0.05)
        seen = json.loads(lab("logs", "watch").stdout)
    finally:
        lab("rm", "-f", "watch")
    assert len(seen) >= 6, (f"the watcher saw too few processes to tell: {seen} (did the exec'd ones join "
                            "the container's PID namespace?)")
    assert all(seen.values()), f"processes seen in another mount namespace: {[p for p, ok in seen.items() if not ok]}"
