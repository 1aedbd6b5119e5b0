"""Images: an ordered list of read-only layers plus the config to run them (Cmd, Env).

An image is, in essence, a rootfs. Chapter 03 makes an image's only layer the container's /;
chapter 04 stacks all its layers with overlayfs. Each layer is stored once, in a folder
named by its digest (the sha256 of its tar, OCI's "diff id"), and any number of images
share it: an image is a small JSON file listing layer digests, bottom first.

    layers/<sha256>/        a layer, unpacked, whiteouts in overlay's form (overlay.py)
    images/<sha256>.json    an image: Layers, Config, Size; its id is the sha256 of its config
    images/tags.json        name:tag -> image id

Images come from three places: busybox is built here from the distribution's static busybox
(one binary that is `sh`, `ls`, `ps` and 300 other commands: no libraries, no network);
`lab image import` reads a rootfs tarball, a `docker save` archive or an OCI image layout;
`lab commit` turns a container's upper folder into a new layer on top of its image.
"""
import os
import re
import sys
from pathlib import Path

from lab import Conflict, LabError, NotFound
from lab.names import digest_hex, parse_reference
from lab.store import lab_root, read_json, write_json

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX_RECIPE = 2      # bump when build_busybox_layer changes: older builds are replaced


def busybox_binary() -> Path:
    return Path(os.environ.get("LAB_BUSYBOX") or "/bin/busybox")


def images_dir() -> Path:
    return lab_root() / "images"


def tags() -> dict[str, str]:
    path = images_dir() / "tags.json"
    try:
        return read_json(path)
    except FileNotFoundError:
        return {}
    except ValueError:                  # damaged: the images are still there, by id; their names are lost
        print(f"lab: warning: {path} is damaged: image names are lost (`lab images` lists the images "
              "by id; tag them again with lab commit or lab image import)", file=sys.stderr)
        return {}


def resolve(ref: str) -> dict:
    """The image called ref, building busybox on first use."""
    name, tag = parse_reference(ref)
    image_id = tags().get(f"{name}:{tag}")
    image = load(image_id) if image_id else None
    if name == "busybox" and tag == "latest" and (image is None or image.get("Recipe") != BUSYBOX_RECIPE):
        image = load(build_busybox())
    if image is None:
        raise NotFound(f"no such image: {name}:{tag} (`lab images` lists the images you have)")
    return image


def load(image_id: str) -> dict:
    """The image with this id, its RepoTags read from tags.json."""
    image = read_json(images_dir() / f"{digest_hex(image_id)}.json")
    image["RepoTags"] = sorted(ref for ref, i in tags().items() if i == image_id)
    return image


def list_images() -> list[dict]:
    """Every image, newest first (an image whose tags all moved elsewhere shows as <none>)."""
    found = [load(f"sha256:{p.stem}") for p in images_dir().glob("*.json") if p.name != "tags.json"]
    return sorted(found, key=lambda image: image["Created"], reverse=True)


def find(ref: str) -> dict:
    """An image by NAME[:TAG], or by (a prefix of) its id."""
    hexid = ref.removeprefix("sha256:")
    if re.fullmatch(r"[0-9a-f]{3,64}", hexid) and not tags().get(f"{hexid}:latest"):
        matches = [p.stem for p in images_dir().glob(f"{hexid}*.json")]
        if len(matches) == 1:
            return load(f"sha256:{matches[0]}")
    return resolve(ref)


def inspect(image: dict) -> dict:
    """What `lab inspect IMAGE` shows, in docker's shape."""
    import time
    return {"Id": image["Id"], "RepoTags": image["RepoTags"], "Parent": image.get("Parent", ""),
            "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(image["Created"])),
            "Size": image["Size"], "Config": image["Config"],
            "RootFS": {"Type": "layers", "Layers": image["Layers"]}}


def layer_path(digest: str) -> Path:
    return layers_dir() / digest.split(":")[1]


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
    binary = busybox_binary()
    if not binary.is_file() or not is_static(binary):
        raise LabError(f"the busybox image needs a static busybox at {binary}: "
                       "install it with `apt-get install busybox-static` (or run `make setup`)")
    with locked():                            # two first `lab run`s at once build it once
        current = tags().get("busybox:latest")
        if current and load(current).get("Recipe") == BUSYBOX_RECIPE:
            return current
        digest = build_busybox_layer(binary)
        config = {"Cmd": ["sh"], "Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"}
        image = {"Layers": [digest], "Config": config, "Recipe": BUSYBOX_RECIPE}
        return save_image(image, "busybox", "latest")


