"""Chapter 01: namespaces, what the process can see.

A namespace gives the processes inside it their own copy of one global thing: UTS (the
hostname), PID (process numbers), mount (the mount table), network (interfaces, ports), IPC
(System V queues, shared memory), cgroup (which cgroup looks like the root), user (user ids).
unshare() moves the calling process into new ones, except the PID namespace: that one holds
the children the caller forks next. So the runtime unshares it and forks, and the child is
PID 1 of its own world. See man 7 namespaces, man 2 unshare, man 7 pid_namespaces, man 1 unshare.
"""
import fcntl
import os
import struct

from lab import syscalls

# What the child unshares for itself, right after fork.
CHILD_NAMESPACES = (syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC | syscalls.CLONE_NEWNET
                    | syscalls.CLONE_NEWNS | syscalls.CLONE_NEWCGROUP)


def unshare_pid_namespace() -> None:
    """In the runtime, before fork: the next child it forks is PID 1 of a new PID namespace."""
    # HINT: one system call makes a new PID namespace; the caller stays where it was, and its next
    # HINT: child is PID 1 in the new one.
    # HINT 2: syscalls.unshare(flags) with syscalls.CLONE_NEWPID
    # BEGIN SOLUTION 01
    syscalls.unshare(syscalls.CLONE_NEWPID)
    # END SOLUTION


def enter_namespaces(flags: int = CHILD_NAMESPACES) -> None:
    """In the child: new UTS, IPC, network, mount and cgroup namespaces, all at once."""
    # HINT: the same system call as unshare_pid_namespace, asked for every kind in flags at once.
    # HINT 2: one syscalls.unshare call with all the flags.
    # BEGIN SOLUTION 01
    syscalls.unshare(flags)
    # END SOLUTION


def shared_mounts() -> list[str]:
    """The mount points of this mount namespace whose propagation is shared (mountinfo's
    optional fields, before its " - ", hold "shared:N" for them)."""
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if " shared:" in line.split(" - ")[0]]


def make_mounts_private() -> None:
    """Cut the new mount namespace's link to the host's: nothing mounted here propagates back.

    A new mount namespace starts as a copy of the host's mount table. On a host whose / is
    "shared" (systemd makes it so), a mount made in the copy would appear on the host too.
    The runtime calls this only once it has checked that the mount namespace is new, and
    checks afterwards that no mount is left shared.
    """
    # HINT: one mount call changes how mounts propagate, without mounting anything: for /
    # HINT: and every mount below it. Which propagation type receives and sends nothing?
    # HINT 2: mount with no source, no type, and the flags MS_REC | MS_PRIVATE, on "/"
    # HINT 2: (man 2 mount, "Changing the propagation type of an existing mount").
    # BEGIN SOLUTION 01
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    # END SOLUTION


def set_hostname(name: str) -> None:
    """In the child, inside its UTS namespace: the container's own hostname."""
    # HINT: in its own UTS namespace the child may rename itself without touching the host's name:
    # HINT: one system call (Python's os has no wrapper for it).
    # HINT 2: syscalls.sethostname(name).
    # BEGIN SOLUTION 01
    syscalls.sethostname(name)
    # END SOLUTION


def mount_proc() -> None:
    """In the child: a fresh /proc, which shows the processes of the new PID namespace only."""
    # HINT: ps reads /proc, and the /proc the child inherited still shows the host's PID namespace:
    # HINT: the child needs a procfs of its own, where the old one is.
    # HINT 2: /proc is a filesystem of type "proc"; mount it over the old /proc. Give it the
    # HINT 2: flags every distribution uses: MS_NOSUID | MS_NODEV | MS_NOEXEC.
    # BEGIN SOLUTION 01
    syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    # END SOLUTION


def bring_up_loopback() -> None:
    """A new network namespace has one interface, lo, and it is down: bring it up.

    This is what `ip link set lo up` does: read the interface's flags and set IFF_UP, with
    two ioctls on any socket (man 7 netdevice). The argument is a struct ifreq: the name in
    16 bytes, then the flags as a short, padded to 40 bytes.
    """
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    AF_INET, SOCK_DGRAM = 2, 2
    sock = syscalls.socket(AF_INET, SOCK_DGRAM)
    try:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    finally:
        os.close(sock)
