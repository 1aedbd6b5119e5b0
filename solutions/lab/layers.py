"""Putting layers into the store: every change to images/ and layers/ goes through here.

One lab changes the store at a time (`locked`): two first `lab run`s build busybox once, and
imports, commits and rmi never interleave. A layer is unpacked into a hidden folder and renamed
into place once whole, so a killed lab leaves no half-made layer (the next one cleans up).

The first image, busybox, is built here from the distribution's static busybox: one binary
that is `sh`, `ls`, `ps` and 300 other commands, no libraries, no network.
"""
import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import threading
import time
from pathlib import Path

from lab import LabError, tarsplit
from lab.folders import delete_folder, delete_quietly, walk
from lab.names import host_arch
from lab.store import (image_path, images_dir, images_lock, layer_path, layers_dir, read_json, remove_stale_temporaries,
                       tagged, tags, tags_path, write_json)
from lab.store import locked as locked_file


def busybox_binary() -> Path:
    return Path(os.environ.get("LAB_BUSYBOX") or "/bin/busybox")


def is_static(path: Path) -> bool:
    """True when the ELF file at path has no PT_INTERP header (needs no dynamic loader)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:      # 64-bit ELF only
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def layer_tar(folder: Path) -> bytes:
    """A reproducible tar of folder (sorted, times 0, numeric owners): busybox's layer."""
    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uname, info.gname = 0, "", ""
        return info

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(folder.iterdir()):
            tar.add(entry, arcname=entry.name, filter=normalise)
    return out.getvalue()


def build_busybox(recipe: int, config: dict) -> str:
    """Build busybox:latest from the static busybox binary, with its image config; return the
    image id. recipe (images.BUSYBOX_RECIPE) says which build this is: an older one is replaced."""
    binary = busybox_binary()
    if not binary.is_file() or not is_static(binary):
        raise LabError(f"the busybox image needs a static busybox at {binary}: "
                       "install it with `apt-get install busybox-static` (or run `make setup`)")
    with locked():                            # two first `lab run`s at once build it once
        current = tagged("busybox:latest")
        if current and read_json(image_path(current)).get("Recipe") == recipe:
            return current                    # the other one built it meanwhile
        digest = build_busybox_layer(binary)
        image = {"Layers": [digest], "Config": config, "Recipe": recipe}
        return save_image(image, "busybox", "latest")


