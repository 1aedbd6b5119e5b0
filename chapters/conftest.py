"""The harness behind `pytest chapters/NN_topic`: the learner's checklist.

- LAB_IMPL picks the code under test (lab_impl.py): your lab/, or the reference.
- Every test gets a fresh LAB_ROOT of its own session, never your /var/lib/lab, and the
  session's own network and mount namespaces, and container cgroups of its own: `pytest -n 2`
  (make test) runs two sessions side by side, and you may run one in each of two terminals.
- A test of chapter NN sets LAB_CHAPTER=NN: your runtime may skip chapters after NN that
  you have not written yet, but not chapter NN or earlier ones.
- Without root on Linux, the run stops at once with one line saying how to get the VM.
- A test that reaches code you have not written yet fails with one line: the chapter, the
  file and function to write, and where the lesson explains it; no wall of traceback.
- A test that fails shows, under "what lab said", the `lab: error:` lines of the `lab`
  commands it ran; a `lab` that does not finish in time shows where it was waiting (a Python
  traceback); and what a failed test left behind is cleaned up without a second failure.

What the tests themselves use (the lab command, waiting, a terminal...) is in harness.py.
"""
import ctypes
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest

from chapters.harness import IN_COURSE_VM, LAB_CALLS, ROOT, UNFINISHED, Daemon, children, lab_impl, run_lab, shown_arg

NEEDS = ("these tests start real containers, so they need Linux and root: run them as root "
         "(sudo -E .venv/bin/pytest ...) or in the course VM (README, 'The course VM')")


@pytest.fixture
def lab():
    """The `lab` command: lab("run", "--rm", "busybox", "true").returncode == 0"""
    return run_lab


@pytest.fixture
def detached():
    """detached(NAME, ARGS...): `lab run -d --name NAME ARGS...`, checked; returns its id. Each
    container started so is removed (rm -f) when the test ends, whatever happened in it."""
    started = []

    def start(name: str, *args: str) -> str:
        result = run_lab("run", "-d", "--name", name, *args)
        assert result.returncode == 0, result.stderr
        started.append(name)
        return result.stdout.strip()
    yield start
    for name in started:
        run_lab("rm", "-f", name)


def cgroups_module():
    """lab.cgroups of the lab under test, which the harness uses itself. If it does not import
    (a syntax error in your lab/cgroups.py, say), the run stops with one line saying where,
    instead of a traceback: no test can run without it."""
    try:
        from lab import cgroups
    except Exception as error:
        frames = [f for f in traceback.extract_tb(error.__traceback__) if "/lab/" in f.filename]
        where = "" if isinstance(error, SyntaxError) or not frames else \
            f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})"
        pytest.exit(f"lab: {lab_impl.folder() / 'lab'} does not import: {type(error).__name__}: {error}"
                    f"{where}. Fix that first: no test can run without it.", returncode=1)
    return cgroups


def pytest_report_header(config):
    if getattr(config, "lab_header_shown", False):     # chapters/, tests/ and notebooks/ share it
        return None
    config.lab_header_shown = True
    cgroups = cgroups_module()
    package = lab_impl.folder() / "lab"
    shown = package.relative_to(ROOT) if package.is_relative_to(ROOT) else package
    return f"lab: {shown}/, cgroup {cgroups.version()}, kernel {platform.release()}"