def build_busybox_layer(binary: Path) -> str:
    import shutil
    import subprocess
    work = layers_dir() / f".busybox.{os.getpid()}"
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
    store_layer(work, digest)
    shutil.rmtree(work, ignore_errors=True)             # there already: this copy is not needed
    return digest


# The store: layers are shared, images are small JSON files. One lab changes it at a time.

def layers_dir() -> Path:
    return lab_root() / "layers"


def locked():
    """Hold the store's lock (a `with` block): imports, commits and rmi do not interleave."""
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def lock():
        images_dir().mkdir(parents=True, exist_ok=True)
        layers_dir().mkdir(parents=True, exist_ok=True)
        with open(images_dir() / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            remove_unfinished_work()
            yield
    return lock()


def remove_unfinished_work() -> None:
    """What a killed import or commit left (.incoming-PID-* folders, .commit-PID.tar): the next
    one to hold the lock removes them, once their PID is gone."""
    import shutil
    for path in layers_dir().glob(".*"):
        pid = path.name.split("-")[1].split(".")[0] if path.name.startswith((".incoming-", ".commit-")) else ""
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def store_layer(folder: Path, digest: str) -> bool:
    """Move the unpacked folder into the store under its digest; False if the layer is there already."""
    try:
        folder.rename(layer_path(digest))
        return True
    except OSError as e:
        import errno
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False                      # the same content, stored once
        raise


def layer_size(digest: str) -> int:
    total = 0
    for folder, _, files in os.walk(layer_path(digest)):
        total += sum(os.lstat(os.path.join(folder, name)).st_size for name in files)
    return total


def save_image(image: dict, name: str, tag: str, image_id: str | None = None) -> str:
    """Write the image's JSON and point name:tag at it; return its id (the sha256 of its JSON)."""
    import hashlib
    import json
    import time
    image = {"Created": time.time(), **image}
    image["Size"] = sum(layer_size(digest) for digest in image["Layers"])
    image_id = image_id or "sha256:" + hashlib.sha256(json.dumps(image, sort_keys=True).encode()).hexdigest()
    write_json(images_dir() / f"{digest_hex(image_id)}.json", {"Id": image_id, **image})
    write_json(images_dir() / "tags.json", {**tags(), f"{name}:{tag}": image_id})
    return image_id


def unused_layers() -> set[str]:
    """The digests of the stored layers that no image lists any more: what rmi may delete."""
    # HINT: the layers in the store are the folders in layers_dir() whose name does not start
    # HINT: with "." (those are unpacks in progress): digest "sha256:" + folder name; the used
    # HINT: ones are in the "Layers" list of every image (list_images()).
    # BEGIN SOLUTION 04
    stored = {f"sha256:{p.name}" for p in layers_dir().iterdir() if not p.name.startswith(".")}
    used = {digest for image in list_images() for digest in image["Layers"]}
    return stored - used
    # END SOLUTION


def remove_image(ref: str) -> list[str]:
    """`lab rmi`: untag; when no tag is left, delete the image and the layers nobody else uses."""
    import shutil
    from lab import store
    with locked():
        image = find(ref)
        named = ":".join(parse_reference(ref))        # an id parses too: it is no tag, so all go
        untag = [named] if named in image["RepoTags"] else image["RepoTags"]
        last = len(untag) == len(image["RepoTags"])          # the last tag goes: the image goes
        if last:
            users = [c.name for c in store.list_containers() if c.config["ImageId"] == image["Id"]]
            if users:
                raise Conflict(f"the image {ref} is used by the container {users[0]}: "
                               f"remove the container first (lab rm {users[0]})")
        write_json(images_dir() / "tags.json", {r: i for r, i in tags().items() if r not in untag})
        done = [f"Untagged: {r}" for r in untag]
        if last:
            (images_dir() / f"{digest_hex(image['Id'])}.json").unlink()
            done.append(f"Deleted: {image['Id']}")
            for digest in sorted(unused_layers()):
                if layer_path(digest).is_symlink():    # lab makes none: delete the link, never its target
                    layer_path(digest).unlink()
                else:
                    shutil.rmtree(layer_path(digest))
                done.append(f"Deleted: {digest}")
    return done


# Adding layers: from an archive (lab image import) or from a container (lab commit).

class HashingReader:
    """A file wrapper that hashes every byte read through it: the tar's digest, in the same pass."""

    def __init__(self, f):
        import hashlib
        self.f, self.sha = f, hashlib.sha256()

    def read(self, size=-1):
        data = self.f.read(size)
        self.sha.update(data)
        return data

    def digest(self) -> str:
        while self.read(1 << 20):      # the tar's end padding counts too
            pass
        return "sha256:" + self.sha.hexdigest()


def decompressed(raw):
    """raw (a seekable binary file) as an uncompressed stream: gzip, xz and bzip2 are recognised."""
    head = raw.read(6)
    raw.seek(0)
    if head.startswith(b"\x1f\x8b"):
        import gzip
        return gzip.GzipFile(fileobj=raw)
    if head.startswith(b"\xfd7zXZ"):
        import lzma
        return lzma.LZMAFile(raw)
    if head.startswith(b"BZh"):
        import bz2
        return bz2.BZ2File(raw)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise LabError("zstd-compressed layers are not supported (Python has no zstd before 3.14): "
                       "export the image with gzip layers, e.g. skopeo copy --dest-compress-format gzip")
    return raw


def looks_like_an_archive(path: Path) -> bool:
    """True when the file starts like a tar (its header's "ustar" magic) or a compressed file."""
    with open(path, "rb") as f:
        head = f.read(512)
    return head[257:262] == b"ustar" or head.startswith((b"\x1f\x8b", b"\xfd7zXZ", b"BZh"))


def corrupt_errors() -> tuple:
    import lzma
    import tarfile
    import zlib
    return (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, UnicodeDecodeError, ValueError)


def add_layer(open_blob, diff_id: str | None, added: list[str]) -> str:
    """Unpack the layer tar that open_blob() opens into the store; return its digest.

    With diff_id (what the image's config says the digest is), a layer whose digest differs
    is refused, and a layer already stored is only checked, not unpacked again. New layers
    are appended to added, so that a failed import can take them back.
    """
    import shutil
    from lab import overlay
    work = layers_dir() / f".incoming-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        with open_blob() as raw:
            reader = HashingReader(decompressed(raw))
            stored = diff_id is not None and layer_path(diff_id).is_dir()
            skipped = 0 if stored else overlay.unpack_layer(reader, work)
            digest = reader.digest()
        if diff_id is not None and digest != diff_id:
            raise LabError(f"a layer's content does not match its digest: expected {diff_id}, got {digest}")
        if skipped:
            print(f"lab: left out {skipped} device node(s) of layer {digest[7:19]}: "
                  "a container gets its own /dev", file=sys.stderr)
        if not stored and store_layer(work, digest):
            added.append(digest)
        return digest
    except corrupt_errors() as e:
        raise LabError(f"the archive is truncated or corrupt ({e})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_config(config: dict) -> dict:
    """The part of an OCI/docker image config that says how to run it."""
    given = config.get("config") or {}
    run = {"Env": given.get("Env") or [f"PATH={DEFAULT_PATH}"], "WorkingDir": given.get("WorkingDir") or "/"}
    for key in ("Entrypoint", "Cmd"):
        if given.get(key):
            run[key] = given[key]
    return run


def import_image(source: str, ref: str) -> str:
    """`lab image import`: a rootfs tarball, a `docker save` archive, or an OCI image layout
    (a folder or its tar). Every digest is checked; on any error nothing stays behind."""
    import tarfile
    name, tag = parse_reference(ref)
    path = Path(source)
    if path.is_dir():
        if not (path / "oci-layout").is_file():
            raise LabError(f"{source} is a folder but not an OCI image layout (no oci-layout file in it)")
        def open_member(member):
            try:
                return open(path / member, "rb")
            except FileNotFoundError:
                raise LabError(f"the OCI layout {source} has no {member}") from None
        kind, archive = "oci", None
    elif not path.is_file():
        raise LabError(f"no such file or folder: {source}")
    else:
        try:
            archive = tarfile.open(path, "r:*")
            members = {m.name.removeprefix("./"): m for m in archive.getmembers()}
        except tarfile.ReadError:
            if looks_like_an_archive(path):
                raise LabError(f"the archive {source} is truncated or corrupt: it starts like a tar "
                               "archive, but lab cannot read it to the end") from None
            raise LabError(f"{source} is not a tar archive (plain, gzip, xz or bzip2): lab imports a "
                           "rootfs tarball, a `docker save` archive, or an OCI image layout") from None
        except corrupt_errors() as e:
            raise LabError(f"the archive {source} is truncated or corrupt ({e})") from None
        def open_member(member):
            found = members.get(member)
            if found is None or not found.isfile():
                raise LabError(f"the archive {source} has no file {member}")
            return archive.extractfile(found)
        kind = "oci" if "oci-layout" in members else "docker" if "manifest.json" in members else "rootfs"
    added: list[str] = []
    try:
        with locked():
            try:
                if kind == "rootfs":
                    digest = add_layer(lambda: open(path, "rb"), None, added)
                    return save_image({"Layers": [digest], "Config": {"Env": [f"PATH={DEFAULT_PATH}"],
                                                                     "WorkingDir": "/"}}, name, tag)
                read = read_oci if kind == "oci" else read_docker_save
                layers, config_digest, config = read(open_member, added)
                return save_image({"Layers": layers, "Config": run_config(config)}, name, tag, config_digest)
            except BaseException:
                import shutil
                for digest in added:                   # nothing half-imported
                    shutil.rmtree(layer_path(digest), ignore_errors=True)
                raise
    finally:
        if archive is not None:
            archive.close()


def read_json_member(open_member, member: str, digest: str | None = None):
    """A JSON file of the archive, its sha256 checked when digest is given."""
    import hashlib
    import json
    with open_member(member) as f:
        data = f.read()
    if digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise LabError(f"{member} does not match its digest {digest}")
    try:
        return json.loads(data)
    except ValueError as e:
        raise LabError(f"{member} is not valid JSON ({e})") from None


def blob_name(digest: str) -> str:
    return f"blobs/sha256/{digest_hex(digest)}"


def read_oci(open_member, added: list[str]) -> tuple[list[str], str, dict]:
    """An OCI image layout: index.json -> manifest -> config and layers, all by digest."""
    import hashlib
    import platform
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json"}
    document = read_json_member(open_member, "index.json")
    while document.get("manifests") is not None:           # an index: pick the manifest for this machine
        choices = document["manifests"]
        fitting = [m for m in choices if m.get("platform", {}).get("architecture", arch) == arch]
        if not fitting:
            raise LabError(f"the image has no manifest for {arch}")
        descriptor = fitting[0]
        document = read_json_member(open_member, blob_name(descriptor["digest"]), descriptor["digest"])
    config_digest = document["config"]["digest"]
    config = read_json_member(open_member, blob_name(config_digest), config_digest)
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(document.get("layers", [])):
        raise LabError(f"the manifest lists {len(document.get('layers', []))} layers, the config {len(diff_ids)}")

    def checked(layer):                   # the blob (maybe compressed) must match its digest first
        with open_member(blob_name(layer["digest"])) as f:
            sha = hashlib.sha256()
            while chunk := f.read(1 << 20):
                sha.update(chunk)
        if "sha256:" + sha.hexdigest() != layer["digest"]:
            raise LabError(f"the layer blob {layer['digest'][7:19]} does not match its digest")
        return lambda: open_member(blob_name(layer["digest"]))
    layers = [add_layer(checked(layer), diff_id, added) for layer, diff_id in zip(document["layers"], diff_ids)]
    return layers, config_digest, config


def read_docker_save(open_member, added: list[str]) -> tuple[list[str], str, dict]:
    """A `docker save` archive: manifest.json -> config (named by its digest) and layer tars."""
    manifest = read_json_member(open_member, "manifest.json")
    if not isinstance(manifest, list) or len(manifest) != 1:
        raise LabError("the archive holds more than one image (or none): save one image per archive")
    entry = manifest[0]
    named = re.search(r"([0-9a-f]{64})(\.json)?$", entry.get("Config", ""))
    if not named:
        raise LabError(f"the config {entry.get('Config')!r} is not named by its sha256")
    config_digest = f"sha256:{named.group(1)}"
    config = read_json_member(open_member, entry["Config"], config_digest)
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(entry.get("Layers", [])):
        raise LabError(f"manifest.json lists {len(entry.get('Layers', []))} layers, the config {len(diff_ids)}")
    layers = [add_layer(lambda member=member: open_member(member), diff_id, added)
              for member, diff_id in zip(entry["Layers"], diff_ids)]
    return layers, config_digest, config


def commit(container, ref: str) -> str:
    """`lab commit`: the container's upper folder becomes a new layer on top of its image."""
    from lab import overlay
    name, tag = parse_reference(ref)
    base = load(container.config["ImageId"])
    argv, entrypoint = container.config["Cmd"], container.config.get("Entrypoint", [])
    config = {"Env": [e for e in container.config["Env"] if not e.startswith("HOSTNAME=")],
              "WorkingDir": container.config["WorkingDir"], "Entrypoint": entrypoint, "Cmd": argv[len(entrypoint):]}
    added: list[str] = []
    with locked():
        tar_file = layers_dir() / f".commit-{os.getpid()}.tar"
        try:
            with open(tar_file, "wb") as out:
                overlay.pack_layer(container.path / "upper", out)
            digest = add_layer(lambda: open(tar_file, "rb"), None, added)
        finally:
            tar_file.unlink(missing_ok=True)
        return save_image({"Layers": base["Layers"] + [digest], "Config": config, "Parent": base["Id"]}, name, tag)
