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
- the mount namespace before that fork: setns(CLONE_NEWNS) also moves the root and the
  working directory to the container's /. A child that showed up in the container's PID
  namespace while still in the host's mounts could be caught there by the container's root:
  /proc/N/root would be the host's /. So a helper process joins everything first, makes
  itself undumpable (its /proc/N files are root's only), takes on the container's
  confinement (chapter 08: a container allowed CAP_SYS_PTRACE could catch the command before
  its exec otherwise), and only then forks the command, which comes to lab as an orphan (lab
  is a "subreaper"). runc's nsexec does the same but for the confinement, which its init
  applies after the fork.
See man 2 setns, man 1 nsenter, man 7 pid_namespaces, man 2 prctl (PR_SET_CHILD_SUBREAPER).
"""
import errno
import os

from lab import LabError, cgroups, folders, process, syscalls

# The namespaces the helper joins, in this order (mnt last); "pid" then, for the fork.
NAMESPACES = ["ipc", "uts", "net", "cgroup", "mnt"]


def open_namespaces(pid: int) -> dict[str, int]:
    """Open /proc/PID/ns/KIND for "pid" and each of NAMESPACES; return KIND -> file descriptor."""
    # HINT: to join a container's namespaces you need a handle on each, the files under
    # HINT: /proc/PID/ns; open them all before joining any: a join changes what paths mean.
    # HINT 2: os.open(path, os.O_RDONLY) for each kind; close-on-exec is Python's default.
    # BEGIN SOLUTION 06
    return {kind: os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY) for kind in ["pid", *NAMESPACES]}
    # END SOLUTION


def join(namespaces: dict[str, int], kinds: list[str]) -> None:
    """setns() into each of kinds, in that order, using the open files of open_namespaces()."""
    # HINT: one system call enters the namespace that an open file descriptor refers to.
    # HINT 2: syscalls.setns(fd, 0): 0 lets the kernel check the kind from the file itself.
    # BEGIN SOLUTION 06
    for kind in kinds:
        syscalls.setns(namespaces[kind], 0)
    # END SOLUTION


def enter_container(namespaces: dict[str, int], cgroup_paths: dict[str, str]) -> None:
    """In the helper: join the container's cgroup and namespaces, in the order the kernel needs."""
    # HINT: everything the command must be in is joined before it exists, and each step must
    # HINT: still find what it needs: which step needs the host's files, which one hides them,
    # HINT: and which one only counts for the children? (the module's docstring)
    # HINT 2: the cgroup first: Cgroup.from_paths(cgroup_paths).join() (when there are paths)
    # HINT 2: writes into the host's /sys/fs/cgroup, which the container's mounts hide.
    # HINT 3: then join(namespaces, NAMESPACES): mnt is last there. The PID namespace last of
    # HINT 3: all: it is the helper's children that are born in it, and spawn forks next.
    # BEGIN SOLUTION 06
    if cgroup_paths:                               # (none: a runtime without chapter 02)
        cgroups.Cgroup.from_paths(cgroup_paths).join()   # while the host's /sys/fs/cgroup is in sight
    join(namespaces, NAMESPACES)                   # mnt last: it moves / and the working directory
    join(namespaces, ["pid"])                      # the helper's next child is born in it
    # END SOLUTION
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)    # until exec, nobody in there may ptrace it


# What keeps a confined helper from forking the command, as exec's user would put it.
CONFINED = {errno.EPERM: "the container's seccomp profile forbids fork (clone): lab exec needs it to start "
                         "the command in the container",
            errno.EMFILE: "the container's --ulimit nofile is too low for lab exec, whose helper needs a few "
                          "more open files than the command"}


def spawn_inside(namespaces: dict[str, int], cgroup_paths: dict[str, str], argv: list[str],
                 env: dict[str, str], cwd: str, setup, confine=None, keep=(), stderr=None) -> int:
    """Start argv inside the container through a helper process; return its pid (our child).
    confine() runs in the helper once it is inside, before it forks: what it takes away (the
    container's capabilities and seccomp filter, chapter 08) the command has from its birth,
    the moment it shows in the container's /proc; setup() runs in the command before its exec,
    with the descriptors keep (its stdio's), the only ones the helper keeps of ours, stderr (the
    command's) its own stderr."""
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)     # the helper's orphan comes to us
    read_end, write_end = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(read_end)
        report = "125:the exec helper failed"
        try:
            process.keep_only(write_end, *namespaces.values(), *keep, stderr=stderr)
            folders.seal_imports()               # (/ is about to be the container's: folders.py)
            enter_container(namespaces, cgroup_paths)
            if confine is not None:
                confine()
            try:
                report = str(process.spawn(argv, env, cwd, setup))
            except OSError as e:          # confined as the container is, the helper could not fork
                if confine is None or e.errno not in CONFINED:
                    raise
                raise LabError(CONFINED[e.errno]) from None
        except process.StartError as e:
            report = f"{e.status}:{e}"
        except BaseException as e:
            report = f"125:{process.describe(e)}"
        finally:
            os.write(write_end, report.encode(errors="surrogateescape"))   # (a command named in any bytes)
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode(errors="replace")
    os.waitpid(helper, 0)                          # gone: its child is ours now
    if not report:                                 # killed before it said anything: with the container
        raise process.StartError(125, "the container ended while lab was starting the command in it")
    if not report.isdigit():
        status, _, message = report.partition(":")
        raise process.StartError(int(status) if status.isdigit() else 125, message or report)
    return int(report)