def pytest_configure(config):
    """What the session's processes inherit. Each session gets container cgroups of its own (a
    `pytest chapters/NN`, and each worker of `pytest -n 2`, pytest-xdist's), so that its leftover
    check never counts, or removes, a container it did not start: another terminal's test run's,
    a `lab progress` run inside a worker's, or one you start with `lab run -d` meanwhile."""
    # The tests start `lab` thousands of times: each should load lab's compiled bytecode, not
    # compile its source again (that doubles a `lab run`: 116 against 61 ms, measured) because
    # PYTHONDONTWRITEBYTECODE is set around us, as it is on some CI machines.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    worker = getattr(config, "workerinput", {}).get("workerid")
    name = session_cgroup(worker)
    if "lab_cgroups_home" in config.__dict__ or os.geteuid() != 0:
        if platform.system() == "Linux":          # (elsewhere pytest_sessionstart says what to do)
            cgroups_module()                      # it imports, or the run stops here
        return          # (made already: tests/conftest.py imports this hook, so it runs twice)
    os.environ["LAB_CGROUP_PARENT"] = name        # v2: containers go below /sys/fs/cgroup/<name>
    cgroups = cgroups_module()                    # (which lab.cgroups reads as it is imported: here)
    assert cgroups.CgroupV2.PARENT.name == name, "lab.cgroups was imported before pytest_configure"
    config.lab_cgroups_home = []                  # (made: session_cgroups_removed removes them)
    parents = session_cgroup_parents(cgroups)
    if worker is None:                            # (the run's first process: its workers' are its own)
        stale_session_cgroups_removed(parents)
    if cgroups.version() == "v2":
        return
    # v1: containers go below lab's own cgroup, so this process moves into one of its own, made
    # below its own (a worker's: below the run's), and back where it was at the end.
    config.lab_cgroups_home = parents
    for parent in parents:
        folder = parent / name
        folder.mkdir()
        if (parent / "cpuset.cpus").exists():
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (folder / knob).write_text((parent / knob).read_text())
        (folder / "cgroup.procs").write_text(str(os.getpid()))


def session_cgroup(worker: str | None = None) -> str:
    """The name of a session's cgroups: labtests-<the run's pid>-main, or -<worker> for one of
    its pytest-xdist workers; after the run, so that the run removes them all (not lab-*: that
    is a container's)."""
    return f"labtests-{os.getpid()}-main" if worker is None else f"labtests-{os.getppid()}-{worker}"


def session_cgroup_parents(cgroups) -> list[Path]:
    """Where a session's cgroups go: v2, the root (containers go below them, LAB_CGROUP_PARENT);
    v1, this process's own cgroup in each hierarchy."""
    return [cgroups.ROOT] if cgroups.version() == "v2" else cgroups.CgroupV1.parents()


INITIAL_PID_NAMESPACE = "pid:[4026531836]"     # the kernel's own, the same on every machine (PROC_PID_INIT_INO)


def stale_session_cgroups_removed(parents: list[Path]) -> None:
    """A run that was killed (kill -9, a terminal closed under it) could not remove its cgroups.
    The next run removes those of runs whose process is gone, deepest first, and only where no
    process is left in them (a container left running keeps its own: the kernel refuses anyway).
    A run in a PID namespace of its own (unshare --pid) sees no other run's process, and would
    take a live run's cgroups for stale, among them a container's made a moment ago and still
    empty: it removes none."""
    if os.readlink("/proc/self/ns/pid") != INITIAL_PID_NAMESPACE:
        return
    for parent in parents:
        for folder in parent.glob("labtests-*-*"):
            if os.path.exists(f"/proc/{folder.name.split('-')[1]}"):
                continue                                     # (that run is still going)
            if any(Path(path, "cgroup.procs").read_text().strip() for path, _, _ in os.walk(folder)):
                continue                                     # (something of it, or of a run in it, still runs)
            for path, _, _ in os.walk(folder, topdown=False):
                try:
                    os.rmdir(path)
                except OSError:
                    pass


