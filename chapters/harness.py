"""What the tests share: the `lab` and `docker` commands, waiting on a condition, a container's
inspect, a command on a terminal of its own, work done in a forked child, a `lab daemon` of
the test's own. Tests import it as `from chapters.harness import ...`; chapters/conftest.py
holds pytest's side (fixtures, hooks, what a failed test shows).
"""
import fcntl
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import lab_impl

lab_impl.activate()

ROOT = lab_impl.ROOT
UNFINISHED = re.compile(r"chapter \d\d: write \S+\(\) in .*?\(see [^)]*\)")   # (to its end: an assertion
# pytest rewrote may quote the message and go on after it)
# In the course VM, under tools/vm-test (which sets LAB_IN_COURSE_VM=1): the emulated CPU is
# slow, and checks that do not depend on the kernel or the cgroup version are left to CI's host.
IN_COURSE_VM = os.environ.get("LAB_IN_COURSE_VM") == "1"
# The chapters whose code paths or lessons differ with the cgroup version (v1 on CI's host, v2 in
# the course VM): the VM runs every chapter's tests, and for these the course's checks of their
# skeletons, their notebooks and their demos too.
VERSIONED = ("02", "06", "08")


class Unfinished(Exception):
    """The `lab` command hit code the learner has not written yet."""


def lab_command() -> str:
    beside = Path(sys.executable).with_name("lab")
    return str(beside) if beside.exists() else (shutil.which("lab") or "lab")


LAB = lab_command()


def check_unfinished(stderr: str) -> None:
    """Raise Unfinished when lab's stderr says it reached code not written yet."""
    if m := UNFINISHED.search(stderr or ""):
        raise Unfinished(m.group(0).rstrip("."))      # docker's CLI ends its errors with a '.' 


LAB_CALLS: list[tuple[tuple, int, str]] = []   # this test's `lab` commands: (args, status, stderr)


def shown_arg(arg: str) -> str:
    """An argument of a lab command as a failure's report shows it: as it was typed, or escaped
    where it is not UTF-8 (a test's "\\udcff": pytest-xdist cannot send such a report, and the
    whole run stops with an internal error that names no test)."""
    try:
        arg.encode()
        return arg
    except UnicodeEncodeError:
        return ascii(arg)


def run_lab(*args, input=None, timeout=30) -> subprocess.CompletedProcess:
    """Run `lab ARGS...` and return its exit status and output (text).

    A `lab` that does not finish in time is sent SIGABRT: with PYTHONFAULTHANDLER set (see
    pytest_sessionstart) it prints where it was waiting, and the TimeoutError shows that.
    """
    __tracebackhide__ = True              # a failure shows the test's line, not this helper's
    with tempfile.TemporaryFile("w+") as errors:       # a file: a container may keep a pipe open
        proc = subprocess.Popen([LAB, *args], stdin=subprocess.PIPE if input is not None else None,
                                stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            out, _ = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            errors.seek(0)
            said = errors.read()
            check_unfinished(said)
            where = said[said.find("Current thread"):].strip() if "Current thread" in said else said.strip()
            raise TimeoutError(f"`lab {' '.join(map(shown_arg, args))}` did not finish within {timeout} s; it was here "
                               f"(most recent call first):\n{where}") from None
        errors.seek(0)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, errors.read())
    LAB_CALLS.append((args, result.returncode, result.stderr))
    check_unfinished(result.stderr)
    return result


def wait_until(condition, timeout: float = 30, what: str = "the condition", seen=None):
    """Wait until condition() is true (and return what it returned); fail after timeout s,
    showing what seen() returns then (what there was instead), if given."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, (f"{what} was not true after {timeout} s"
                                             + (f"; seen:\n{seen()}" if seen else ""))
        time.sleep(0.02)
    return result


def inspect(name: str) -> dict:
    """`lab inspect NAME`, parsed; a failing inspect fails with lab's own error line."""
    shown = run_lab("inspect", name)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)[0]


