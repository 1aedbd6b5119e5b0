"""Walking and deleting folders that came from outside: a container's own layer, an image's
layers, a volume, a build context. Whoever made them may have nested folders thousands deep
or put symlinks to the host's folders in them: these functions never recurse (Python 3.11's
os.walk and shutil.rmtree do, and a tree past about a thousand levels stops them with a
RecursionError) and never go into a symlink. And entering one: chroot_into, in_chroot, and
seal_imports for a process of lab's whose / is about to be a container's.
"""
import errno
import os
import signal
import stat
import sys

from lab import LabError


def walk(top, estimate: bool = False):
    """os.walk(top) without recursion: yield (folder, its folders, its other entries) from top
    down, a folder before what it holds. Sort or prune the list of folders in place to choose
    where the walk goes next, as with os.walk. A symlink, to a folder too, is among the other
    entries, and each folder is opened with O_NOFOLLOW when its turn comes: one that a running
    container has removed, or replaced with a symlink or a file, since it was listed is
    skipped. The callers then read the files by their paths, as os.walk's do, and a path has
    at most 4095 bytes (PATH_MAX): a folder that cannot be read, or whose entries' paths would
    be longer (about 2,000 levels deep), is a LabError, not a gap in a commit or a diff; with
    estimate (a size), it is left out."""
    # (Python 3.12's os.walk no longer recurses; Debian 12's Python is 3.11.)
    waiting = [os.fspath(top)]
    while waiting:
        folder = waiting.pop()
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                with os.scandir(fd) as listing:
                    entries = list(listing)
            finally:
                os.close(fd)
        except OSError as e:
            if estimate or e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                continue
            raise LabError(f"cannot read the folder {shown(folder)}: {e.strerror}") from None
        if entries and len(os.fsencode(folder)) + 1 + max(len(os.fsencode(e.name)) for e in entries) > PATH_MAX:
            if estimate:
                continue
            raise LabError(f"the folder {shown(folder)} is nested too deep: the paths of what it holds "
                           f"would be longer than the {PATH_MAX} bytes the kernel takes")
        folders = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
        others = [entry.name for entry in entries if not entry.is_dir(follow_symlinks=False)]
        yield folder, folders, others
        waiting.extend(os.path.join(folder, name) for name in reversed(folders))


def below(top):
    """The path of everything under top (top left out), a folder before what it holds, each
    folder's entries in order of name: the same order every time (a layer's tar, its digest)."""
    for folder, subfolders, others in walk(top):
        subfolders.sort()
        for name in sorted(subfolders + others):
            yield os.path.join(folder, name)


def open_below(top: int, relative: str) -> int:
    """A descriptor of the folder at relative (a/b/c, or "") below the folder open as top, opened
    one name at a time from its parent's descriptor with O_NOFOLLOW: never through a symlink,
    wherever one is (ELOOP, or ENOTDIR for a file)."""
    fd = os.dup(top)
    for name in filter(None, relative.split("/")):
        try:
            below_it = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        finally:
            os.close(fd)
        fd = below_it
    return fd


def new_file(path: str, mode: int = 0o600) -> int:
    """A new file at path, open for writing: what was there (a symlink, a device node, a file) is
    removed first, never written through or into; a folder there is an IsADirectoryError."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


PATH_MAX = 4095          # bytes of a path the kernel takes (4096 with its final 0)


def read_regular(path, what: str) -> str:
    """The text of the file at path (its first megabyte), if it is a regular one: a file that
    came from outside (a container's, a build context's) may be a pipe, whose open would wait
    for a writer for ever, or a device. what names it in the error ("the Dockerfile PATH")."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LabError(f"{what} is not a regular file")
        return f.read(1 << 20).decode(errors="replace")


def shown(folder: str) -> str:
    return folder if len(folder) < 160 else f"{folder[:100]}...{folder[-40:]} ({len(folder)} bytes)"


def delete_folder(folder) -> None:
    """Delete folder and all it holds, as shutil.rmtree does, but neither following nor even
    looking through a symlink a container made (each folder is opened from its parent's
    descriptor with O_NOFOLLOW), nor recursing, nor opening more than one folder at a time
    (a process may have only so many files open). The way back up is "..", safe here: nothing
    runs in the container any more. (Not rmtree itself: shutil loads bz2 and lzma, 2 ms of
    every `lab run --rm`.)"""
    def empty_but_folders(fd: int) -> list[str]:
        """Unlink all the folder fd holds but its folders (a symlink is unlinked); their names."""
        with os.scandir(fd) as listing:
            entries = list(listing)
        folders = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
        return folders
    opening = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(folder, opening)
    try:
        below, names = [empty_but_folders(fd)], []     # each level's folders still to delete; the way down
        while below:
            if below[-1]:                                # down into the next one
                name = below[-1].pop()
                inner = os.open(name, opening, dir_fd=fd)
                os.close(fd)
                fd = inner
                names.append(name)
                below.append(empty_but_folders(fd))
                continue
            below.pop()                                  # this one is empty now: up, and delete it
            if names:
                outer = os.open("..", opening, dir_fd=fd)
                os.close(fd)
                fd = outer
                os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(folder)


def delete_quietly(folder) -> None:
    """delete_folder, for a folder no one may miss: what cannot be deleted stays (hidden, as a
    .removing- or .creating- folder), and the command that tried goes on."""
    try:
        delete_folder(folder)
    except OSError:
        pass


def chroot_into(root: str) -> None:
    """chroot(root) and cd /, for a process of lab's that reads or writes a container's files by
    their names: the container's symlinks and `..` then lead nowhere else. First, this process's
    tarfile stops looking owners' names up (its tars carry their numbers, as image layers do):
    under the container's root, glibc's first lookup would read *its* nsswitch.conf and load the
    libnss_*.so it names, code run by host root (docker cp had that hole: CVE-2019-14271), and
    every lookup opens its /etc/passwd or /etc/group, which it may have made a pipe: an open
    that waits for a writer for ever (a commit waits so holding the images' lock)."""
    tarfile = sys.modules.get("tarfile")     # (the work's, imported by now: nothing is, after seal_imports)
    if tarfile is not None:
        tarfile.pwd = tarfile.grp = None     # (what tarfile has where there are no such modules)
    seal_imports()
    os.chroot(root)
    os.chdir("/")


class Sealed:
    """The first of Python's finders (sys.meta_path) in a process of lab's about to enter a
    container's root (pivot_root, setns, chroot): from there, a module not imported yet would
    be looked for in the container's /usr/lib/python3.X and what its image put there run as lab,
    before any confinement. So lab imports nothing more: what it needs there is imported before."""

    def find_spec(self, name, path=None, target=None):
        raise ImportError(f"lab imports {name} in a container's root, whose files are the container's: "
                          "import it at the top of the module instead")


def seal_imports() -> None:
    import sys
    sys.meta_path.insert(0, Sealed())


def in_chroot(root: str, work, *args) -> None:
    """work(*args) in a child process chrooted into root (chroot_into); its error (a LabError or
    an OSError) raised here as a LabError. For
    a folder a running container can change while lab reads it: a folder swapped for a symlink
    to the host's files then leads back into root."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            chroot_into(root)
            work(*args)
            status = 0
        except BaseException as e:
            os.write(write_end, str(e).encode()[:4000])
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            error = pipe.read().decode(errors="replace")
    except BaseException:                 # lab stops while it reads (a build's Ctrl-C): its helper too
        os.kill(pid, signal.SIGKILL)      # (not reaped yet: the PID is still its)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise LabError(error or f"the helper process ended with status {status}")
