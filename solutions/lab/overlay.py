"""Chapter 04: overlay, a union filesystem: read-only image layers under one writable layer.

An image is an ordered list of layers; each layer holds what one build step added, changed
or deleted. overlayfs shows them as one tree: `lowerdir=TOP:...:BOTTOM` are read-only,
`upperdir` receives every write, `workdir` is the kernel's scratch space next to it. A
read finds the file in the topmost layer that has it. A write to a lower file first copies
it up; the image is never changed. A delete leaves a *whiteout* in the upper folder (a
character device 0/0) that hides the lower file; a folder deleted and made again is
*opaque* (xattr trusted.overlay.opaque=y): nothing below it shows through.

Layers travel as tar files (docker save, OCI images) where a whiteout is an empty file
`.wh.NAME` and an opaque folder holds `.wh..wh..opq`. unpack_layer turns a layer tar into a
folder overlay can stack, pack_layer turns an upper folder back into a layer tar.
See the kernel's Documentation/filesystems/overlayfs.rst and the OCI image spec (layer.md).
"""
import errno
import os
import posixpath
import stat
from pathlib import Path
# (shutil is imported in the functions that use it: it loads bz2 and lzma, 2 ms a command)

from lab import LabError, syscalls
from lab.folders import below, delete_folder

OPAQUE_XATTR = "trusted.overlay.opaque"
WHITEOUT = ".wh."                     # OCI: .wh.NAME in a layer tar deletes NAME below
OPAQUE_MARKER = ".wh..wh..opq"        # OCI: this folder hides everything below it


def mount_overlay(lower: list[str], upper: str, work: str, target: str) -> None:
    """Mount the union of the layers `lower` (bottom first, as images list them) and upper at target."""
    # HINT: one mount joins all the layers: overlayfs takes them in its options, the read-only ones
    # HINT: (in which order?), then the writable one and its work folder.
    # HINT 2: overlayfs wants the top layer first: "lowerdir=TOP:...:BOTTOM,upperdir=UPPER,workdir=WORK"
    # HINT 2: then syscalls.mount("overlay", target, "overlay", 0, options).
    # BEGIN SOLUTION 04
    options = f"lowerdir={':'.join(reversed(lower))},upperdir={upper},workdir={work}"
    syscalls.mount("overlay", target, "overlay", 0, options)
    # END SOLUTION


def fit_one_page(lower: list[str], upper: str, work: str, image: str) -> list[str]:
    """mount(2) takes one page (4096 bytes) of options. With many layers, name them from their
    folder instead: this process's working directory becomes that folder, and the layers' short
    names are returned. Too many layers even so is a LabError."""
    if len(":".join(lower)) + len(upper) + len(work) > 3800:
        os.chdir(os.path.dirname(lower[0]))
        lower = [os.path.basename(layer) for layer in lower]
    if len(":".join(lower)) + len(upper) + len(work) > 4000:
        raise LabError(f"the image {image} has too many layers ({len(lower)}) "
                       "for one overlay mount's options (4096 bytes): squash some of them")
    return lower


def member_path(layer: Path, name: str) -> Path:
    """Where the tar member `name` goes inside the folder layer; LabError if it would leave it.

    This is the classic tar-slip check: "../../etc/cron.d/x", "/etc/passwd", or "lib/x" where
    an earlier member made "lib" a symlink to "/", would write outside the layer.
    """
    # HINT: a member's name was chosen by whoever made the image: check that the path it names stays
    # HINT: inside the layer, whatever the name holds.
    # HINT 2: split name on "/"; refuse a name starting with "/" and any ".." part (a LabError
    # HINT 2: that names the member and says it "points outside the layer"); refuse when a folder
    # HINT 2: on the way is a symlink (Path.is_symlink): the member "would be written through the
    # HINT 2: symlink"; return the layer joined with the parts ("." and empty parts mean nothing).
    # BEGIN SOLUTION 04
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise LabError(f"the layer member {name!r} points outside the layer")
    path = layer
    for part in parts[:-1]:
        path = path / part
        if path.is_symlink():
            raise LabError(f"the layer member {name!r} would be written through the symlink {part!r}")
    return layer.joinpath(*parts)
    # END SOLUTION


def to_overlay_whiteout(path: Path) -> None:
    """path is where an OCI whiteout file (.wh.NAME or .wh..wh..opq) would go: make overlay's instead."""
    # HINT: OCI images mark a deletion with a .wh. file, and overlayfs understands other marks: turn
    # HINT: each into the mark overlayfs expects.
    # HINT 2: .wh..wh..opq: set the xattr OPAQUE_XATTR to b"y" on its folder (os.setxattr);
    # HINT 2: .wh.NAME: a character device 0/0 called NAME (os.mknod, stat.S_IFCHR, os.makedev(0, 0)).
    # BEGIN SOLUTION 04
    if path.name == OPAQUE_MARKER:
        os.setxattr(path.parent, OPAQUE_XATTR, b"y", follow_symlinks=False)
    else:
        os.mknod(path.with_name(path.name[len(WHITEOUT):]), stat.S_IFCHR | 0o600, os.makedev(0, 0))
    # END SOLUTION


def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs's mark of a file deleted in a layer above the others: a character device 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def to_oci_whiteout(path: str, st: os.stat_result) -> str | None:
    """The OCI whiteout file that stands for path in a layer tar, or None when path is no whiteout."""
    # HINT: the reverse of to_overlay_whiteout: overlayfs's deletion marks become the .wh. files an
    # HINT: image carries.
    # HINT 2: a character device 0/0 is a whiteout: ".wh." + its name, in the same folder;
    # HINT 2: a folder whose OPAQUE_XATTR is b"y" (see xattr() below) gets ".wh..wh..opq" inside it.
    # BEGIN SOLUTION 04
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0):
        return posixpath.join(posixpath.dirname(path), WHITEOUT + posixpath.basename(path))
    if stat.S_ISDIR(st.st_mode) and xattr(path, OPAQUE_XATTR) == b"y":
        return posixpath.join(path, OPAQUE_MARKER)
    return None
    # END SOLUTION