def session_cgroups_removed(config) -> None:
    """The run's end: remove the cgroups pytest_configure made for it and its workers, once they
    are empty (v1: once this process is back where it was, and the workers have exited)."""
    if hasattr(config, "workerinput") or "lab_cgroups_home" not in config.__dict__:
        return          # (a worker's: its run removes them; none: lab did not import, or not root)
    home = config.__dict__.pop("lab_cgroups_home")            # (once: tests/ runs this hook twice)
    from lab import cgroups
    pattern = f"labtests-{os.getpid()}-*"
    if cgroups.version() == "v2":
        folders = list(cgroups.ROOT.glob(pattern))
    else:
        for parent in home:
            (parent / "cgroup.procs").write_text(str(os.getpid()))
        ours = [parent / session_cgroup() for parent in home]
        folders = [worker for folder in ours for worker in folder.glob(pattern)] + ours   # (below ours first)
    deadline = time.monotonic() + 10
    for folder in folders:
        while True:
            try:
                folder.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as error:             # EBUSY until its worker has exited
                if time.monotonic() > deadline:
                    print(f"lab tests: cannot remove the cgroup {folder}: {error}", file=sys.stderr)
                    break
                time.sleep(0.05)


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
    # A network namespace of the session's own plays the host (chapter 09): its bridges, NAT
    # rules and published ports live there, and no test touches the machine's own network.
    # And a mount namespace of its own, a private copy of the machine's mounts: what a test
    # mounts (or lab leaves mounted) is seen by this session's check, and by no one else.
    if os.environ.get("LAB_NETNS_OWNER") != str(os.getpid()):
        CLONE_NEWNET, CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x40000000, 0x20000, 0x4000, 1 << 18
        libc = ctypes.CDLL(None, use_errno=True)
        if (libc.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0
                or libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0):
            pytest.exit(f"cannot make the tests' namespaces: {os.strerror(ctypes.get_errno())}", returncode=1)
        os.environ["LAB_NETNS_OWNER"] = str(os.getpid())
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


@pytest.hookimpl(trylast=True)                   # (after pytest-xdist has stopped its workers)
def pytest_sessionfinish(session):
    root = os.environ.get("LAB_ROOT", "")
    if Path(root).name.startswith("lab-root-"):
        # rm, not shutil.rmtree: a container may have nested folders past Python's recursion limit
        subprocess.run(["rm", "-rf", "--one-file-system", root])


def pytest_unconfigure(config):
    session_cgroups_removed(config)    # (here: `pytest --help` configures, but has no session)


# Seconds; a chapter test takes a few. In CI's emulated VM, on a slow day, six containers started at
# once took over 60 s while the other session ran: a hang still fails there, in 3 minutes.
TEST_TIME_LIMIT = 180 if IN_COURSE_VM else 60


@pytest.fixture(autouse=True)
def time_limit(request):
    """A chapter test that hangs fails after TEST_TIME_LIMIT s with one line, instead of forever."""
    if "/chapters/" not in request.path.as_posix():
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"still running after {TEST_TIME_LIMIT} s, waiting in {waiting_at(frame)}")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIME_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def waiting_at(frame) -> str:
    """Where the test was when its time ran out: its own line, and what it had called there."""
    stack = traceback.extract_stack(frame)
    ours = [f for f in stack if "/chapters/" in f.filename or "/tests/" in f.filename]
    test = ours[-1] if ours else stack[-1]
    inner = stack[-1]
    where = f"{Path(test.filename).name}:{test.lineno} `{test.line}`"
    return where if inner is test else f"{where}, in {inner.name}() ({Path(inner.filename).name}:{inner.lineno})"


def lab_cgroups() -> set[str]:
    """The container cgroups that exist now (named lab-<id>), in every hierarchy."""
    from lab import cgroups
    return {str(p) for parent in cgroups.manager().parents() for p in parent.glob("lab-*")}


def mounts() -> set[str]:
    """The host's mounts, by mount ID and where they are (a mount stacked on another counts).
    Not systemd's /run/credentials/UNIT: it mounts one while a unit runs (in the course VM,
    systemd-tmpfiles-clean's timer fires 15 minutes after boot, in the middle of a test)."""
    found = (line.split()[:5:4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return {" ".join(m) for m in found if not m[1].startswith("/run/credentials/")}


def network_leftovers(before: set[str] = frozenset()) -> set[str]:
    """Containers' veth interfaces, and the rules that publish their ports (nat table, chain LAB).
    A veth goes with its container's network namespace, which the kernel removes in the
    background: one not in before is given 5 s to go."""
    deadline = time.monotonic() + 5
    while True:
        with open("/proc/net/dev") as f:              # (this namespace's: /sys/class/net is the host's)
            links = {line.split(":")[0].strip() for line in f.readlines()[2:]}
        found = {f"link {name}" for name in links if name.startswith("veth")}
        if not found - before or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if "lab0" in links:                                # (no bridge yet: no rule either)
        rules = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "LAB"], capture_output=True, text=True).stdout
        found |= {f"rule {line}" for line in rules.splitlines() if line.startswith("-A LAB")}
    return found


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
    network_before = network_leftovers()
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
        left_network = network_leftovers(network_before) - network_before
        assert not left_network, f"network links or rules left behind: {sorted(left_network)}"


