"""The kernel calls the runtime needs, as thin ctypes wrappers.

Python's os module has fork, exec and waitpid, but (before 3.12) not unshare or setns, and
never mount, umount2, pivot_root, sethostname, capset, bpf or prctl. Each wrapper calls libc and, when the
kernel says no, raises an OSError that names the call and its arguments, e.g.
"mount('overlay', '/x', 'overlay', 0, 'lowerdir=...'): No such file or directory".
See man 2 unshare, man 2 setns, man 2 mount, man 2 umount2, man 2 pivot_root.
"""
import ctypes
import errno
import os
import signal

_libc = ctypes.CDLL(None, use_errno=True)
_python_libc = ctypes.PyDLL(None, use_errno=True)     # the same, but its calls keep the GIL (clone3)

# Namespace flags (linux/sched.h).
CLONE_NEWNS = 0x00020000      # mount
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000     # hostname
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Mount flags (linux/mount.h).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2

SYS_pivot_root = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
SYS_bpf = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine)
KERNEL = tuple(int(n) for n in os.uname().release.split("-")[0].split(".")[:2])   # "6.1.0-18-amd64": (6, 1)
SYS_keyctl = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)
SYS_clone3 = 435              # on x86_64 and aarch64 alike (Linux 5.3: new calls got one number, alpha aside)
SYS_mount_setattr = 442       # (Linux 5.12)
AT_FDCWD, AT_RECURSIVE, AT_EMPTY_PATH = -100, 0x8000, 0x1000
MOUNT_ATTR_RDONLY = 0x1


def _check(result: int, call: str, *args, why: dict[int, str] | None = None) -> int:
    if result == -1:
        err = ctypes.get_errno()
        shown = ", ".join(repr(a) for a in args)
        raise OSError(err, f"{call}({shown}): {os.strerror(err)}{(why or {}).get(err, '')}")
    return result


def _bytes(value):
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare", hex(flags))


def setns(fd: int, nstype: int = 0) -> None:
    result = _libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype))
    _check(result, "setns", fd if result == 0 else _namespace_of(fd), hex(nstype))


def _namespace_of(fd: int) -> str:
    """What an error says of setns's fd: the namespace it is ("mnt:[4026532...]"), not a number."""
    try:
        return f"fd {fd}, {os.readlink(f'/proc/self/fd/{fd}')}"
    except OSError:
        return f"fd {fd}"


def mount(source, target, fstype=None, flags: int = 0, data=None) -> None:
    result = _libc.mount(_bytes(source), _bytes(target), _bytes(fstype),
                         ctypes.c_ulong(flags), _bytes(data))
    _check(result, "mount", source, str(target), fstype, flags, data)


def umount2(target, flags: int = 0) -> None:
    _check(_libc.umount2(_bytes(target), ctypes.c_int(flags)), "umount2", str(target), flags)


def pivot_root(new_root, put_old) -> None:
    # glibc has no wrapper for pivot_root: call it by its syscall number.
    if SYS_pivot_root is None:
        raise OSError(38, f"pivot_root: unknown syscall number on {os.uname().machine}")
    result = _libc.syscall(ctypes.c_long(SYS_pivot_root), _bytes(new_root), _bytes(put_old))
    _check(result, "pivot_root", str(new_root), str(put_old), why=PIVOT_ROOT_REFUSALS)


# What pivot_root's refusals mean in chapter 03 (man 2 pivot_root lists every case).
PIVOT_ROOT_REFUSALS = {
    errno.EINVAL: " (is new_root a mount point, and is no mount around it shared? chapter 03's steps 1 and 2)",
    errno.EBUSY: " (new_root is on the current root's mount: bind-mount it onto itself first)"}


def join_new_session_keyring() -> None:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) (glibc has no wrapper; man 2 keyctl): a new
    session keyring of this process's own, instead of the one it shares with whoever started it."""
    if SYS_keyctl is None:
        raise OSError(38, f"keyctl: unknown syscall number on {os.uname().machine}")
    _check(_libc.syscall(ctypes.c_long(SYS_keyctl), ctypes.c_int(1), None), "keyctl", "JOIN_SESSION_KEYRING")


