"""Chapter 00: a container is a process.   Check your work: pytest chapters/00_process"""
import os
import signal
import subprocess
from pathlib import Path

from chapters.harness import LAB, check_unfinished, children, container_process, run_lab
from lab import process


def test_lab_run_prints_what_the_command_prints(lab):
    result = lab("run", "--rm", "busybox", "echo", "hello from a container")
    assert (result.returncode, result.stdout) == (0, "hello from a container\n")


def test_lab_run_exits_with_the_commands_exit_code(lab):
    assert lab("run", "--rm", "busybox", "sh", "-c", "exit 3").returncode == 3
    assert lab("run", "--rm", "busybox", "true").returncode == 0


def test_a_container_killed_by_signal_n_exits_128_plus_n():
    lab = subprocess.Popen([LAB, "run", "--rm", "busybox", "sleep", "30"], stderr=subprocess.PIPE, text=True)
    try:
        os.kill(container_process(lab), signal.SIGKILL)     # from the host, as `docker kill` does
        status = lab.wait(timeout=30)
        assert status == 128 + 9, f"SIGKILL (9) should give 137 (exit_status: 128 + the signal); lab said: {lab.stderr.read()}"
    finally:
        lab.kill()
        lab.wait()


def test_wait_for_reports_the_signal_that_killed_the_child():
    pid = process.spawn(["sleep", "30"], {"PATH": "/usr/bin:/bin"}, "/")
    os.kill(pid, signal.SIGTERM)
    assert process.wait_for(pid) == 128 + 15


def test_a_command_that_does_not_exist_exits_127_with_one_error_line(lab):
    result = lab("run", "--rm", "busybox", "no-such-command")
    assert result.returncode == 127
    assert result.stderr.splitlines() == ['lab: error: exec "no-such-command": executable file not found in $PATH']


def test_a_file_that_cannot_be_executed_exits_126(lab):
    result = lab("run", "--rm", "busybox", "/etc/passwd")
    assert result.returncode == 126
    assert result.stderr.splitlines() == ['lab: error: exec "/etc/passwd": permission denied']


def test_the_command_gets_its_environment_and_working_directory(lab, monkeypatch):
    monkeypatch.setenv("ONLY_ON_THE_HOST", "leaked")
    script = 'echo "$GREETING from $(pwd)${ONLY_ON_THE_HOST}"'
    result = lab("run", "--rm", "-e", "GREETING=hi", "-w", "/tmp", "busybox", "sh", "-c", script)
    assert result.stdout == "hi from /tmp\n"      # the container gets -e, not lab's environment
    nowhere = lab("run", "--rm", "-e", "PATH=/nowhere", "busybox", "ls", "/")       # and its own PATH finds
    assert nowhere.returncode == 127, "ls was found through lab's PATH, not the container's (-e PATH=/nowhere)"


def test_the_container_is_a_child_process_of_the_runtime(tmp_path):
    forks, here, marker = [], os.getcwd(), tmp_path / "setup ran"

    def fork():                    # the one given: chapter 02's, on cgroup v2, starts it in its cgroup
        forks.append(os.getpid())
        return os.fork()
    pid = process.spawn(["sleep", "30"], {"PATH": "/usr/bin:/bin"}, "/tmp", setup=marker.touch, fork=fork)
    try:
        assert Path(f"/proc/{pid}").exists(), "spawn() waited for the command to end: return its pid once exec worked"
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(fields[1]) == os.getpid()                  # its parent is us, the runtime
        assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0030\x00"   # and it exec'd
        assert forks == [os.getpid()], "spawn() did not fork with the fork it was given (its parameter)"
        assert marker.exists(), "spawn() did not run setup() in the child (child_main's parameter)"
        assert os.readlink(f"/proc/{pid}/cwd") == "/tmp", "the command does not run in cwd"
        assert os.getcwd() == here, "spawn() changed the runtime's own folder: the child goes to cwd (exec_command)"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_spawn_returns_only_after_exec_and_reports_a_missing_command():
    before = children()
    try:
        process.spawn(["no-such-command"], {"PATH": "/usr/bin:/bin"}, "/")
    except process.StartError as error:
        assert error.status == 127
    else:
        raise AssertionError("spawn() returned a pid for a command that does not exist")
    left = {pid: state for pid, (state, _) in children().items() if pid not in before}
    assert not left, f"the child whose exec failed is still a process ({left}): check_started reaps it (waitpid)"


def test_exit_status_reads_a_waitpid_status():
    assert [process.exit_status(s) for s in (0, 3 << 8, signal.SIGKILL, signal.SIGTERM)] == [0, 3, 137, 143]
    assert process.exit_status(signal.SIGQUIT | 0x80) == 131        # 0x80: it dumped core (not the signal's)


def test_lab_passes_a_signal_it_receives_on_to_the_container():
    script = 'trap "echo got TERM; exit 0" TERM; echo ready; while :; do sleep 0.1; done'
    lab = subprocess.Popen([LAB, "run", "--rm", "--name", "trapper", "busybox", "sh", "-c", script],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if lab.stdout.readline() != "ready\n":
            check_unfinished(lab.stderr.read())
            raise AssertionError("the container did not start")
        lab.send_signal(signal.SIGTERM)
        assert lab.wait(timeout=30) == 0     # generous: the VM emulates its CPU
        assert lab.stdout.read() == "got TERM\n"
    finally:
        lab.kill()
        lab.wait()
        run_lab("rm", "-f", "trapper")      # if lab died first, its container is still there


def test_without_dash_i_the_command_reads_an_empty_stdin(lab):
    assert lab("run", "--rm", "busybox", "cat", input="typed\n").stdout == ""
    assert lab("run", "--rm", "-i", "busybox", "cat", input="typed\n").stdout == "typed\n"
