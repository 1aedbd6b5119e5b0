"""Chapter 05: volumes, data that lives apart from the container.

A container's changes live in its upper folder and go with it (chapter 04). A volume is a
host folder bind-mounted into the container: what the container writes there is written
straight into the host folder, at once, and stays when the container is removed.

    -v /host/path:/ctr/path[:ro]   a bind mount of a host folder (or file)
    -v NAME:/ctr/path[:ro]         a named volume: a folder lab keeps, LAB_ROOT/volumes/NAME/_data,
                                   made on first use or by `lab volume create NAME`; an empty one
                                   starts with the image's files there, but with :nocopy (:ro,nocopy)
    --tmpfs /ctr/path[:OPTIONS]    a tmpfs: memory, gone with the container (size=64m, mode=1777...)

The child mounts them after the overlay and before pivot_root: after, the host's paths are
gone. A bind mount ignores MS_RDONLY: read-only takes a second call, a remount of the bind.
See man 8 mount (bind mounts), man 2 mount (MS_BIND, MS_REMOUNT).
"""
import errno
import os
import re
import stat
import time
from pathlib import Path
# (shutil is imported in the functions that use it: it loads bz2 and lzma, 2 ms a command)

from lab import Conflict, LabError, NotFound, folders, names, process, store, syscalls
from lab.syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT

# --tmpfs options that are mount flags (the others, size=, mode=, uid=, gid=, go to tmpfs itself)
TMPFS_FLAGS = {"ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False), "noexec": (MS_NOEXEC, True),
               "exec": (MS_NOEXEC, False), "nosuid": (MS_NOSUID, True), "suid": (MS_NOSUID, False),
               "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False)}
# and those tmpfs takes itself (man 5 tmpfs), checked here: the kernel would only say EINVAL
TMPFS_VALUES = {"size": (r"[0-9]+[kKmMgGtTpPeE%]?", "bytes, with k, m or g after, or a % of memory (size=64m)"),
                "nr_inodes": (r"[0-9]+[kKmMgG]?", "a number of inodes, with k, m or g after"),
                "mode": (r"[0-7]{1,4}", "octal permissions (mode=1777)"),
                "uid": (r"[0-9]+", "a number"), "gid": (r"[0-9]+", "a number")}


def parse(spec: str) -> dict:
    """Turn -v's SOURCE:DESTINATION[:MODE] into a mount, in docker's shape.

    MODE: ro or rw, nocopy, or one of each with a comma (ro,nocopy).
    {"Type": "bind" or "volume", "Name": NAME or None, "Source": host path, "Destination": path, "RW": bool},
    and for a volume "CopyData": bool (False with nocopy: an empty volume is not filled from the image)
    """
    # HINT: -v comes in two shapes, a host path or a volume's name, with an optional mode: check
    # HINT: everything before anything is made, and refuse what docker refuses (the lesson's
    # HINT: "Bad input" section shows each refusal, in the words the tests look for).
    # HINT 2: split on ":" into 2 or 3 parts (the third, MODE: its words split on ","); DESTINATION must be absolute,
    # HINT 2: not "/" itself, with no "." or ".." step; keep it as "/" + its non-empty steps joined.
    # HINT 3: a SOURCE starting with "/" is a host path that must exist (bind: its Source is the
    # HINT 3: path cleaned, os.path.normpath, as inspect shows it); anything else is a
    # HINT 3: volume NAME (it must match names.NAME), whose Source is volume_path(NAME).
    # HINT 3: Every refusal is a LabError that says what was wrong and how to write it, in the
    # HINT 3: words of the lesson's "Bad input" section: the tests look for them.
    # BEGIN SOLUTION 05
    parts = spec.split(":")
    modes = parts[2].split(",") if len(parts) == 3 else []
    if (len(parts) not in (2, 3) or not set(modes) <= {"ro", "rw", "nocopy"} or len(set(modes)) < len(modes)
            or {"ro", "rw"} <= set(modes)):
        raise LabError(f"invalid volume {spec!r}: use -v /host/path:/path/in/container[:ro|:rw] "
                       "or -v NAME:/path/in/container[:ro|:rw|:nocopy|:ro,nocopy|:rw,nocopy]")
    source, destination = parts[0], parts[1]
    if not destination.startswith("/"):
        raise LabError(f"invalid volume {spec!r}: the path in the container, {destination!r}, must be absolute")
    steps = [step for step in destination.split("/") if step]
    if not steps:
        raise LabError(f"invalid volume {spec!r}: a volume cannot be mounted over the container's / "
                       "(mount it on a folder, e.g. /data)")
    if "." in steps or ".." in steps:                 # /a/../b: say the path it means
        raise LabError(f"invalid volume {spec!r}: write the path in the container without '.' or '..', "
                       f"e.g. {os.path.normpath(destination)}")
    destination = "/" + "/".join(steps)               # /a//b/ is /a/b
    read_write = "ro" not in modes
    if source.startswith("/"):
        if not os.path.exists(source):
            raise LabError(f"invalid volume {spec!r}: the host path {source} does not exist (create it first)")
        if "nocopy" in modes:
            raise LabError(f"invalid volume {spec!r}: nocopy is for a volume (a host folder is never filled)")
        return {"Type": "bind", "Name": None, "Source": os.path.normpath(source),
                "Destination": destination, "RW": read_write}
    if not names.NAME.fullmatch(source):
        raise LabError(f"invalid volume {spec!r}: {source!r} is neither an absolute host path nor a volume "
                       "name (2 or more letters, digits, '_', '.', '-'; a host path starts with /)")
    return {"Type": "volume", "Name": source, "Source": str(volume_path(source)),
            "Destination": destination, "RW": read_write, "CopyData": "nocopy" not in modes}
    # END SOLUTION


def mount_point(root: str, mount: dict) -> str:
    """root + mount["Destination"], made if missing (it lands in the container's upper folder):
    a folder for a folder Source, an empty file for a file. Called before pivot_root, by
    mount_volume (lab calls that from a process chrooted into the container's root: root "/")."""
    # HINT: the path leads into the image, and the image is not to be trusted: a symlink in it
    # HINT: would take the mount point elsewhere (with root a folder of the host, before
    # HINT: pivot_root, to the host's own files). Check the whole path before making anything.
    # HINT 2: walk root + Destination one step at a time and refuse (LabError) a step that is a
    # HINT 2: symlink; then make what is missing: folders for a folder Source, and for a file its
    # HINT 2: parent folders and an empty file (a bind needs a mount point of the same kind).
    # HINT 3: os.path.islink(path) for each prefix; os.makedirs(path, exist_ok=True);
    # HINT 3: open(path, "a").close() makes an empty file and leaves an existing one as it is.
    # HINT 3: Beware os.path.join(root, "/data"): an absolute part throws root away ("/data").
    # BEGIN SOLUTION 05
    path = root
    for part in (p for p in mount["Destination"].split("/") if p):
        path = os.path.join(path, part)
        if os.path.islink(path):          # it would resolve against the host's /, not the container's
            raise LabError(f"the volume's path {mount['Destination']} goes through a symlink in the image")
    if os.path.isdir(mount["Source"]):
        os.makedirs(path, exist_ok=True)
    elif not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()
    return path
    # END SOLUTION


def mount_volume(root: str, mount: dict) -> None:
    """In the child, before pivot_root: bind mount["Source"] onto root + mount["Destination"]
    (mount_all calls it: root "/", Source "/proc/N", the source bound there first)."""
    # HINT: a volume is a bind mount from outside the container's root to a point inside it;
    # HINT: read-only takes a second step.
    # HINT 2: the mount point must exist: mount_point(root, mount) makes it (a folder, or an empty
    # HINT 2: file for a file) inside the container's root, safely, and returns its path;
    # HINT 2: bind with MS_BIND | MS_REC; then, unless mount["RW"], remount it read-only:
    # HINT 2: a bind takes its flags from a second call, remount_read_only(target) below.
    # BEGIN SOLUTION 05
    target = mount_point(root, mount)
    syscalls.mount(mount["Source"], target, None, MS_BIND | MS_REC)
    if not mount["RW"]:
        remount_read_only(target)
    # END SOLUTION


def remount_read_only(path: str) -> None:
    """The bind mount at path made read-only: MS_REMOUNT | MS_BIND | MS_RDONLY, and the nosuid,
    nodev and noexec it has (a remount sets all its flags at once: one it leaves out is
    cleared, and a :ro bind of a noexec folder would let what is in it run)."""
    has = os.statvfs(path).f_flag
    kept = [flag for flag, set_on in ((MS_NOSUID, os.ST_NOSUID), (MS_NODEV, os.ST_NODEV), (MS_NOEXEC, os.ST_NOEXEC))
            if has & set_on]
    syscalls.mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | sum(kept))