def mount_setattr(path, flags: int, attr_set: int, attr_clr: int = 0, dirfd: int = AT_FDCWD) -> None:
    """mount_setattr(2) (glibc has no wrapper): change the flags of the mount at path (or, with
    AT_EMPTY_PATH and path "", the one dirfd is open on), and with AT_RECURSIVE of every mount
    below it too, in one call (struct mount_attr: four __u64)."""
    attr = (ctypes.c_uint64 * 4)(attr_set, attr_clr, 0, 0)
    result = _libc.syscall(ctypes.c_long(SYS_mount_setattr), ctypes.c_int(dirfd), _bytes(path),
                           ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(result, "mount_setattr", str(path), hex(flags), hex(attr_set))


def socket(family: int, kind: int) -> int:
    """A new socket's file descriptor (the socket module takes 2 ms to import; lab needs one fd)."""
    return _check(_libc.socket(ctypes.c_int(family), ctypes.c_int(kind), 0), "socket", family, kind)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname", name)


# prctl(2) options (linux/prctl.h) the runtime uses.
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2        # linux/seccomp.h
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result = _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                         ctypes.c_ulong(arg4), ctypes.c_ulong(arg5))
    return _check(result, "prctl", option, arg2)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks, bit N = capability N); man 2 capset.

    The kernel's v3 interface takes a header and two 32-bit halves of each set.
    """
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)      # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)(effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF,
                                 effective >> 32, permitted >> 32, inheritable >> 32)
    _check(_libc.capset(header, data), "capset", hex(effective), hex(permitted), hex(inheritable))


class SockFprog(ctypes.Structure):
    """struct sock_fprog: how the kernel takes a BPF program (8-byte instructions)."""
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_filter(program: bytes) -> None:
    """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, program): a compiled seccomp filter (chapter 08)."""
    code = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(code))
    result = _libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                         ctypes.byref(fprog), ctypes.c_ulong(0), ctypes.c_ulong(0))
    _check(result, "prctl", "PR_SET_SECCOMP", "SECCOMP_MODE_FILTER", f"<{len(program) // 8} instructions>")


def bpf(command: int, attr: ctypes.Structure, name: str) -> int:
    """bpf(2) (glibc has no wrapper); attr is the command's part of union bpf_attr, and name
    says which command it is in an error."""
    if SYS_bpf is None:
        raise OSError(38, f"bpf: unknown syscall number on {os.uname().machine}")
    result = _libc.syscall(ctypes.c_long(SYS_bpf), ctypes.c_int(command), ctypes.byref(attr),
                           ctypes.c_uint(ctypes.sizeof(attr)))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({name}): {os.strerror(err)}")
    return result


CLONE_INTO_CGROUP = 0x200000000     # linux/sched.h, Linux 5.7


class CloneArgs(ctypes.Structure):
    """struct clone_args (linux/sched.h): what clone3 takes; fields left 0 mean "as fork"."""
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


def fork_into_cgroup(cgroup_fd: int) -> int:
    """fork(), with the child born in the cgroup v2 folder cgroup_fd: clone3(CLONE_INTO_CGROUP).

    Returns as os.fork does: 0 in the child, its pid in the parent. Python's own fork
    bookkeeping runs around it as it does for os.fork (PyOS_BeforeFork, PyOS_AfterFork_*:
    the import lock, the GIL, os.register_at_fork's hooks). The call goes through a PyDLL,
    which keeps the GIL held, so the child wakes up holding it, as the only thread.
    """
    args = CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=signal.SIGCHLD, cgroup=cgroup_fd)
    python = ctypes.pythonapi
    python.PyOS_BeforeFork()
    pid = _python_libc.syscall(ctypes.c_long(SYS_clone3), ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    if pid == 0:
        python.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    python.PyOS_AfterFork_Parent()
    if pid == -1:
        raise OSError(err, f"clone3(CLONE_INTO_CGROUP, cgroup={cgroup_fd}): {os.strerror(err)}")
    return pid