@pytest.fixture(autouse=True)
def no_process_left_behind(request):
    """After each test, no process it started may still run: it is killed and the test fails."""
    yield
    deadline = time.monotonic() + 10     # (the supervisor of a `run --rm` that has just removed its
    while time.monotonic() < deadline and any(state != "Z" for state, _ in children().values()):
        time.sleep(0.02)                 # container is on its way out, later on a busy machine)
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
    # Code not written yet shows up as NotImplementedError, or inside another error
    # (lab's own message, a StartError from the child): either way it names the chapter.
    # (Not for a test that quotes lab's output as text, like a lesson's: marked quotes_lab.)
    unfinished = (call.excinfo and not item.get_closest_marker("quotes_lab")
                  and UNFINISHED.search(str(call.excinfo.value)))
    if unfinished:      # its one line (below) replaces the traceback, which pytest then need not
        item.repr_failure = lambda excinfo: ""      # format: a fifth of a blank chapter's run
    report = (yield).get_result()
    setattr(item, f"report_{report.when}", report)          # (see passed())
    said = [f"$ lab {' '.join(map(shown_arg, args))}   (exit status {status})\n  {line}" for args, status, stderr in LAB_CALLS
            for line in stderr.splitlines() if line.startswith("lab: error")]
    if report.failed and said and not unfinished:          # lab's own words, next to the assertion
        report.sections.append(("what lab said", "\n".join(said[-10:])))
    daemon = getattr(item, "funcargs", {}).get("daemon")
    if report.failed and daemon is not None and not unfinished and daemon.log.exists():
        log = daemon.log.read_text(errors="replace").splitlines()
        report.sections.append(("what lab daemon said (the end of its log)", "\n".join(log[-20:])))
    if unfinished:
        message = unfinished.group(0)
        NOT_WRITTEN[message] = None
        short = re.match(r"chapter \d\d: write \S+ in [\w/.]+?(?=:| \(|$)", message)
        report.longrepr = f"not written yet: {short.group(0) if short else message} (more below)"
        report.user_properties.append(("not written yet", message))


def gap_order(message: str, gaps: list) -> int:
    """Where the gap a "write ..." message names comes in gaps (make_skeleton.unwritten's order,
    which `lab hint` takes them in), so that the first one listed is the one it gives a hint
    for, whichever test met it first."""
    m = re.match(r"chapter (\d\d): write (\S+)\(\) in lab/(\S+?):", message)
    key = (m[1], m[3], m[2].split(".")[-1]) if m else None
    return gaps.index(key) if key in gaps else len(gaps)


def pytest_terminal_summary(terminalreporter):
    if NOT_WRITTEN:
        terminalreporter.section("what to write next")
        sys.path.insert(0, str(ROOT / "tools"))
        import make_skeleton
        gaps = [(chapter, module, function.split(".")[-1])
                for chapter, module, function in make_skeleton.unwritten(lab_impl.folder() / "lab")]
        listed = sorted(NOT_WRITTEN, key=lambda message: gap_order(message, gaps))
        for message in listed:
            terminalreporter.line(message)
        first = re.match(r"chapter \d\d: write (\S+)\(\)", listed[0])
        name = first[1].split(".")[-1] if first else ""
        terminalreporter.line(f"stuck? `lab hint {name}` gives a hint for it, one level more each time".replace("  ", " "))


@pytest.fixture
def daemon():
    """A running `lab daemon` (stopped afterwards); daemon.docker(...) runs the docker CLI on it."""
    started = Daemon()
    try:
        yield started
    finally:
        started.close()
