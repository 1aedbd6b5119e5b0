"""Chapter 03: rootfs, which files are the container's /.

An image is, in essence, a rootfs: a folder with /bin, /etc, /lib... The runtime makes that
folder the container's /. chroot() only changes where path lookups start, and a root
process can walk out of it. pivot_root() swaps the whole mount namespace's root: the old
root is detached and nothing of the host's files is reachable. Then the container gets the
kernel's filesystems of its own: /proc, a read-only /sys, and a small /dev.
See man 2 pivot_root, man 2 chroot, man 7 mount_namespaces.
"""
import os

from lab import syscalls
from lab.syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT

# The device nodes every container gets: (name, char major, minor). See the kernel's
# Documentation/admin-guide/devices.txt.
DEVICES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]


def pivot_root(new_root: str) -> None:
    """Make new_root this mount namespace's / and detach the old root."""
    # HINT: the image's folder becomes /, and the host's old root is then taken away, so that
    # HINT: nothing of the host stays reachable. pivot_root has preconditions about mounts; the
    # HINT: lesson lists them in order.
    # HINT 2: first remount / recursively private (pivot_root refuses a shared mount: EINVAL),
    # HINT 2: then bind-mount new_root onto itself: pivot_root needs a mount point (EBUSY, EINVAL).
    # HINT 3: then chdir into it and pivot_root(".", "."): the old root is stacked on top of the
    # HINT 3: new; umount2(".", MNT_DETACH) takes it away; last, chdir("/").
    # BEGIN SOLUTION 03
    syscalls.mount(None, "/", None, MS_REC | MS_PRIVATE)
    syscalls.mount(new_root, new_root, None, MS_BIND | MS_REC)
    os.chdir(new_root)
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", syscalls.MNT_DETACH)
    os.chdir("/")
    # END SOLUTION


def mount_kernel_filesystems() -> None:
    """After pivot_root: a fresh /proc, a read-only /sys, and /dev (see make_dev)."""
    # HINT: inside the new root, /proc and /sys are empty folders: the kernel's filesystems are
    # HINT: mounted there again, with the restrictions every distribution uses, and /sys read-only.
    # HINT 2: proc on /proc and sysfs on /sys, both MS_NOSUID | MS_NODEV | MS_NOEXEC, /sys also MS_RDONLY.
    # BEGIN SOLUTION 03
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    syscalls.mount("proc", "/proc", "proc", flags)
    syscalls.mount("sysfs", "/sys", "sysfs", flags | MS_RDONLY)
    make_dev()
    # END SOLUTION


def make_dev() -> None:
    """A tmpfs /dev with the usual device nodes, /dev/pts and /dev/shm: none of the host's devices."""
    # HINT: the container gets a /dev of its own, in memory, with only the few devices programs
    # HINT: expect, a terminal instance of its own and shared memory.
    # HINT 2: mount a tmpfs on /dev (mode=755); os.mknod each of DEVICES as a character device
    # HINT 2: (stat.S_IFCHR | 0o666, os.makedev(major, minor)); a devpts with newinstance on
    # HINT 2: /dev/pts and /dev/ptmx -> pts/ptmx; a tmpfs on /dev/shm; the fd, stdin, stdout,
    # HINT 2: stderr links into /proc/self/fd.
    # HINT 3: the options (the lesson's mount table shows them): /dev MS_NOSUID | MS_NOEXEC (docker's
    # HINT 3: has no noexec; nothing in /dev need run),
    # HINT 3: "mode=755,size=65536k"; /dev/pts MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620";
    # HINT 3: /dev/shm MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k".
    # BEGIN SOLUTION 03
    import stat
    syscalls.mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        os.mknod(f"/dev/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(f"/dev/{name}", 0o666)          # mknod applies the umask
    os.mkdir("/dev/pts")
    syscalls.mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    os.symlink("pts/ptmx", "/dev/ptmx")
    os.mkdir("/dev/shm")
    syscalls.mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    for name, target in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]:
        os.symlink(target, f"/dev/{name}")
    # END SOLUTION


def enter(root: str, binds: list[tuple[str, str]], workdir: str, read_only: bool) -> None:
    """In the child: root becomes the container's /, assembled in the one order that works.

    binds: (a host file, the path inside the container it is mounted over), such as the
    hostname file lab writes; workdir: the folder the command will start in, made if the image
    lacks it; read_only: / itself read-only (--read-only), the mounts on top of it unchanged.
    """
    # HINT: each step needs something that the next one takes away: a host path is reachable
    # HINT: only before pivot_root, a folder can be made in / only while it is writable, and the
    # HINT: kernel's filesystems belong to the new root. Order the steps by what each needs.
    # HINT 2: binds first (their sources are the host's), then pivot_root; then the workdir
    # HINT 2: (inside the new /: made before pivot_root it would land on the host's disk);
    # HINT 2: then the read-only remount of / and mount_kernel_filesystems() (either order: a
    # HINT 2: remount changes / only, not the mounts on it).
    # HINT 3: bind_file(source, root + target); os.makedirs(workdir, exist_ok=True) may fail
    # HINT 3: on an image's read-only folder: catch the OSError and go on (the command's chdir
    # HINT 3: will say why);
    # HINT 3: remount_readonly("/") when read_only; pivot_root() and mount_kernel_filesystems() are above.
    # BEGIN SOLUTION 03
    for source, target in binds:
        bind_file(source, root + target)
    pivot_root(root)
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError:
        pass
    if read_only:
        remount_readonly("/")
    mount_kernel_filesystems()
    # END SOLUTION


def bind_readonly(folder: str) -> None:
    """Bind-mount folder onto itself, read-only: a bind of it (pivot_root's) stays read-only.

    A bind mount takes its flags from a second, remount call: MS_RDONLY on the first is ignored.
    """
    syscalls.mount(folder, folder, None, MS_BIND | MS_REC)
    syscalls.mount(None, folder, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def remount_readonly(mount_point: str) -> None:
    """Make a mount read-only where it is (--read-only's /, after pivot_root); the mounts on top
    of it keep their own flags."""
    syscalls.mount(None, mount_point, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def resize_tmpfs(mount_point: str, size: int) -> None:
    """A tmpfs's size changed where it is (--shm-size for /dev/shm); its other options stay."""
    syscalls.mount(None, mount_point, None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={size}")


def bind_file(source: str, target: str) -> None:
    """Bind-mount one host file over a file in the new root (how /etc/hostname and /etc/hosts arrive)."""
    syscalls.mount(source, target, None, MS_BIND)

