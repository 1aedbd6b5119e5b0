"""The harness behind `pytest chapters/NN_topic`: the learner's checklist.

- LAB_IMPL picks the code under test (lab_impl.py): your lab/, or the reference.
- Every test gets a fresh LAB_ROOT of its own session, never your /var/lib/lab.
- A test of chapter NN sets LAB_CHAPTER=NN: your runtime may skip chapters after NN that
  you have not written yet, but not chapter NN or earlier ones.
- Without root on Linux, the run stops at once with one line saying how to get the VM.
- A test that reaches code you have not written yet fails with one line: the chapter, the
  file and function to write, and where the lesson explains it; no wall of traceback.
- A test that fails shows, under "what lab said", the `lab: error:` lines of the `lab`
  commands it ran; a `lab` that does not finish in time shows where it was waiting (a Python
  traceback); and what a failed test left behind is cleaned up without a second failure.
"""
import ctypes
import json
import os
import platform
import re
import signal
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import lab_impl

lab_impl.activate()

ROOT = lab_impl.ROOT
NEEDS = ("these tests start real containers, so they need Linux and root: run them as root "
         "(sudo -E .venv/bin/pytest ...) or in the course VM (README, 'The course VM')")
UNFINISHED = re.compile(r"chapter \d\d: write \S+\(\) in .*")


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
            raise TimeoutError(f"`lab {' '.join(args)}` did not finish within {timeout} s; it was here "
                               f"(most recent call first):\n{where}") from None
        errors.seek(0)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, errors.read())
    LAB_CALLS.append((args, result.returncode, result.stderr))
    check_unfinished(result.stderr)
    return result


@pytest.fixture
def lab():
    """The `lab` command: lab("run", "--rm", "busybox", "true").returncode == 0"""
    return run_lab


def pytest_report_header(config):
    if getattr(config, "lab_header_shown", False):     # chapters/, tests/ and notebooks/ share it
        return None
    config.lab_header_shown = True
    from lab import cgroups
    package = lab_impl.folder() / "lab"
    shown = package.relative_to(ROOT) if package.is_relative_to(ROOT) else package
    return f"lab: {shown}/, cgroup {cgroups.version()}, kernel {platform.release()}"


def pytest_sessionstart(session):
    if platform.system() != "Linux" or os.geteuid() != 0:
        pytest.exit(NEEDS, returncode=1)
    # Orphans (a container whose `lab` died) become our children, not init's: see leftovers().
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # A LAB_ROOT for this session: every `lab` command, test and notebook kernel inherits it.
    # (chapters/, tests/ and notebooks/ share this hook: make the root once per process.)
    if os.environ.get("LAB_ROOT_OWNER") != str(os.getpid()):
        os.environ["LAB_ROOT"] = tempfile.mkdtemp(prefix="lab-root-")
        os.environ["LAB_ROOT_OWNER"] = str(os.getpid())
    os.environ["PYTHONFAULTHANDLER"] = "1"       # a `lab` that hangs says where (see run_lab)


def pytest_sessionfinish(session):
    root = os.environ.get("LAB_ROOT", "")
    if Path(root).name.startswith("lab-root-"):
        shutil.rmtree(root, ignore_errors=True)


def children(parent: int | None = None) -> dict[int, tuple[str, str]]:
    """The child processes of parent (default: us): pid -> (state, command line)."""
    parent = os.getpid() if parent is None else parent
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError):
            continue
        if int(ppid) == parent:
            found[int(stat.parent.name)] = (state, cmdline)
    return found


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


TEST_TIME_LIMIT = 60    # seconds; a chapter test takes a few


@pytest.fixture(autouse=True)
def time_limit(request):
    """A chapter test that hangs fails after TEST_TIME_LIMIT s with one line, instead of forever."""
    if "/chapters/" not in request.path.as_posix():
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"still running after {TEST_TIME_LIMIT} s: something waits forever "
                           "(a pipe end left open, a child nobody waits for?)")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIME_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def lab_cgroups() -> set[str]:
    """The container cgroups that exist now (named lab-<id>), in every hierarchy."""
    from lab import cgroups
    return {str(p) for parent in cgroups.manager().parents() for p in parent.glob("lab-*")}


def mounts() -> set[str]:
    """The host's mounts, by mount ID and where they are (a mount stacked on another counts)."""
    return {" ".join(line.split()[:5:4]) for line in Path("/proc/self/mountinfo").read_text().splitlines()}


