"""Images: an ordered list of read-only layers plus the config to run them (Cmd, Env).

An image is, in essence, a rootfs. Chapter 03 makes an image's folder the container's /;
chapter 04 stacks an image's layers with overlayfs. The default image,
busybox, is built here from the distribution's static busybox: one binary that is `sh`,
`ls`, `ps` and 300 other commands, so the image needs no libraries and no network.
"""
import os
import re
from pathlib import Path

from lab import LabError
from lab.store import lab_root, read_json, write_json

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX_RECIPE = 2      # bump when build_busybox_layer changes: older builds are replaced
REFERENCE = re.compile(r"^(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
                       r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?$")


def busybox_binary() -> Path:
    return Path(os.environ.get("LAB_BUSYBOX") or "/bin/busybox")


def parse_reference(ref: str) -> tuple[str, str]:
    """'busybox' -> ('busybox', 'latest'); 'me/app:v1' -> ('me/app', 'v1')."""
    m = REFERENCE.match(ref)
    if not m:
        raise LabError(f"invalid image name {ref!r}: use lowercase NAME[:TAG], e.g. busybox or busybox:latest")
    return m.group("name"), m.group("tag") or "latest"


def images_dir() -> Path:
    return lab_root() / "images"


def tags() -> dict[str, str]:
    path = images_dir() / "tags.json"
    return read_json(path) if path.exists() else {}


def resolve(ref: str) -> dict:
    """The image called ref, building busybox on first use."""
    name, tag = parse_reference(ref)
    image_id = tags().get(f"{name}:{tag}")
    image = load(image_id) if image_id else None
    if name == "busybox" and tag == "latest" and (image is None or image.get("Recipe") != BUSYBOX_RECIPE):
        image = load(build_busybox())
    if image is None:
        raise LabError(f"no such image: {name}:{tag} (`lab images` lists the images you have)")
    return image


def list_images() -> list[dict]:
    return [load(i) for i in sorted(set(tags().values()))]


def load(image_id: str) -> dict:
    return read_json(images_dir() / f"{image_id.split(':')[1]}.json")


def layer_path(digest: str) -> Path:
    return lab_root() / "layers" / digest.split(":")[1]


def is_static(path: Path) -> bool:
    """True when the ELF file at path has no PT_INTERP header (needs no dynamic loader)."""
    import struct
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:      # 64-bit ELF only
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def tar_digest(folder: Path) -> str:
    """sha256 of a reproducible tar of folder: the layer's content address."""
    import hashlib
    import tarfile
    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uname, info.gname = 0, "", ""
        return info

    class Hasher:
        def __init__(self):
            self.sha = hashlib.sha256()

        def write(self, data):
            self.sha.update(data)
            return len(data)

    hasher = Hasher()
    with tarfile.open(fileobj=hasher, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(folder.iterdir()):
            tar.add(entry, arcname=entry.name, filter=normalise)
    return "sha256:" + hasher.sha.hexdigest()


def build_busybox() -> str:
    """Build busybox:latest from the static busybox binary; return the image id."""
    import fcntl
    import hashlib
    import json
    import time
    binary = busybox_binary()
    if not binary.is_file() or not is_static(binary):
        raise LabError(f"the busybox image needs a static busybox at {binary}: "
                       "install it with `apt-get install busybox-static` (or run `make setup`)")
    images_dir().mkdir(parents=True, exist_ok=True)
    with open(images_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # two first `lab run`s at once build it once
        current = tags().get("busybox:latest")
        if current and load(current).get("Recipe") == BUSYBOX_RECIPE:
            return current
        digest = build_busybox_layer(binary)
        config = {"Cmd": ["sh"], "Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"}
        image = {"Layers": [digest], "Config": config, "Recipe": BUSYBOX_RECIPE}
        image_id = "sha256:" + hashlib.sha256(json.dumps(image, sort_keys=True).encode()).hexdigest()
        write_json(images_dir() / f"{image_id.split(':')[1]}.json",
                   {"Id": image_id, "RepoTags": ["busybox:latest"], "Created": time.time(), **image})
        write_json(images_dir() / "tags.json", {**tags(), "busybox:latest": image_id})
        return image_id


def build_busybox_layer(binary: Path) -> str:
    import shutil
    import subprocess
    layers = lab_root() / "layers"
    work = layers / f".busybox.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
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
    digest = tar_digest(work)
    final = layer_path(digest)
    if final.exists():
        shutil.rmtree(work)
    else:
        work.rename(final)
    return digest