def build_busybox_layer(binary: Path) -> str:
    work = layers_dir() / f".busybox.{os.getpid()}"
    delete_quietly(work)
    for folder in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home",
                   "dev", "proc", "sys", "tmp", "var", "run"):
        (work / folder).mkdir(parents=True)
    (work / "tmp").chmod(0o1777)
    shutil.copy2(binary, work / "bin" / "busybox")
    listing = subprocess.run([binary, "--list-full"], capture_output=True, text=True, check=True)
    for applet in listing.stdout.split():
        link = work / applet
        if not link.exists():
            link.symlink_to("/bin/busybox")
    (work / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (work / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for name in ("hostname", "hosts", "resolv.conf"):   # mount points: each container binds its own
        (work / "etc" / name).touch()
    tar = layer_tar(work)
    digest = "sha256:" + hashlib.sha256(tar).hexdigest()
    store_layer(work, digest)
    tarsplit.record(io.BytesIO(tar)).save(digest)         # so that push sends this very tar
    delete_quietly(work)                                # there already: this copy is not needed
    return digest


def delete_layers(digests) -> list[str]:
    """Delete these layers from the store (under locked()): each one's folder, and what tarsplit
    kept of its tar; return "Deleted: DIGEST" for each, as rmi says it."""
    for digest in sorted(digests):
        if layer_path(digest).is_symlink():        # lab makes none: delete the link, never its target
            layer_path(digest).unlink()
        else:
            delete_folder(layer_path(digest))
        tarsplit.split_path(digest).unlink(missing_ok=True)
    return [f"Deleted: {digest}" for digest in sorted(digests)]


held = threading.local()       # how deep this thread is in locked() blocks


def locked():
    """Hold the store's lock (a `with` block): imports, commits and rmi do not interleave. A
    thread that holds it already goes on (`lab rmi busybox` on a new store builds busybox first)."""

    @contextlib.contextmanager
    def lock():
        if getattr(held, "depth", 0):
            held.depth += 1
            try:
                yield
            finally:
                held.depth -= 1
            return
        layers_dir().mkdir(parents=True, exist_ok=True)
        with locked_file(images_lock()):
            held.depth = 1
            try:
                remove_unfinished_work()
                yield
            finally:
                held.depth = 0
    return lock()


def remove_unfinished_work() -> None:
    """What a killed import or commit left (.incoming-PID-* folders, .commit-PID.tar, an image's
    record half-written: images/.ID.json.PID.tmp): the next one to hold the lock removes them,
    once their PID is gone."""
    for path in layers_dir().glob(".*"):
        pid = path.name.split("-")[1].split(".")[0] if path.name.startswith((".incoming-", ".commit-")) else ""
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            delete_folder(path) if path.is_dir() else path.unlink()
    remove_stale_temporaries(images_dir())


def store_layer(folder: Path, digest: str) -> bool:
    """Move the unpacked folder into the store under its digest; False if the layer is there already."""
    try:
        folder.rename(layer_path(digest))
        return True
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False                      # the same content, stored once
        raise


def folder_size(path) -> int:
    """The bytes of the files under path (a layer, a container's upper folder, a volume)."""
    total = 0
    for folder, _, files in walk(path, estimate=True):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:         # deleted meanwhile (by a running container)
                pass
    return total


def layer_size(digest: str) -> int:
    return folder_size(layer_path(digest))


def save_image(image: dict, name: str | None, tag: str, config: bytes | None = None) -> str:
    """Write the image's JSON and point name:tag at it (name None: untagged, as `docker commit
    CONTAINER` makes one); return its id. The id is the digest of the image's config as a
    registry keeps it, as docker's is: config, the one an image was pulled with, else oci_config's."""
    image = {"Created": time.time(), **image}
    image.pop("ConfigJSON", None)
    config = config or oci_config(image)
    image["ConfigJSON"] = config.decode()          # what push sends: the image pulled is the image pushed
    image["Size"] = sum(layer_size(digest) for digest in image["Layers"])
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    write_json(image_path(image_id), {"Id": image_id, **image})
    if name is not None:
        write_json(tags_path(), {**tags(), f"{name}:{tag}": image_id})
    return image_id


def oci_config(image: dict) -> bytes:
    """An image made here as an OCI image config: how it runs, its platform, the diff_ids of its
    layers, when it was made (to the microsecond: two commits are two images), and its history
    when it has one (what made each layer: docker history shows it)."""
    return json.dumps({
        "architecture": image.get("Architecture") or host_arch().split("/")[0], "os": image.get("Os") or "linux",
        "created": iso_time(image.get("Created") or time.time()),
        "config": image["Config"], "rootfs": {"type": "layers", "diff_ids": image["Layers"]},
        **({"history": image["History"]} if image.get("History") else {})}, sort_keys=True).encode()


def iso_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


def created(config: dict) -> float:
    """The config's creation time (RFC 3339) as a Unix time; now when it has none."""
    import datetime
    try:
        return datetime.datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", config["created"].replace("Z", "+00:00"))).timestamp()
    except (KeyError, ValueError, AttributeError, TypeError):
        return time.time()


def history_of(image: dict) -> list[dict]:
    """The image's history, as OCI's config has it ({"created", "created_by", "comment",
    "empty_layer"}, oldest first): its own, else its config's (pulled, loaded), else one
    unknown step a layer (an image lab made before it kept one)."""
    history = image.get("History")
    if history is None and image.get("ConfigJSON"):
        history = json.loads(image["ConfigJSON"]).get("history")
    if not history or sum(not h.get("empty_layer") for h in history) != len(image["Layers"]):
        history = [{"created": iso_time(image.get("Created") or 0), "created_by": ""} for _ in image["Layers"]]
    return history


def with_history(image: dict, base: dict | None, created_by: str, comment: str = "", empty_layer: bool = False) -> dict:
    """image, its history base's and one more step: what made its top layer (or, empty_layer, its
    config alone)."""
    step = {"created": iso_time(time.time()), "created_by": created_by, **({"comment": comment} if comment else {}),
            **({"empty_layer": True} if empty_layer else {})}
    return {**image, "History": (history_of(base) if base else []) + [step]}


def sent_config(image: dict, diff_ids: list[str]) -> bytes:
    """The config to send (push, save) with the image's layers as they were packed: its own,
    when they came out as the tars they are named by (the same id there), else one for these."""
    if diff_ids == image["Layers"] and image.get("ConfigJSON"):
        return image["ConfigJSON"].encode()
    return oci_config({**image, "Layers": diff_ids})
