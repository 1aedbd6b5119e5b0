"""Chapter 01: namespaces, what the process can see.   Check your work: pytest chapters/01_namespaces"""
import ctypes
import os
import re
import socket
import subprocess

from chapters.harness import LAB, in_child
from lab import container, namespaces

KINDS = ("uts", "pid", "mnt", "net", "ipc", "cgroup")


def test_the_command_is_pid_1_and_sees_no_host_process(lab):
    result = lab("run", "--rm", "busybox", "sh", "-c",       # (the last /proc mounted is the one seen)
                 "echo $$; awk '$2 == \"/proc\" {o = $4} END {print o}' /proc/self/mounts; exec ps -o pid,comm")
    pid, options, *processes = result.stdout.splitlines() or ["", ""]
    assert pid == "1", f"the command is PID {pid}, not 1: its PID namespace is not new (unshare_pid_namespace)"
    assert [line.split() for line in processes] == [["PID", "COMMAND"], ["1", "ps"]], \
        "ps sees more than the container's processes: it reads /proc, which shows the host's (mount_proc)"
    assert {"rw", "nosuid", "nodev", "noexec"} <= set(options.split(",")), f"its /proc is mounted {options}"


def test_only_the_next_child_gets_a_new_pid_namespace_and_the_runtime_stays_where_it_was():
    """unshare_pid_namespace() in the runtime: its next child is PID 1 of a new PID namespace; the
    runtime's own namespaces stay the host's (container.own_pid_namespace() then takes the
    pending one back, even before any child: a failed fork)."""
    def unshared() -> int:
        def ours() -> dict:
            return {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in KINDS}
        before = ours()
        namespaces.unshare_pid_namespace()
        child = os.fork()
        if child == 0:
            os._exit(0 if os.getpid() == 1 else 1)
        assert os.waitpid(child, 0)[1] == 0, "the next child is not PID 1 of a new PID namespace"
        changed = [kind for kind in KINDS if ours()[kind] != before[kind]]
        assert not changed, f"the runtime itself is in new {changed} namespaces: unshare CLONE_NEWPID only"
        container.own_pid_namespace()
        namespaces.unshare_pid_namespace()
        container.own_pid_namespace()         # (no child forked into this one)
        assert os.readlink("/proc/self/ns/pid_for_children") == before["pid"], "own_pid_namespace() left it pending"
        return 0
    assert in_child(unshared) == 0


def test_pid_1_ignores_a_signal_it_has_no_handler_for(lab):
    result = lab("run", "--rm", "busybox", "sh", "-c", "kill -TERM $$; echo still here")
    assert (result.returncode, result.stdout) == (0, "still here\n")


def test_the_container_has_its_own_hostname_and_the_hosts_is_unchanged(lab):
    host = socket.gethostname()
    assert lab("run", "--rm", "--hostname", "box", "busybox", "hostname").stdout == "box\n"
    default = lab("run", "--rm", "busybox", "sh", "-c", 'echo "$(hostname) $HOSTNAME"').stdout.split()
    assert re.fullmatch(r"[0-9a-f]{12}", default[0]) and default[0] == default[1]   # its short id
    assert socket.gethostname() == host


# Devices some kernel modules (ipip, sit, gre...) put, down, in every new network namespace.
FALLBACK_TUNNELS = {"tunl0", "sit0", "ip6tnl0", "gre0", "gretap0", "erspan0", "ip_vti0", "ip6_vti0", "ip6gre0"}


def test_the_network_has_only_loopback_and_it_is_up(lab):
    result = lab("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")    # (09 adds eth0)
    links = [line.split(": ")[1].split("@")[0] for line in result.stdout.splitlines()]
    assert [link for link in links if link not in FALLBACK_TUNNELS] == ["lo"]
    assert ",UP," in result.stdout


def test_every_namespace_differs_from_the_hosts(lab):
    script = "; ".join(f"readlink /proc/self/ns/{kind}" for kind in KINDS)
    inside = lab("run", "--rm", "busybox", "sh", "-c", script).stdout.split()
    host = [os.readlink(f"/proc/self/ns/{kind}") for kind in KINDS]
    assert len(inside) == len(KINDS)
    for kind, theirs, ours in zip(KINDS, inside, host):
        assert theirs != ours, f"the container shares the host's {kind} namespace ({ours})"
    shared = lab("run", "--rm", "--uts", "host", "busybox", "readlink", "/proc/self/ns/uts").stdout   # unless asked
    assert shared == f"{host[0]}\n", "--uts host: the container did not keep the host's uts namespace (flags)"


def test_an_ipc_queue_made_on_the_host_is_not_visible_inside(lab):
    libc = ctypes.CDLL(None, use_errno=True)
    key = 0x1AB0C0DE
    queue = libc.msgget(key, 0o1000 | 0o600)            # IPC_CREAT
    assert queue >= 0, os.strerror(ctypes.get_errno())
    try:
        assert str(key) in open("/proc/sysvipc/msg").read()
        inside = lab("run", "--rm", "busybox", "cat", "/proc/sysvipc/msg").stdout
        assert inside.startswith("       key") and str(key) not in inside
    finally:
        libc.msgctl(queue, 0, None)                      # IPC_RMID


def test_a_mount_made_in_the_container_never_reaches_the_host():
    # Where it matters: lab runs in a mount namespace of this test's own whose / is shared, as
    # systemd makes a host's (a slave of the real host's, so nothing can reach that one).
    # Nor does one the host makes later reach the container: its mounts have no peer (shared:)
    # and no master (master:, what MS_SLAVE would leave) in /proc/self/mountinfo.
    inside = r"mount -t tmpfs lab-propagation /tmp && echo peers \$(grep -c -E 'shared:|master:' /proc/self/mountinfo)"
    script = (f"mount --make-rshared / && {LAB} run --rm --privileged busybox sh -c \"{inside}\"; "
              "echo status $?; grep -c lab-propagation /proc/self/mountinfo")
    run = subprocess.run(["unshare", "--mount", "--propagation", "slave", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["peers", "0", "status", "0", "0"], f"lab said: {run.stderr.strip()}\n" + (
        "lab run failed: see what it said" if "status 0" not in run.stdout else
        "the container's tmpfs appeared outside it: are its mounts private?" if run.stdout.endswith("1\n") else
        f"the container's mounts still receive the host's: {run.stdout.split()}" if "peers 0" not in run.stdout else "")

