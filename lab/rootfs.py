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
    raise NotImplementedError("chapter 03: write pivot_root() in lab/rootfs.py: Make new_root this mount namespace's / and detach the old root (see chapters/03_rootfs/README.md, 'Your turn')")


def mount_kernel_filesystems() -> None:
    """After pivot_root: a fresh /proc, a read-only /sys, and /dev (see make_dev)."""
    # HINT: inside the new root, /proc and /sys are empty folders: the kernel's filesystems are
    # HINT: mounted there again, with the restrictions every distribution uses, and /sys read-only.
    raise NotImplementedError("chapter 03: write mount_kernel_filesystems() in lab/rootfs.py: After pivot_root: a fresh /proc, a read-only /sys, and /dev (see make_dev) (see chapters/03_rootfs/README.md, 'Your turn')")


def make_dev() -> None:
    """A tmpfs /dev with the usual device nodes, /dev/pts and /dev/shm: none of the host's devices."""
    # HINT: the container gets a /dev of its own, in memory, with only the few devices programs
    # HINT: expect, a terminal instance of its own and shared memory.
    raise NotImplementedError("chapter 03: write make_dev() in lab/rootfs.py: A tmpfs /dev with the usual device nodes, /dev/pts and /dev/shm: none of the host's devices (see chapters/03_rootfs/README.md, 'Your turn')")


def enter(root: str, binds: list[tuple[str, str]], workdir: str, read_only: bool) -> None:
    """In the child: root becomes the container's /, assembled in the one order that works.

    binds: (a host file, the path inside the container it is mounted over), such as the
    hostname file lab writes; workdir: the folder the command will start in, made if the image
    lacks it; read_only: / itself read-only (--read-only), the mounts on top of it unchanged.
    """
    # HINT: each step needs something that the next one takes away: a host path is reachable
    # HINT: only before pivot_root, a folder can be made in / only while it is writable, and the
    # HINT: kernel's filesystems belong to the new root. Order the steps by what each needs.
    raise NotImplementedError("chapter 03: write enter() in lab/rootfs.py: In the child: root becomes the container's /, assembled in the one order that works (see chapters/03_rootfs/README.md, 'Your turn')")


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