def mount_all(root: str, mounts: list[dict], tmpfs: dict[str, str], init: dict | None = None) -> None:
    """In the child, before pivot_root: the container's volumes and binds in their order (an
    empty volume filled from the image first), then its tmpfs mounts, then --init's binary.

    mount_volume makes each from a process chrooted into root (folders.in_chroot). A path
    through a volume mounted before is another container's to change meanwhile: a folder of it
    swapped for a symlink to the host's / between mount_point's check and the mount would have
    the mount point made, and the mount made, on the host's side (runc's CVE-2021-30465). In
    root, that symlink leads back into root. The sources, outside root, are bound first onto
    /proc/N of root (a tmpfs over root's /proc, which is the container's own: no volume goes
    there; the real /proc comes after pivot_root), and unmounted once all is mounted."""
    if not (mounts or tmpfs or init):
        return
    staged = [*mounts, *([init] if init else [])]
    stage = os.path.join(root, "proc")
    if not os.path.lexists(stage):
        os.mkdir(stage, 0o755)
    try:
        proc = os.open(stage, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise LabError("the image's /proc is not a folder (a symlink or a file): a container needs one "
                       "for its /proc") from None
    try:
        syscalls.mount("tmpfs", f"/proc/self/fd/{proc}", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=700")
    finally:
        os.close(proc)
    try:
        for n, mount in enumerate(staged):
            stage_source(mount, os.path.join(stage, str(n)))
        for n, mount in enumerate(mounts):
            if mount["Type"] == "volume" and mount.get("CopyData", True):
                fill_from_image(root, mount)             # an empty one starts with the image's files there
            in_root(root, mount_here, {**mount, "Source": f"/proc/{n}"})
        if tmpfs:
            in_root(root, mount_tmpfs_here, tmpfs)
        if init:
            in_root(root, mount_here, {**init, "Source": f"/proc/{len(mounts)}"})
    finally:
        syscalls.umount2(stage, syscalls.MNT_DETACH)


def in_root(root: str, work, *args) -> None:
    """work(*args) in a process chrooted into root (folders.in_chroot), a bug there said as lab
    says one (process.describe: its kind and the function it came from: yours, maybe)."""
    def described(*args):
        try:
            work(*args)
        except (LabError, NotImplementedError):
            raise
        except Exception as e:
            raise LabError(process.describe(e)) from None
    folders.in_chroot(root, described, *args)


def stage_source(mount: dict, at: str) -> None:
    """Bind a mount's source (a folder in a volume: opened a folder at a time, pinned) onto at,
    read-only already if the mount is: a path swapped meanwhile may lead the chrooted process
    into another mount's source, where its mount point must not be made."""
    mount, in_volume = pinned(mount)
    try:
        if os.path.isdir(mount["Source"]):
            os.mkdir(at)
        else:
            os.close(os.open(at, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        syscalls.mount(mount["Source"], at, None, MS_BIND | MS_REC)
        if not mount["RW"]:
            remount_read_only(at)
    finally:
        if in_volume is not None:
            os.close(in_volume)


def mount_here(mount: dict) -> None:
    """In a process chrooted into the container's root: the mount (mount_volume, by path), then
    a check through a descriptor opened a name at a time, never through a symlink: the path
    leads to the mount made (the source's own folder or file), not one that another container
    swapped in since, and read-only is set there, all the way down (as docker's, API 1.44)."""
    mount_volume("/", mount)
    changed = LabError(f"after mount_volume, {mount['Destination']} is not what was mounted there: a mount made "
                       "on another path, or a path that another container with a volume on the way changed meanwhile")
    parent, name = os.path.split(mount["Destination"])
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        folder = folders.open_below(root, parent)
        try:
            target = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
        finally:
            os.close(folder)
    except OSError:                              # a symlink on the way (ELOOP, ENOTDIR)
        raise changed from None
    finally:
        os.close(root)
    try:
        made, source = os.fstat(target), os.stat(mount["Source"])
        if (made.st_dev, made.st_ino) != (source.st_dev, source.st_ino):     # (a symlink: its own inode)
            raise changed
        if not mount["RW"]:
            read_only_below(target)
    finally:
        os.close(target)


def mount_tmpfs_here(tmpfs: dict[str, str]) -> None:
    for path, options in tmpfs.items():
        mount_tmpfs("/", path, options)


def pinned(mount: dict) -> tuple[dict, int | None]:
    """A bind from inside lab's volumes folder (docker's --mount volume-subpath=a/b is one: a
    folder in a volume) with its source opened a folder at a time from there, never through a
    symlink (folders.open_below): a container with the volume mounted can put one in it, to a
    host folder that would then be mounted in another container. Returns the mount with that
    descriptor as its Source (/proc/self/fd/N: a bind of it binds the folder it is open on) and
    the descriptor, to close once mounted; any other mount as it is, and None."""
    inside = os.path.relpath(mount["Source"], store.volumes_dir())
    if mount["Type"] != "bind" or inside == ".." or inside.startswith("../"):
        return mount, None
    top = os.open(store.volumes_dir(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = folders.open_below(top, inside)
    except OSError as e:
        raise LabError(f"the volume's folder {mount['Source']} goes through a symlink or is not a folder "
                       f"({e.strerror}): a volume's subpath must be a folder in it, reached by folders only") from None
    finally:
        os.close(top)
    return {**mount, "Source": f"/proc/self/fd/{fd}"}, fd


def read_only_below(target: int) -> None:
    """After mount_volume, on the mount open as target: a read-only bind whose source has mounts
    below it (-v /:/host:ro, a folder with a tmpfs in it) keeps those writable, as MS_REC brings
    them along with their own flags. mount_setattr(2) makes the whole tree read-only in one
    call; a kernel before 5.12 has no such call, and its submounts stay as they are (docker
    before 25 left them so too)."""
    try:
        syscalls.mount_setattr("", syscalls.AT_EMPTY_PATH | syscalls.AT_RECURSIVE, syscalls.MOUNT_ATTR_RDONLY,
                               dirfd=target)
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise


def fill_from_image(root: str, mount: dict) -> None:
    """In the child, before the volume is mounted: an empty volume gets what the image has at its
    path, as docker's does (-v data:/var/lib/app starts with the image's /var/lib/app): its
    folders, files and symlinks, each with its owner, then its mode, times and extended
    attributes (in that order: a chown clears setuid bits and file capabilities). A volume with
    anything in it is left as it is. A device node or a FIFO is no data and is not copied
    (reading a device would read the host's).

    This runs as the host's root, and another container may have a volume on the way mounted
    and write in it meanwhile: a folder it swaps for a symlink to the host's would have the
    host's files read as the image's. So the image's side is read from a process chrooted into
    the container's root (folders.in_chroot), where every symlink leads back into it. And a
    symlink put in the volume where a file is about to be copied would have the copy written
    to the host: so each entry is made from its folder's descriptor, never through a symlink,
    and only if nothing has its name yet (O_EXCL)."""
    volume = mount["Source"]
    if not os.path.isdir(volume) or os.listdir(volume):
        return
    top = os.open(volume, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        in_root(root, copy_tree, mount["Destination"], top)
    finally:
        os.close(top)


def copy_tree(path: str, top: int) -> None:
    """What the image has at path (none if a symlink is on the way: mount_point refuses it) into
    the folder open as top."""
    steps = ""
    for part in path.strip("/").split("/"):
        steps += "/" + part
        if os.path.islink(steps) or not os.path.exists(steps):
            return
    if not os.path.isdir(path):
        return
    copy_status(path, os.lstat(path), top)               # the volume's own folder
    for source in folders.below(path):
        parent, name = os.path.split(os.path.relpath(source, path))
        try:
            into = folders.open_below(top, parent)
        except OSError:                                  # not a folder any more: another's doing
            continue
        try:
            copy_entry(source, into, name)
        finally:
            os.close(into)


def copy_entry(source: str, into: int, name: str) -> None:
    """Copy the folder, file or symlink at source as name in the folder open as into, if that
    name is free; a folder that is there already gets the status only."""
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        st = os.lstat(source)
        if stat.S_ISDIR(st.st_mode):
            try:
                os.mkdir(name, 0o700, dir_fd=into)
            except FileExistsError:                      # (two first runs may fill it at once)
                pass
            made = os.open(name, os.O_RDONLY | os.O_DIRECTORY | flags, dir_fd=into)
        elif stat.S_ISREG(st.st_mode):
            data = os.open(source, os.O_RDONLY | os.O_NONBLOCK | flags)     # (a pipe swapped in: no wait)
            try:
                if not stat.S_ISREG(os.fstat(data).st_mode):
                    return                               # swapped since: another's doing
                made = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flags, 0o600, dir_fd=into)
                try:
                    while os.sendfile(made, data, None, 1 << 20):
                        pass
                except BaseException:
                    os.close(made)
                    raise
            finally:
                os.close(data)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), name, dir_fd=into)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=into, follow_symlinks=False)
            return
        else:
            return                                       # a device node, a FIFO, a socket
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ELOOP, errno.ENOTDIR, errno.ENOENT):   # made meanwhile, a symlink
            return                                                                # there, or gone
        raise
    try:
        copy_status(source, st, made)
    finally:
        os.close(made)


def copy_status(source: str, st: os.stat_result, fd: int) -> None:
    """Owner, then mode, times and extended attributes, from source (whose lstat is st) to fd."""
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    try:
        for attribute in os.listxattr(source, follow_symlinks=False):
            os.setxattr(fd, attribute, os.getxattr(source, attribute, follow_symlinks=False))
    except OSError as e:             # a filesystem without them, or one the volume's takes not (as shutil's)
        if e.errno not in (errno.ENOTSUP, errno.ENODATA, errno.EPERM, errno.EINVAL):
            raise


def spec(mount: dict) -> str:
    """The -v that gives this mount: SOURCE:DESTINATION[:MODE] (parse's other way)."""
    return ":".join([mount["Name"] or mount["Source"], mount["Destination"], store.mount_mode(mount)]).rstrip(":")


def parse_tmpfs(spec: str) -> tuple[str, str]:
    """--tmpfs /path[:opt,opt...] -> (path, options); docker's default flags noexec,nosuid,nodev."""
    path, _, options = spec.partition(":")
    if not path.startswith("/") or path.rstrip("/") == "" or ".." in path.split("/"):
        raise LabError(f"invalid --tmpfs {spec!r}: use an absolute path other than /, e.g. --tmpfs /run:size=64m")
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        if key not in TMPFS_FLAGS and key not in TMPFS_VALUES:
            raise LabError(f"invalid --tmpfs option {option!r}: use size=, mode=, uid=, gid=, ro, noexec, nosuid, nodev")
        if key in TMPFS_VALUES and not re.fullmatch(TMPFS_VALUES[key][0], value):
            raise LabError(f"invalid --tmpfs option {option!r}: {key}= takes {TMPFS_VALUES[key][1]}")
    return "/" + os.path.normpath(path).lstrip("/"), options      # (normpath keeps a leading //)


def mount_tmpfs(root: str, path: str, options: str) -> None:
    """In the child, before pivot_root: a tmpfs at root + path."""
    flags, data = MS_NOEXEC | MS_NOSUID | MS_NODEV, []
    for option in filter(None, options.split(",")):
        if option in TMPFS_FLAGS:
            flag, on = TMPFS_FLAGS[option]
            flags = flags | flag if on else flags & ~flag
        else:
            data.append(option)
    target = mount_point(root, {"Destination": path, "Source": "/"})      # (a folder)
    syscalls.mount("tmpfs", target, "tmpfs", flags, ",".join(data) or None)


def check_against_image(mount: dict, in_image: os.stat_result | None) -> None:
    """Refuse a folder over a file of the image, or a file over a folder (before anything runs).
    in_image: what the image has at the mount's destination (images.in_layers), None if nothing.
    A tmpfs or a volume is a folder; a symlink is mount_point's to refuse."""
    if in_image is None or stat.S_ISLNK(in_image.st_mode):
        return
    folder = mount["Type"] in ("tmpfs", "volume") or os.path.isdir(mount["Source"])
    if stat.S_ISDIR(in_image.st_mode) != folder:
        what = ("a tmpfs" if mount["Type"] == "tmpfs" else f"the volume {mount['Name']}" if mount["Type"] == "volume"
                else f"the {'folder' if folder else 'file'} {mount['Source']}")
        raise LabError(f"cannot mount {what} on {mount['Destination']}: that is a "
                       f"{'file' if folder else 'folder'} in the image")


# Where lab mounts the kernel's filesystems and its own /dev, after the volumes: a volume there
# would be hidden under them. (lab's own limit: docker mounts volumes after these, and takes
# -v /dev/log:/dev/log or -v /sys/fs/cgroup:/sys/fs/cgroup:ro; before, lab hid them silently.)
KERNEL_MOUNTS = ("/proc", "/sys", "/dev")


def check_target(destination: str, taken: list[str]) -> None:
    """Refuse a second mount on one path (taken: those before it), or one on lab's own."""
    if destination in taken:
        raise LabError(f"two volumes are mounted on {destination}: give each its own path")
    for kernel in KERNEL_MOUNTS:
        if destination == kernel or destination.startswith(kernel + "/"):
            raise LabError(f"cannot mount a volume on {destination}: lab mounts the container's own "
                           f"{kernel} there after the volumes, which would hide it (docker mounts it first): "
                           "choose another path")


# Named volumes: LAB_ROOT/volumes/NAME/_data. A volume lives until `lab volume rm`.

def volume_path(name: str) -> Path:
    """LAB_ROOT/volumes/NAME/_data: every use of a volume's name goes through here, and is checked.

    A name like ../../home would lead out of LAB_ROOT, and `volume rm` would delete what is
    there; a symlink in the volume's place would do the same, and a mount would show its target
    to the container. lab makes no symlinks there, so it never follows one."""
    folder = store.volumes_dir() / names.check_name(name, "volume")
    if folder.is_symlink() or (folder / "_data").is_symlink():
        raise LabError(f"the volume {name} ({folder}) goes through a symlink, which lab never makes: "
                       "lab does not follow it (remove it by hand)")
    return folder / "_data"


def locked() -> store.locked:
    """The volumes' lock: a removal's check that no container uses the volume, and its rename,
    against a create (lab run -v) that would make it again or find it half-deleted."""
    return store.locked(store.volumes_dir() / ".lock")


def create(name: str, labels: dict | None = None) -> Path:
    path = volume_path(name)
    with locked():
        path.mkdir(parents=True, exist_ok=True)
        if labels:
            store.write_json(path.parent / "labels.json", labels)
    store.journal("volume", name, "create", {"driver": "local"})
    return path


def labels(name: str) -> dict:
    try:
        return store.read_json(volume_path(name).parent / "labels.json")
    except FileNotFoundError:
        return {}


def list_volumes() -> list[str]:
    folder = store.volumes_dir()
    found = folder.iterdir() if folder.is_dir() else ()
    return sorted(p.name for p in found if names.is_name(p.name) and not p.is_symlink()
                  and (p / "_data").is_dir() and not (p / "_data").is_symlink())


def users(name: str) -> list[str]:
    """The containers (running or not) that mount the volume."""
    return [c.name for c in store.list_containers()
            if any(m.get("Name") == name for m in c.config.get("Mounts", []))]


def inspect(name: str) -> dict:
    path = volume_path(name)
    if not path.is_dir():
        raise NotFound(f"no such volume: {name} (`lab volume ls` lists them)")
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.parent.stat().st_mtime))
    return {"CreatedAt": created, "Driver": "local", "Labels": labels(name), "Mountpoint": str(path),
            "Name": name, "Options": {}, "Scope": "local", "UsedBy": users(name)}


