"""The container lifecycle end to end: -d, logs, ps, stop, kill, rm, -it; many at once."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from chapters.harness import LAB, Terminal, ended, inspect, pids, supervisor_of, wait_until


def state(lab, name) -> dict:
    return inspect(name)["State"]


def test_detached_container_logs_stop_and_status(lab):
    started = lab("run", "-d", "--name", "web", "busybox", "sh", "-c",
                  "echo ready; echo oops >&2; trap 'echo bye; exit 3' TERM; while true; do sleep 0.05; done")
    assert started.returncode == 0 and len(started.stdout.strip()) == 64       # its id
    wait_until(lambda: lab("logs", "web").stdout == "ready\n", what="the log")
    assert lab("logs", "web").stderr == "oops\n"                 # stderr stays stderr, as with docker logs
    assert "Up " in lab("ps").stdout
    assert lab("stop", "web").stdout == "web\n"
    assert state(lab, "web")["ExitCode"] == 3 and lab("logs", "web").stdout == "ready\nbye\n"
    assert "Exited (3)" in lab("ps", "-a").stdout and "web" not in lab("ps").stdout
    assert lab("rm", "web").returncode == 0


def test_stop_kills_what_ignores_sigterm_after_the_timeout(lab):
    lab("run", "-d", "--name", "stubborn", "busybox", "sleep", "600")   # PID 1 without a handler: TERM does nothing
    started = time.monotonic()
    lab("stop", "-t", "1", "stubborn")
    assert 1 <= time.monotonic() - started < 10
    assert state(lab, "stubborn")["ExitCode"] == 137
    lab("rm", "stubborn")


def test_kill_sends_the_signal_asked_for(lab):
    lab("run", "-d", "--name", "hup", "busybox", "sh", "-c", "trap 'exit 42' HUP; echo ready; while true; do sleep 0.05; done")
    wait_until(lambda: lab("logs", "hup").stdout == "ready\n", what="the trap set")   # (a HUP before it: 129)
    assert lab("kill", "-s", "HUP", "hup").returncode == 0
    wait_until(lambda: not state(lab, "hup")["Running"] and state(lab, "hup")["ExitCode"] is not None)
    assert state(lab, "hup")["ExitCode"] == 42
    assert lab("kill", "hup").returncode == 1                            # not running any more
    lab("rm", "hup")


def test_logs_follow_until_the_container_ends(lab):
    lab("run", "-d", "--name", "ticker", "busybox", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done")
    assert lab("logs", "-f", "ticker").stdout == "1\n2\n3\n"
    lab("rm", "ticker")


# Asks for the logs of the container named argv[1], has `lab rm` remove it, then reads them:
# the Docker SDK's containers.run asks for the logs, waits, removes, and reads them last.
LOGS_READ_AFTER_RM = """
import subprocess, sys
from lab import logs, store
records = logs.follow(store.find_container(sys.argv[1]), True)
subprocess.run([sys.argv[2], "rm", sys.argv[1]], check=True, stdout=subprocess.DEVNULL)
sys.stdout.buffer.write(b"".join(data for _, data, _ in records))
"""


def test_logs_asked_for_before_the_container_is_removed_are_read_whole(lab, tmp_path):
    """The log files were opened at the first record: when the engine's logs handler was slower
    than the SDK's remove (once in six CI runs), `containers.run(..., remove=True)` returned b''."""
    lab("run", "-d", "--name", "brief", "busybox", "echo", "said")
    assert lab("logs", "-f", "brief").stdout == "said\n"                   # (it has ended)
    run = subprocess.run([sys.executable, "-c", LOGS_READ_AFTER_RM, "brief", LAB], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert (run.returncode, run.stdout) == (0, "said\n"), run.stderr
    assert "brief" not in lab("ps", "-a").stdout


def test_detached_rm_removes_the_container_when_it_ends(lab):
    lab("run", "-d", "--rm", "--name", "brief", "busybox", "true")
    wait_until(lambda: "brief" not in lab("ps", "-a").stdout, what="removed")


def test_twenty_containers_at_once(lab):
    runs = [subprocess.Popen([LAB, "run", "-d", "--name", f"many{i}", "busybox", "sleep", "600"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(20)]
    try:
        assert [run.wait(timeout=60) for run in runs] == [0] * 20, [run.stderr.read() for run in runs]
        assert len(lab("ps", "-q").stdout.split()) == 20
        assert all(state(lab, f"many{i}")["Running"] for i in range(20))
    finally:
        removed = lab("rm", "-f", *[f"many{i}" for i in range(20)], timeout=120)
    assert removed.returncode == 0 and lab("ps", "-aq").stdout == ""


def test_a_killed_supervisor_leaves_the_container_reachable(lab):
    lab("run", "-d", "--name", "orphan", "busybox", "sleep", "600")
    supervisor = supervisor_of("orphan")
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: ended(supervisor), what="the supervisor's end")
    assert "Up " in lab("ps").stdout                          # state on disk, checked against the process
    assert lab("exec", "orphan", "true").returncode == 0
    assert "unwatched" in lab("ps").stdout                    # nobody is left to record how it ends...
    lab("stop", "-t", "0", "orphan")
    assert "Exited (137)" in lab("ps", "-a").stdout           # ...but stop killed it: that much is known
    assert lab("rm", "orphan").returncode == 0


def sleeping(cmdline: bytes) -> bool:
    """Some process runs with this command line (NUL-separated, as /proc shows it)."""
    for path in (Path("/proc", pid, "cmdline") for pid in pids()):
        try:
            if path.read_bytes() == cmdline:
                return True
        except OSError:
            pass
    return False


def test_a_container_has_a_session_of_its_own_without_your_terminal(lab, detached):
    """Started from your terminal without -t, the container writes to it, but in lab's session it
    would have it as its controlling terminal too (/dev/tty; TIOCSTI can push a line into its
    input for your shell to run), and its `kill 0` would reach every process of lab's group: the
    shell script that ran lab here."""
    detached("sessions", "busybox", "sleep", "600")
    check = "echo > /dev/tty && echo has-your-terminal || echo no-terminal; kill -TERM 0"
    script = f"{LAB} run --rm busybox sh -c '{check}'; {LAB} exec sessions sh -c '{check}'; echo script-survived"
    terminal = Terminal(["/bin/sh", "-c", script])
    try:
        terminal.wait_for(b"script-survived")
    finally:
        status = terminal.close()
    assert terminal.text.count("no-terminal") == 2 and "has-your-terminal" not in terminal.text, terminal.text
    assert status == 0


# Execs `true` in the container named argv[1], whose process, before its exec, tells what
# capabilities and seccomp mode it has there; prints them.
PEEKING_EXEC = """
import os, sys
from lab import container, store
said = os.pipe()
class Peeking(container.Stdio):
    def kept(self):
        return super().kept() + [said[1]]
    def in_child(self):
        super().in_child()
        status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
        os.write(said[1], f"{status['CapEff'].strip()} {status['Seccomp'].strip()}".encode())
pid = container.exec_start(store.find_container(sys.argv[1]), ["true"], Peeking(False, False))
os.waitpid(pid, 0)
os.close(said[1])
print(os.read(said[0], 100).decode())
"""


# lab exec's command, as it starts (in the container's PID namespace, before it execs): the
# files its descriptors are open on, written to a pipe of the test's.
LISTING_EXEC = """
import os, sys
from lab import container, store
said = os.pipe()
class Listing(container.Stdio):
    def kept(self):
        return super().kept() + [said[1]]
    def in_child(self):
        links = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                links.append(os.readlink(f"/proc/self/fd/{fd}"))
            except FileNotFoundError:          # (listdir's own)
                pass
        os.write(said[1], " ".join(links).encode())
        super().in_child()
pid = container.exec_start(store.find_container(sys.argv[1]), ["true"], Listing(False, False))
os.waitpid(pid, 0)
os.close(said[1])
print(os.read(said[0], 65536).decode(), file=sys.stderr)
"""


def test_an_exec_s_command_holds_no_descriptor_of_lab_s_before_it_execs(lab, detached, tmp_path):
    """Until it closes them, lab exec's command held what its helper had of lab's: with --cap-add
    SYS_PTRACE a container took lab's own output file with pidfd_getfd and wrote into it (a
    review). The helper keeps /dev/null as its stdio and only the descriptors the command needs."""
    detached("listed", "--network", "none", "busybox", "sleep", "600")
    with open(tmp_path / "lab-output", "w") as output:
        run = subprocess.run([sys.executable, "-c", LISTING_EXEC, "listed"], stdout=output, stderr=subprocess.PIPE,
                             text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0 and "pipe:" in run.stderr, run.stderr
    assert "lab-output" not in run.stderr, run.stderr


def test_an_exec_is_confined_before_the_container_can_see_it(lab, detached, tmp_path):
    """The command `lab exec` starts shows in the container's /proc from its fork; until its exec
    it is lab's Python. Were the container's capabilities and seccomp filter applied only then,
    a container given CAP_SYS_PTRACE could catch it with all of lab's and take it over."""
    detached("confined", "--cap-add", "SYS_PTRACE", "busybox", "sleep", "600")
    run = subprocess.run([sys.executable, "-c", PEEKING_EXEC, "confined"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)       # (not the repository's: its lab/ would come first on the path)
    assert run.returncode == 0, run.stderr
    capabilities, seccomp = run.stdout.split()
    assert int(capabilities, 16) == 0xa80425fb | 1 << 19 and seccomp == "2", run.stdout   # docker's 14, SYS_PTRACE, a filter


# Commits the container named argv[1] as swapped:1, and swaps its folder /t for a symlink to the
# host's folder argv[2] once the walk of its upper folder has listed /t/f: what a running
# container can do at any time (the race made certain).
SWAPPING_COMMIT = """
import os, sys
from lab import image_commands, overlay, store
listed = overlay.below
def swapping(top):
    for path in listed(top):
        if path == os.path.join(top, "t", "f"):
            os.rename(os.path.join(top, "t"), os.path.join(top, "t.old"))
            os.symlink(sys.argv[2], os.path.join(top, "t"))
        yield path
overlay.below = swapping
image_commands.commit(store.find_container(sys.argv[1]), "swapped:1")
"""


def test_a_commit_reads_no_host_file_through_a_folder_the_container_swapped_for_a_symlink(lab, detached, tmp_path):
    """lab commit reads the upper folder of a running container, whose root may swap a folder
    for a symlink to the host's at any moment: the commit reads it from a process chrooted
    there (folders.in_chroot), where that symlink leads back into the container."""
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "f").write_text("the host's\n")
    detached("swapper", "busybox", "sh", "-c", "mkdir /t; echo mine > /t/f; exec sleep 600")
    wait_until(lambda: lab("exec", "swapper", "cat", "/t/f").stdout == "mine\n", what="/t/f made")
    run = subprocess.run([sys.executable, "-c", SWAPPING_COMMIT, "swapper", str(tmp_path / "host")],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    shown = lab("run", "--rm", "--network", "none", "swapped:1", "sh", "-c", "cat /t/f /t.old/f 2>&1")
    assert "the host's" not in shown.stdout, shown.stdout
    assert lab("rmi", "swapped:1").returncode == 0


# Fills the empty volume folder argv[2] from the folder /data of the root argv[1], as a container's
# start does, and swaps /data/t for a symlink to the host's folder argv[3] once the walk has listed
# /data/t/f: what another container with a volume on the way mounted can do at any time.
SWAPPING_FILL = """
import os, sys
from lab import folders, volumes
listed = folders.below
def swapping(top):
    for path in listed(top):
        if path.endswith("/t/f"):
            os.rename(os.path.dirname(path), os.path.dirname(path) + ".old")
            os.symlink(sys.argv[3], os.path.dirname(path))
        yield path
folders.below = swapping
volumes.fill_from_image(sys.argv[1], {"Source": sys.argv[2], "Destination": "/data"})
"""


def test_filling_a_volume_reads_no_host_file_through_a_folder_swapped_for_a_symlink(tmp_path):
    for folder in ("root/data/t", "volume", "host"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "root" / "data" / "t" / "f").write_text("the image's\n")
    (tmp_path / "host" / "f").write_text("the host's\n")
    run = subprocess.run([sys.executable, "-c", SWAPPING_FILL, str(tmp_path / "root"), str(tmp_path / "volume"),
                          str(tmp_path / "host")], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    copied = tmp_path / "volume" / "t" / "f"
    assert not copied.exists() or copied.read_text() == "the image's\n", copied.read_text()
    assert (tmp_path / "volume" / "t").is_dir()       # (the folder was copied before the swap)


def test_a_volume_subpath_is_a_folder_in_the_volume_never_a_symlink_a_container_put_there(daemon, lab, tmp_path):
    """--mount type=volume,volume-subpath=a: a container with the volume could make a a symlink
    to a host folder, which the next container's start then mounted, read-write."""
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "secret").write_text("the host's\n")
    planted = lab("run", "--rm", "--network", "none", "-v", "planted:/v", "busybox", "sh", "-c",
                  f"mkdir /v/sub; echo in-sub > /v/sub/f; ln -s {tmp_path / 'host'} /v/a")
    assert planted.returncode == 0, planted.stderr
    try:
        for subpath, shown in (("sub", "in-sub\n"), ("a", None)):
            cid = daemon.create({"Image": "busybox", "Cmd": ["sh", "-c", "cat /x/*; echo mine > /x/written"],
                                 "HostConfig": {"NetworkMode": "none", "Mounts": [
                                     {"Type": "volume", "Source": "planted", "Target": "/x",
                                      "VolumeOptions": {"Subpath": subpath}}]}})
            status, answer = daemon.request("POST", f"/v1.41/containers/{cid}/start")
            if shown:
                assert status == 204, answer
                assert daemon.docker("wait", cid).stdout == "0\n"
                assert daemon.docker("logs", cid).stdout == shown
            else:
                assert status == 400 and "goes through a symlink" in answer["message"], answer
            daemon.docker("rm", "-f", cid)
        assert sorted(os.listdir(tmp_path / "host")) == ["secret"]
    finally:
        lab("volume", "rm", "planted")


def test_a_supervisor_holds_no_descriptor_of_a_host_folder(lab, detached):
    """An exec's command and a healthcheck are forked from the supervisor, and a container with
    --cap-add SYS_PTRACE can take their descriptors before they are closed (pidfd_getfd): the
    supervisor's O_PATH descriptor of the container's folder let a review's program write a host
    file through openat(fd, "../../../..")."""
    import stat
    detached("holding", "--network", "none", "busybox", "sleep", "600")
    assert lab("exec", "holding", "true").returncode == 0          # (its socket is in use)
    supervisor = supervisor_of("holding")
    folders = []
    for fd in os.listdir(f"/proc/{supervisor}/fd"):
        try:
            if stat.S_ISDIR(os.stat(f"/proc/{supervisor}/fd/{fd}").st_mode):
                folders.append(os.readlink(f"/proc/{supervisor}/fd/{fd}"))
        except FileNotFoundError:
            pass
    assert not folders, folders


def test_a_container_writes_its_output_through_lab_never_to_lab_s_own_files(lab, tmp_path):
    """lab run (and exec) without -t gives the container pipes and copies them, as docker's client
    does: with lab's own descriptors, the container opened the files they were redirected to
    again through /proc/self/fd (a review truncated an appended log, wrote a read-only input)
    and set lab's terminal's line discipline, for after the container too."""
    output, given = tmp_path / "output", tmp_path / "given"
    output.write_text("kept\n")
    given.write_text("the input\n")
    given.chmod(0o444)
    with open(output, "a") as appended, open(given) as read_only:
        run = subprocess.run([LAB, "run", "--rm", "-i", "--network", "none", "busybox", "sh", "-c",
                              "read line; echo \"got $line\" > /proc/self/fd/1; echo written > /proc/self/fd/0"],
                             stdin=read_only, stdout=appended, stderr=subprocess.PIPE, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert output.read_text() == "kept\ngot the input\n"
    assert given.read_text() == "the input\n"


# `lab run -v shared:/s -v ARGV2:/s/d/x busybox true`, where another container with the volume
# swaps /s/d for a symlink to the host's folder argv[1] the moment mount_point has checked the
# path and is about to make the mount point: the race of runc's CVE-2021-30465, made certain.
SWAPPING_MOUNT = """
import os, sys
from lab import cli
made = os.makedirs
def swapping(path, *args, **kwargs):
    if path.endswith("/s/d/x") and not os.path.islink(os.path.dirname(path)):
        os.rename(os.path.dirname(path), os.path.dirname(path) + ".old")
        os.symlink(sys.argv[1], os.path.dirname(path))
    return made(path, *args, **kwargs)
os.makedirs = swapping
sys.exit(cli.main(["run", "--rm", "--network", "none", "-v", "raced-mount:/s", "-v", sys.argv[2] + ":/s/d/x",
                   "busybox", "true"]))
"""


def test_a_mount_point_is_made_in_the_container_even_when_a_shared_volume_changes_meanwhile(lab, tmp_path):
    """The volumes are mounted from a process chrooted into the container's root (volumes.mount_all):
    a folder of a shared volume swapped for a symlink to a host folder leads back into the root.
    Before, the mount point was made on the host, as root (a review: 26 in 100 tries)."""
    (tmp_path / "host").mkdir()
    (tmp_path / "bound").mkdir()
    assert lab("run", "--rm", "--network", "none", "-v", "raced-mount:/s", "busybox", "mkdir", "/s/d").returncode == 0
    try:
        run = subprocess.run([sys.executable, "-c", SWAPPING_MOUNT, str(tmp_path / "host"), str(tmp_path / "bound")],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
        swapped = Path(os.environ["LAB_ROOT"], "volumes", "raced-mount", "_data")
        assert sorted(os.listdir(swapped)) == ["d", "d.old"], run.stderr            # (the race was run)
        assert os.listdir(tmp_path / "host") == [], run.stderr
    finally:
        lab("volume", "rm", "raced-mount")


# `lab run -v shared:/s -v ARGV1:/s/d/v:ro busybox ...`, where another container with the volume
# swaps the folders /s/d and /s/e (whose v is a symlink to /proc) right after the bind onto
# /s/d/v: the remount that makes it read-only, by path, would go to another mount.
SWAPPING_READ_ONLY = """
import os, sys
from lab import cli, syscalls
mount = syscalls.mount
def swapping(source, target, kind, flags, data=None):
    mount(source, target, kind, flags, data)
    if str(target).endswith("/s/d/v") and flags & syscalls.MS_BIND and not flags & syscalls.MS_REMOUNT:
        shared = os.path.dirname(os.path.dirname(target))
        os.rename(shared + "/d", shared + "/x")
        os.rename(shared + "/e", shared + "/d")
        os.rename(shared + "/x", shared + "/e")
syscalls.mount = swapping
sys.exit(cli.main(["run", "--rm", "--network", "none", "-v", "raced-ro:/s", "-v", sys.argv[1] + ":/s/d/v:ro",
                   "busybox", "sh", "-c", "echo written > /s/e/v/pwned"]))
"""


def test_a_read_only_bind_stays_read_only_when_a_shared_volume_changes_meanwhile(lab, tmp_path):
    """The remount that makes a bind read-only goes by path: volumes.mount_all checks the path once
    more through a descriptor (a name at a time, no symlink) and sets read-only through it.
    Before, another container's swap left the bind writable (a review: 1 in 73 tries)."""
    (tmp_path / "read-only").mkdir()
    made = lab("run", "--rm", "--network", "none", "-v", "raced-ro:/s", "busybox", "sh", "-c",
               "mkdir -p /s/d/v /s/e; ln -s /proc /s/e/v")
    assert made.returncode == 0, made.stderr
    try:
        run = subprocess.run([sys.executable, "-c", SWAPPING_READ_ONLY, str(tmp_path / "read-only")],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
        swapped = Path(os.environ["LAB_ROOT"], "volumes", "raced-ro", "_data")
        assert os.path.islink(swapped / "d" / "v"), run.stderr                    # (the race was run)
        assert os.listdir(tmp_path / "read-only") == [], run.stderr
        assert run.returncode == 125 and "is not what was mounted there" in run.stderr, run.stderr
    finally:
        lab("volume", "rm", "raced-ro")


def test_lab_copies_the_whole_output_to_a_stdout_left_non_blocking(lab, tmp_path):
    """(a program that ran before in the same pipe may leave it so: lab's write then says EAGAIN,
    which stopped the copy, and lab never waited for the container nor recorded its end)"""
    left = "import os, sys; os.set_blocking(1, False); os.execv(sys.argv[1], sys.argv[1:])"
    run = subprocess.run(f"{sys.executable} -c '{left}' {LAB} run --name nonblocking --network none busybox "
                         "head -c 3000000 /dev/zero | (sleep 1; wc -c)", shell=True, capture_output=True, text=True,
                         timeout=60)
    try:
        assert (run.stdout.strip(), run.stderr) == ("3000000", ""), run.stderr
        assert inspect("nonblocking")["State"]["Status"] == "exited"
    finally:
        lab("rm", "-f", "nonblocking")


# `lab run IMAGE true` whose child imports a module once it has entered the image's root, as
# a lazy `import` in lab's code would.
LATE_IMPORT = """
import sys
from lab import cli, container
entered = container.enter_rootfs
def entering(c):
    entered(c)
    import planted_by_the_image
container.enter_rootfs = entering
sys.exit(cli.main(["run", "--rm", "--network", "none", "planted:1", "true"]))
"""


def test_lab_imports_no_module_from_the_image_it_entered(lab, tmp_path):
    """After pivot_root, Python's module path is the image's folders: a module lab imports only
    then would be the image's, run as root with every capability. The child refuses to."""
    import sysconfig
    context = tmp_path / "context"
    context.mkdir()
    (context / "planted.py").write_text("print('the image ran its code in lab')\n")
    (context / "Dockerfile").write_text(f"FROM busybox\nCOPY planted.py {sysconfig.get_path('stdlib')}/planted_by_the_image.py\n")
    assert lab("build", "-t", "planted:1", str(context)).returncode == 0
    run = subprocess.run([sys.executable, "-c", LATE_IMPORT], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "the image ran its code" not in run.stdout + run.stderr
    assert run.returncode == 125 and "lab imports planted_by_the_image in a container's root" in run.stderr, run.stderr
    assert lab("rmi", "planted:1").returncode == 0


# Execs `true` in the container named argv[1] with a helper that is killed before it reports
# (as `lab rm -f` kills it with the container); prints the StartError's status and message.
KILLED_HELPER = """
import os, signal, sys
from lab import container, process, security, store
security.apply = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
try:
    container.exec_start(store.find_container(sys.argv[1]), ["true"], container.Stdio(False, False))
except process.StartError as e:
    print(e.status, e)
"""


def test_an_exec_whose_helper_is_killed_with_the_container_says_so(lab, detached, tmp_path):
    detached("short-lived", "busybox", "sleep", "600")
    run = subprocess.run([sys.executable, "-c", KILLED_HELPER, "short-lived"], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert run.stdout == "126 the container ended while lab was starting the command in it\n", run.stdout + run.stderr


def test_an_exec_the_containers_confinement_forbids_says_why_in_one_line(lab, detached, tmp_path):
    """exec's helper takes on the container's seccomp filter and limits before it forks the
    command: a profile that forbids fork, or a tiny nofile, stops it there, and exec says which."""
    profile = tmp_path / "no-fork.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["clone", "clone3", "fork", "vfork"], "action": "SCMP_ACT_ERRNO"}]}))
    detached("no-fork", "--security-opt", f"seccomp={profile}", "busybox", "sleep", "600")
    detached("few-files", "--ulimit", "nofile=3", "busybox", "sleep", "600")   # (its stdio only)
    for name, said in (("no-fork", "seccomp profile forbids fork"), ("few-files", "--ulimit nofile is too low")):
        refused = lab("exec", name, "true")
        assert refused.returncode == 126 and refused.stderr.count("\n") == 1 and said in refused.stderr, refused.stderr


def test_a_container_has_a_session_keyring_of_its_own(lab):
    """Not the one it would share with lab and whoever started it (keys root keeps there, man 7
    keyrings), even with seccomp off (its filter forbids keyctl), as runc's."""
    from lab import syscalls
    session_keyring = f"import ctypes; print(ctypes.CDLL(None).syscall({syscalls.SYS_keyctl}, 0, -3, 0))"  # KEYCTL_GET_KEYRING_ID
    python = ["-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro"]
    ran = lab("run", "--rm", "--security-opt", "seccomp=unconfined", *python, "busybox", "/usr/bin/python3", "-I", "-c",
              session_keyring)
    assert ran.returncode == 0, ran.stderr
    ours = subprocess.run([sys.executable, "-I", "-c", session_keyring], capture_output=True, text=True).stdout
    assert int(ran.stdout) > 0 and int(ours) > 0 and ran.stdout != ours


def test_dash_it_gives_a_real_terminal(lab):
    terminal = Terminal([LAB, "run", "-it", "--rm", "busybox", "sh"], rows=30, cols=100)
    try:
        # Each line is typed at a prompt, as a person does: typed earlier, the terminal would echo
        # it amid the output (the emulated VM's shell is slow enough for that).
        terminal.wait_for(b"# ")
        terminal.type(b"tty; stty size\r")
        terminal.wait_for(b"30 100")                                 # its own terminal, your window's size
        terminal.wait_for(b"# ")
        # (77: a length no other test uses, since sleeping() sees the processes of every session)
        terminal.type(b"sleep 77\r")
        wait_until(lambda: sleeping(b"sleep\x0077\x00"), what="sleep 77 running")   # (then it has the terminal)
        terminal.type(b"\x03")                                       # Ctrl-C stops sleep, not the shell
        terminal.wait_for(b"^C")
        terminal.wait_for(b"# ")
        terminal.type(b"echo after $?\r")
        terminal.wait_for(b"after 130")
        terminal.wait_for(b"# ")
        terminal.type(b"exit 7\r")
    finally:
        status = terminal.close()
    assert "/dev/pts/0\n30 100\n" in terminal.text
    assert "^C" in terminal.text and "after 130\n" in terminal.text
    assert status == 7


def test_exec_dash_it_gives_a_terminal_too(lab, detached):
    detached("host-of-exec", "busybox", "sleep", "600")
    terminal = Terminal([LAB, "exec", "-it", "host-of-exec", "sh"])
    try:
        terminal.wait_for(b"# ")
        terminal.type(b"tty; echo tty-done-$((1+1))\r")
        terminal.wait_for(b"tty-done-2\r\n")
        terminal.wait_for(b"# ")                 # (typed while it still prints, "exit" is echoed amid its output)
        terminal.type(b"exit\r")
    finally:
        status = terminal.close()
    assert "/dev/pts/0\n" in terminal.text and status == 0