def xattr(path: str, name: str) -> bytes | None:
    """The extended attribute name of path (not following a symlink), or None."""
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def unpack_layer(stream, layer: Path, note=None) -> int:
    """Unpack the layer tar read from stream into the new folder layer, whiteouts as overlay's;
    note(member), if given, is told of each member before its content is read (tarsplit.py).

    Nothing is written outside layer: every member goes through member_path, a symlink may
    not climb out of the layer, and nothing is ever written through a symlink, nor is a mode,
    owner or time set through one. Device nodes are left out (a container gets its own /dev);
    return how many.
    """
    import shutil
    import tarfile
    layer.mkdir()
    skipped, folders = 0, []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if note:
                note(member)
            path = member_path(layer, member.name)
            if path == layer and not member.isdir():    # "." as a symlink: what follows would go there
                raise LabError(f"the layer member {member.name!r} would replace the layer's own folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.name.startswith(WHITEOUT):
                if path.name != OPAQUE_MARKER and path.name[len(WHITEOUT):] in ("", ".", ".."):
                    raise LabError(f"the layer member {member.name!r} is a whiteout of no file: a malformed layer")
                try:
                    to_overlay_whiteout(path)
                except FileExistsError:
                    raise LabError(f"the layer member {member.name!r} deletes a file the same layer has: "
                                   "a malformed layer") from None
                continue
            if path.is_symlink() or (path.exists() and not (member.isdir() and path.is_dir())):
                (delete_folder if path.is_dir() and not path.is_symlink() else os.unlink)(path)  # a later entry wins
            if member.isdir():
                path.mkdir(exist_ok=True)
                folders.append((path, member))
            elif member.isreg():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(tar.extractfile(member), out)
            elif member.issym():
                target = posixpath.normpath(posixpath.join(posixpath.dirname(member.name), member.linkname))
                if not member.linkname.startswith("/") and (target == ".." or target.startswith("../")):
                    raise LabError(f"the layer member {member.name!r} is a symlink out of the layer "
                                   f"({member.linkname!r})")
                os.symlink(member.linkname, path)
            elif member.islnk():
                target = member_path(layer, member.linkname)
                if not (target.is_symlink() or target.is_file()):
                    raise LabError(f"the layer member {member.name!r} is a hard link to "
                                   f"{member.linkname!r}, which is not a file of this layer")
                os.link(target, path, follow_symlinks=False)
            elif member.isfifo():
                os.mkfifo(path)
            elif member.ischr() or member.isblk():
                skipped += 1
                continue
            else:
                raise LabError(f"the layer member {member.name!r} has a type lab does not know ({member.type!r})")
            os.chown(path, member.uid, member.gid, follow_symlinks=False)
            if not path.is_symlink():    # a symlink or a hard link to one: chmod would change its target
                os.chmod(path, member.mode)
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
    for path, member in reversed(folders):      # last: adding files changed the folders' times
        # not following: a later member may have replaced the folder with a symlink out of the layer
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
    return skipped


def pack_layer(upper: Path | str, out) -> None:
    """Write the folder upper as a layer tar to the binary file out, whiteouts as OCI's. (A
    running container's upper folder: lab commit calls it chrooted there, folders.in_chroot.)"""
    import tarfile

    def numeric(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in below(upper):
            try:
                st = os.lstat(path)
            except FileNotFoundError:           # removed by a running container since it was
                continue                        # listed: as if committed a moment later
            arcname = os.path.relpath(path, upper)
            if xattr(path, "trusted.overlay.metacopy") is not None:
                raise LabError(f"{arcname} is a metadata-only copy (overlay metacopy=on): "
                               "lab commit needs the kernel's default metacopy=off")
            whiteout = to_oci_whiteout(path, st)
            if whiteout is not None:
                whiteout = tarfile.TarInfo(os.path.relpath(whiteout, upper))   # an empty file
                if not stat.S_ISDIR(st.st_mode):
                    tar.addfile(whiteout)       # .wh.NAME instead of the 0/0 device
                    continue
            add_entry(tar, path, arcname, numeric)
            if whiteout is not None:
                tar.addfile(whiteout)           # .wh..wh..opq inside the opaque folder


def add_entry(tar, path: str, arcname: str, numeric=None) -> None:
    """tar.add(path, arcname, recursive=False), but a regular file goes in as what was opened:
    not through a symlink, nor a pipe waited on, nor a device node read as its content. A running
    container may swap a file for another kind while lab reads it, and tar.add would look and
    then open whatever is there by then: a pipe with no writer stops it for good (a commit holds
    the store's lock), and a node of the host's disk would be read for the file's size. So tar
    opens nothing here: lab opens a regular file itself, and the rest is a header alone."""
    filtered = numeric or (lambda info: info)
    info = tar.gettarinfo(path, arcname)                                # (its lstat: a symlink is itself)
    if info is None:
        return                                  # a socket: tar has no such kind (tar.add leaves it out too)
    if info.isreg():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            info = tar.gettarinfo(path, arcname)                        # a symlink now: itself
            if info is None or info.isreg():
                return                          # a socket, or a file again: swapped as lab reads, left out
        else:
            with open(fd, "rb") as f:
                info = filtered(tar.gettarinfo(path, arcname, fileobj=f))    # (its fstat: what was opened)
                tar.addfile(info, f if info.isreg() else None)
            return
    tar.addfile(filtered(info))                                         # a header: nothing to read