def containers() -> dict[str, str]:
    """The containers under this session's LAB_ROOT: folder -> what it runs."""
    folder = Path(os.environ["LAB_ROOT"], "containers")
    found = {}
    for path in folder.glob("[!.]*") if folder.is_dir() else ():       # (not .lock, .removing-*)
        try:
            found[path.name] = " ".join(json.loads((path / "config.json").read_text())["Cmd"])
        except (OSError, ValueError, KeyError):
            found[path.name] = "?"
    return found


def passed(request) -> bool:
    """Whether the test itself passed: what it left behind is cleaned up either way, but
    reported only then (a failed test's leftovers are a consequence, not a second fault)."""
    report = getattr(request.node, "report_call", None)
    return report is not None and report.passed


@pytest.fixture(autouse=True)
def no_cgroup_or_mount_left_behind(request):
    """After each test, no container, cgroup or mount it made may be left (cgroups are removed)."""
    cgroups_before, mounts_before, containers_before = lab_cgroups(), mounts(), containers()
    yield
    left_containers = {k: v for k, v in containers().items() if k not in containers_before}
    for cid in left_containers:             # their processes, cgroups and folders go too
        run_lab("rm", "-f", cid)
    left = lab_cgroups() - cgroups_before
    if left:
        from lab import cgroups
        cgroups.Cgroup({str(i): Path(path) for i, path in enumerate(sorted(left))}).destroy()
    if passed(request):
        assert not left_containers, f"containers left behind (now removed): {left_containers}"
        assert not left, f"container cgroups left behind (now removed): {sorted(left)}"
        assert not mounts() - mounts_before, f"mounts left behind on the host: {sorted(mounts() - mounts_before)}"


@pytest.fixture(autouse=True)
def no_process_left_behind(request):
    """After each test, no process it started may still run: it is killed and the test fails."""
    yield
    left = {}
    for pid, (state, cmdline) in children().items():
        if state != "Z":
            left[pid] = cmdline
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if passed(request):
        assert not left, f"processes left running (now killed): {left}"


@pytest.fixture(autouse=True)
def chapter_required(request, monkeypatch):
    """A test of chapter NN runs with LAB_CHAPTER=NN: lab may skip later chapters, not these."""
    if m := re.search(r"(?:chapters/|notebooks/)(\d\d)_", request.path.as_posix()):
        monkeypatch.setenv("LAB_CHAPTER", m.group(1))


@pytest.fixture
def lab_root() -> Path:
    """This session's LAB_ROOT."""
    return Path(os.environ["LAB_ROOT"])


NOT_WRITTEN: dict[str, None] = {}     # the messages, in order, each once


def pytest_runtest_setup(item):
    LAB_CALLS.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    setattr(item, f"report_{report.when}", report)          # (see passed())
    # Code not written yet shows up as NotImplementedError, or inside another error
    # (lab's own message, a StartError from the child): either way it names the chapter.
    unfinished = call.excinfo and UNFINISHED.search(str(call.excinfo.value))
    said = [f"$ lab {' '.join(args)}   (exit status {status})\n  {line}" for args, status, stderr in LAB_CALLS
            for line in stderr.splitlines() if line.startswith("lab: error")]
    if report.failed and said and not unfinished:          # lab's own words, next to the assertion
        report.sections.append(("what lab said", "\n".join(said[-10:])))
    if unfinished:
        message = unfinished.group(0)
        NOT_WRITTEN[message] = None
        short = re.match(r"chapter \d\d: write \S+ in [\w/.]+?(?=:| \(|$)", message)
        report.longrepr = f"not written yet: {short.group(0) if short else message} (more below)"
        report.user_properties.append(("not written yet", message))


def pytest_terminal_summary(terminalreporter):
    if NOT_WRITTEN:
        terminalreporter.section("what to write next")
        for message in NOT_WRITTEN:
            terminalreporter.line(message)


DOCKER = str(Path(sys.executable).with_name("docker"))    # Debian's docker.io client, put there by make setup


class Daemon:
    """A `lab daemon` of the test's own, on a socket of its own, and its clients."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="lab-daemon-")     # short: a socket path has 108 bytes
        self.socket = f"{self.folder}/lab.sock"
        self.log = Path(self.folder, "daemon.log")
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": self.folder}
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([LAB, "daemon", "--socket", self.socket],
                                            stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/_ping")[0] == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                check_unfinished(self.log.read_text())
                raise AssertionError(f"lab daemon exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            assert time.monotonic() < deadline, "lab daemon did not answer on its socket within 30 s"
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
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


@pytest.fixture
def daemon():
    """A running `lab daemon` (stopped afterwards); daemon.docker(...) runs the docker CLI on it."""
    started = Daemon()
    try:
        yield started
    finally:
        started.close()