def supervisor_of(name: str) -> int:
    """The PID of a `lab run -d` container's supervisor, from its record in LAB_ROOT."""
    record = Path(os.environ["LAB_ROOT"]) / "containers" / inspect(name)["Id"] / "state.json"
    return json.loads(record.read_text())["Supervisor"]


def pids() -> list[str]:
    """The processes there are now, by pid (their folders in /proc). Not Path.glob: it stats
    each entry, and that of a process that has just ended raises ESRCH."""
    return [name for name in os.listdir("/proc") if name.isdigit()]


def lab_processes(comm: str) -> list[int]:
    """The processes named comm (lab-supervisor, lab-zygote) of this session's LAB_ROOT (a
    zombie's environment reads empty: ended ones are left out)."""
    found = []
    for pid in pids():
        try:
            if Path(f"/proc/{pid}/comm").read_text() == comm + "\n" and \
                    os.environ["LAB_ROOT"].encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def ended(pid: int) -> bool:
    """The process has ended: it is gone, or a zombie its parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def children(parent: int | None = None) -> dict[int, tuple[str, str]]:
    """The child processes of parent (default: us): pid -> (state, command line). Each test
    looks twice or more, over every process of the machine: a command line is read only for a
    child (half the reads; 1.6 ms a look instead of 3.4 with 115 processes)."""
    parent = os.getpid() if parent is None else parent
    found = {}
    for pid in pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
            if int(ppid) != parent:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError):
            continue
        found[int(pid)] = (state, cmdline)
    return found


def container_process(run: subprocess.Popen, command: str | None = None, timeout: float = 30) -> int:
    """The host PID of the container's process: the child of the `lab run` process run (with
    command: once its command line is that one, after the exec)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := [pid for pid, (_, line) in children(run.pid).items() if command in (None, line)]:
            return found[0]
        if run.poll() is not None:
            check_unfinished(run.stderr.read())
            raise AssertionError(f"lab run exited with {run.returncode} before its container started")
        time.sleep(0.02)
    raise AssertionError(f"no container process under lab (pid {run.pid}) after {timeout} s")


def wait_running(name: str, run: subprocess.Popen, timeout: float = 30) -> dict:
    """Wait until `lab inspect NAME` says running (the `lab run` is `run`); return that inspect."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = run_lab("inspect", name)
        info = json.loads(shown.stdout)[0] if shown.returncode == 0 else {}
        if info.get("State", {}).get("Running"):
            return info
        if run.poll() is not None:
            check_unfinished(run.stderr.read() if run.stderr else "")
            raise AssertionError(f"lab run exited with {run.returncode} before {name} was running")
        time.sleep(0.05)
    raise AssertionError(f"{name} was not running after {timeout} s")


def in_child(work) -> int:
    """Run work() in a forked child; return its exit status (a NotImplementedError is re-raised here)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        status = 0
        try:
            status = work()
        except BaseException as e:
            os.write(write_end, f"{type(e).__name__}:{e}".encode())
            status = 99
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        error = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    if error.startswith("NotImplementedError:"):
        raise NotImplementedError(error.split(":", 1)[1])
    assert not error, error
    return os.waitstatus_to_exitcode(status)


