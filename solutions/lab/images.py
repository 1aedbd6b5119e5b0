"""Images: an ordered list of read-only layers plus the config to run them (Cmd, Env).

An image is, in essence, a rootfs. Chapter 03 makes an image's only layer the container's /;
chapter 04 stacks all its layers with overlayfs. Each layer is stored once, in a folder
named by its digest (the sha256 of its tar, OCI's "diff id"), and any number of images
share it: an image is a small JSON file listing layer digests, bottom first.

    layers/<sha256>/        a layer, unpacked, whiteouts in overlay's form (overlay.py)
    images/<sha256>.json    an image: Layers, Config, Size; its id is the sha256 of its config
    images/tags.json        name:tag -> image id

This module reads the store: what `lab run` needs (resolve an image, its layers) and what
`lab images` lists. Changing it is layers.py's (the store's lock, placing layers, building
busybox: lab run loads it only for busybox's first build) and image_commands.py's (`lab
image import`, `lab commit`, `lab rmi`).
"""
import os
import re
import stat

from lab import NotFound, folders, overlay


class NoSuchImage(NotFound):
    """The store has no image of that name: `lab run` pulls it then, as `docker run` does."""
from lab.names import parse_reference
from lab.store import (image_files, image_path, images_dir, layer_folders, layers_dir, list_containers, read_json,
                       records, tagged, tags)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX_RECIPE = 3      # bump when build_busybox_layer changes: older builds are replaced


def resolve(ref: str) -> dict:
    """The image called ref (NAME[:TAG] or NAME@DIGEST, as pulled), building busybox on first use."""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        wanted = f"{parse_reference(name)[0]}@{digest}"
        for image in list_images():
            if wanted in image.get("RepoDigests", []):
                return image
        raise NoSuchImage(f"no such image: {wanted} (lab pull {wanted} downloads it)")
    name, tag = parse_reference(ref)
    image_id = tagged(f"{name}:{tag}")
    image = load(image_id) if image_id else None
    # busybox:latest is lab's own build: made on first use, made again when that build changed
    # (an older Recipe). One pulled, loaded, committed or tagged so has no Recipe: it stays.
    outdated = image is not None and image.get("Recipe", BUSYBOX_RECIPE) != BUSYBOX_RECIPE
    if name == "busybox" and tag == "latest" and (image is None or outdated):
        from lab import layers           # only to build busybox (on first use): not on lab run's path
        config = {"Cmd": ["sh"], "Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"}
        image = load(layers.build_busybox(BUSYBOX_RECIPE, config))
    if image is None:
        raise NoSuchImage(f"no such image: {name}:{tag} (`lab images` lists the images you have)")
    return image


def load(image_id: str) -> dict:
    """The image with this id, its RepoTags read from tags.json."""
    image = read_json(image_path(image_id))
    image["RepoTags"] = sorted(ref for ref, i in tags().items() if i == image_id)
    return image


def list_images(listing: bool = False) -> list[dict]:
    """Every image, newest first (an image whose tags all moved elsewhere shows as <none>). A
    damaged record raises, but for a listing (`lab images`): see store.records."""
    found = records(image_files(), lambda path: load(f"sha256:{path.stem}"), listing)
    return sorted(found, key=lambda image: image["Created"], reverse=True)


def listed(every: list[dict]) -> list[dict]:
    """What `lab images` and `docker images` list of every: all but the untagged images another
    one was built on (a build's steps; -a lists them too). A build's last image, untagged without
    -t, is listed (<none>), as docker lists it."""
    parents = {image.get("Parent") for image in every}
    return [image for image in every if image["RepoTags"] or image["Id"] not in parents]


def is_intermediate(image: dict) -> bool:
    """A build step's image that no tag names (lab build's cache): `lab images` does not list it."""
    return bool(image.get("Intermediate")) and not image["RepoTags"]


def find(ref: str) -> dict:
    """An image by NAME[:TAG], or by (a prefix of) its id."""
    hexid = ref.removeprefix("sha256:")
    if re.fullmatch(r"[0-9a-f]{3,64}", hexid) and not tags().get(f"{hexid}:latest"):
        matches = [p.stem for p in images_dir().glob(f"{hexid}*.json")]
        if len(matches) == 1:
            return load(f"sha256:{matches[0]}")
    return resolve(ref)


def default_home(image: dict, user: str | None) -> str:
    """HOME, unless the image or -e sets it: the home folder of the container's user in the
    image's /etc/passwd, "/" for a user it lacks, as docker's (/root for root)."""
    name = (user or "root").partition(":")[0]
    if name in ("root", "0"):
        return "/root"
    for entry in read_file(image, "etc/passwd").decode(errors="replace").splitlines():
        fields = entry.split(":")
        if len(fields) >= 6 and name in (fields[0], fields[2]):
            return fields[5] or "/"
    return "/"


def read_file(image: dict, path: str) -> bytes:
    """The file at path (etc/passwd) in the image's files: b"" if there is none (or a folder, a
    whiteout, a symlink there)."""
    found = in_layers(image, path)
    if found is None or not stat.S_ISREG(found[1].st_mode):
        return b""
    with os.fdopen(opened_below(found[0], path, os.O_RDONLY), "rb") as f:
        return f.read(1 << 20)


def in_layers(image: dict, path: str) -> tuple[str, os.stat_result] | None:
    """Where path (etc/passwd) is in the image's files: the topmost layer that has something
    there, and that thing's lstat. None if no layer has it, if that layer deleted it (a
    whiteout), or if the way to it passes a symlink (which would lead to the host's files here:
    an image's symlinks are its own)."""
    for layer in reversed(layer_folders(image["Layers"])):
        try:
            fd = opened_below(layer, path, os.O_PATH)
        except FileNotFoundError:
            continue                                # not in this layer: the one below, maybe
        except OSError:
            return None
        try:
            found = os.fstat(fd)
        finally:
            os.close(fd)
        return None if overlay.is_whiteout(found) else (layer, found)
    return None


def opened_below(layer: str, path: str, flags: int) -> int:
    """path below the folder layer, opened with flags, through no symlink, nor as one."""
    top = os.open(layer, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        folder = folders.open_below(top, os.path.dirname(path))
    finally:
        os.close(top)
    try:
        return os.open(os.path.basename(path) or ".", flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    finally:
        os.close(folder)


def unused_layers() -> set[str]:
    """The digests of the stored layers that no image lists any more: what rmi may delete."""
    # HINT: a layer is unused when no image lists it: compare what the store holds with what the
    # HINT: images use.
    # HINT 2: the layers in the store are the folders in layers_dir() whose name does not start
    # HINT 2: with "." (those are unpacks in progress): digest "sha256:" + folder name; the used
    # HINT 2: ones are in the "Layers" list of every image (list_images()).
    # BEGIN SOLUTION 04
    stored = {f"sha256:{p.name}" for p in layers_dir().iterdir() if not p.name.startswith(".")}
    used = {digest for image in list_images() for digest in image["Layers"]}
    return stored - used
    # END SOLUTION


def layers_to_delete() -> set[str]:
    """The stored layers neither an image nor a container uses (a container whose image `rmi -f`
    removed keeps its layers): what rmi deletes, and the removal of such a container."""
    return unused_layers() - {digest for c in list_containers() for digest in c.config.get("Layers") or []}
