"""Chapter 06: exec, entering a running container.

A container is a process the kernel lies to: its namespaces, its cgroup, its root. To run
another command "in" it, a new process joins the same ones. Each namespace of a process is
a file, /proc/PID/ns/KIND; setns(2) on an open one moves the caller into that namespace.
`nsenter -t PID -a` does it from the shell; `lab exec` and `docker exec` do it in code.

The order matters:
- open every /proc/PID/ns/* file first: once inside the container's mount namespace, the
  host's /proc (and PID) is out of sight;
- join the cgroup while the host's /sys/fs/cgroup is still in sight;
- the PID namespace applies to the children of the caller, not to the caller: join it, then
  fork; the child is born in it, with a PID of the container's;
- the mount namespace last: setns(CLONE_NEWNS) also moves the root and the working directory
  to the namespace's root, the container's / since its pivot_root.
See man 2 setns, man 1 nsenter, man 7 pid_namespaces.
"""
import os

from lab import syscalls

# The namespaces the child joins, in this order (mnt last); "pid" is joined before the fork.
NAMESPACES = ["ipc", "uts", "net", "cgroup", "mnt"]


def open_namespaces(pid: int) -> dict[str, int]:
    """Open /proc/PID/ns/KIND for "pid" and each of NAMESPACES; return KIND -> file descriptor."""
    # HINT: os.open(path, os.O_RDONLY) for each kind; close-on-exec is Python's default.
    raise NotImplementedError('chapter 06: write open_namespaces() in lab/exec.py: Open /proc/PID/ns/KIND for "pid" and each of NAMESPACES; return KIND -> file descriptor (see chapters/06_exec/README.md, \'Your turn\')')


def join(namespaces: dict[str, int], kinds: list[str]) -> None:
    """setns() into each of kinds, in that order, using the open files of open_namespaces()."""
    # HINT: syscalls.setns(fd, 0): 0 lets the kernel check the kind from the file itself.
    raise NotImplementedError("chapter 06: write join() in lab/exec.py: setns() into each of kinds, in that order, using the open files of open_namespaces() (see chapters/06_exec/README.md, 'Your turn')")


def join_cgroup(paths: dict[str, str]) -> None:
    """Move the calling process into the container's cgroup (each v1 hierarchy, or the v2 one)."""
    for path in set(paths.values()):
        with open(os.path.join(path, "cgroup.procs"), "w") as procs:
            procs.write("0")