class Terminal:
    """A command on a terminal of its own (a pty) of rows x cols, as a person at a keyboard has:
    type(keys), wait_for(text it shows), and close() for its exit status."""

    def __init__(self, argv: list[str], env: dict | None = None, rows: int = 30, cols: int = 100):
        self.output = b""
        self.seen = 0                  # where the text last waited for ends in output
        self.pid, self.fd = os.forkpty()
        if self.pid == 0:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execve(argv[0], argv, env or os.environ)

    def wait_for(self, text: bytes, timeout: float = 30) -> None:
        """Read what it shows until text appears after the text waited for before (what was
        already read past that counts: a prompt read with the output before it is found)."""
        deadline = time.monotonic() + timeout
        while (found := self.output.find(text, self.seen)) < 0:
            assert time.monotonic() < deadline, f"the terminal never showed {text!r}: {self.output[-400:]!r}"
            if select.select([self.fd], [], [], 0.5)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:                  # EIO: the command has ended and closed it
                    chunk = b""
                assert chunk, f"the terminal closed before it showed {text!r}: {self.output[-400:]!r}"
                self.output += chunk
        self.seen = found + len(text)

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def close(self, timeout: float = 30) -> int:
        """Wait for the command to end (reading what is left); return its exit status."""
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, f"the command on the terminal did not end: {self.output[-400:]!r}"
            self._read(0.1)
        while self._read(0):                     # what it wrote just before it ended
            pass
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    def _read(self, timeout: float) -> bool:
        """Add what the terminal shows within timeout seconds; False when there was nothing."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return False
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:                          # EIO: every end of the terminal is closed
            return False
        self.output += chunk
        return bool(chunk)

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r", "")


DOCKER = str(Path(sys.executable).with_name("docker"))    # Debian's docker.io client, put there by make setup


class Daemon:
    """A `lab daemon` of the test's own, on a socket of its own, and its clients."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="lab-daemon-")     # short: a socket path has 108 bytes
        self.socket = f"{self.folder}/lab.sock"
        self.log = Path(self.folder, "daemon.log")
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": self.folder}
        try:
            self.start()
        except BaseException:            # (chapter 07 not written yet, say): no daemon, no folder left
            self.close()
            raise

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([LAB, "daemon", "--socket", self.socket],
                                            stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = self.request("GET", "/_ping")
            except OSError:
                pass                                    # not listening yet
            else:
                assert status == 200, f"lab daemon answered GET /_ping with {status}: {body}" + (
                    "; the tests' client runs as root: what did peer_uid() in lab/daemon.py say?" if status == 403 else "")
                return
            if self.process.poll() is not None:
                check_unfinished(self.log.read_text())
                raise AssertionError(f"lab daemon exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            assert time.monotonic() < deadline, "lab daemon did not answer on its socket within 30 s"
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)
        self.process.wait(30)

    def connection(self):
        """An HTTP connection (http.client) to the daemon's socket."""
        import http.client
        import socket as sockets
        conn = http.client.HTTPConnection("localhost", timeout=30)
        conn.sock = sockets.socket(sockets.AF_UNIX)
        conn.sock.settimeout(30)
        conn.sock.connect(self.socket)
        return conn

    def request(self, method: str, path: str, body: bytes = b"", raw: bytes | None = None):
        """One HTTP request on the socket (raw: bytes sent as they are); (status, decoded body)."""
        import http.client
        conn = self.connection()
        try:
            if raw is not None:
                conn.sock.sendall(raw)
            else:
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = http.client.HTTPResponse(conn.sock, method=method) if raw is not None else conn.getresponse()
            if raw is not None:
                response.begin()
            data = response.read()
            try:
                body = json.loads(data) if data else None
            except ValueError:
                body = data.decode()
            if response.status == 500:
                check_unfinished(body.get("message", "") if isinstance(body, dict) else str(body))
            return response.status, body
        finally:
            conn.close()

    def create(self, config: dict, name: str | None = None) -> str:
        """POST /containers/create with docker's container config (JSON); the new container's id."""
        status, body = self.request("POST", "/v1.41/containers/create" + (f"?name={name}" if name else ""),
                                    json.dumps(config).encode())
        assert status == 201, body
        return body["Id"]

    def docker(self, *args, input=None, timeout=60) -> subprocess.CompletedProcess:
        """The docker command, talking to this daemon."""
        if not os.path.exists(DOCKER):
            raise AssertionError(f"the docker client is missing ({DOCKER}): run `make setup`")
        result = subprocess.run([DOCKER, *args], input=input, capture_output=True, text=True,
                                timeout=timeout, env=self.env)
        check_unfinished(result.stderr)
        return result

    def client(self):
        """The Docker SDK for Python, talking to this daemon (API version negotiated)."""
        import docker
        return docker.DockerClient(base_url=f"unix://{self.socket}", version="auto", timeout=60)

    def close(self) -> None:
        if self.process.poll() is None:
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