def is_anonymous(name: str) -> bool:
    """Made for -v /path, with no name given: named by a random id, as docker names them."""
    return names.ID.fullmatch(name) is not None


def remove_anonymous(mounts: list[dict]) -> None:
    """rm -v, --rm: the anonymous volumes of a removed container go with it (if nothing else uses them)."""
    for mount in mounts:
        if mount.get("Name") and is_anonymous(mount["Name"]) and not users(mount["Name"]):
            remove(mount["Name"])


def remove(name: str) -> None:
    """Renamed first (atomic), under the lock, then deleted: a container made meanwhile is
    either among its users (refused) or makes a new one; a removal cut short (kill -9) leaves a
    hidden folder, not half a volume, and the next removal finishes it (store.remove_interrupted)."""
    inspect(name)                                   # it exists
    doomed = store.volumes_dir() / f".removing-{name}-{os.getpid()}"
    with locked():
        if used := users(name):
            raise Conflict(f"volume {name} is in use by the container {used[0]}: remove the container first")
        try:
            volume_path(name).parent.rename(doomed)
        except FileNotFoundError:                   # another removal was first
            raise NotFound(f"no such volume: {name} (`lab volume ls` lists them)") from None
    store.journal("volume", name, "destroy", {"driver": "local"})       # (gone from the listings now)
    store.remove_interrupted(store.volumes_dir())
    folders.delete_folder(doomed)                   # (what containers made there: symlinks, deep folders)
