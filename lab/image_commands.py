"""The image commands: `lab image import`, `lab commit`, `lab tag` and `lab rmi`.

`lab image import` reads a rootfs tarball, a `docker save` archive or an OCI image layout;
`lab commit` turns a container's upper folder into a new layer on top of its image; `lab rmi`
untags, and deletes an image and the layers no other image uses. Every digest is checked, and
on any error nothing stays behind (layers.py holds the store's lock and places the layers).
"""
import bz2
import gzip
import hashlib
import json
import lzma
import os
import re
import sys
import tarfile
import zlib
from pathlib import Path

from lab import Conflict, LabError, NotFound, folders, overlay, store, tarsplit
from lab.images import DEFAULT_PATH, default_home, find, layers_to_delete, list_images, load, tags
from lab.layers import created, delete_layers, locked, save_image, store_layer, with_history
from lab.names import digest_hex, host_arch, parse_reference
from lab.store import image_path, layer_path, layers_dir, record_image_event, tags_path, write_json


def remove_image(ref: str, force: bool = False) -> list[str]:
    """`lab rmi`: untag; when no tag is left, delete the image and the layers nobody else uses
    (no other image, no container). An image named by its id loses all its tags, but only with
    force when they name more than one repository (as docker's: `rmi ID` of busybox, also
    tagged myapp, is likely a mistake). An image a container uses keeps its last tag, but with
    force, as docker's: forced, it goes, and its containers keep their layers; a running
    container's image only loses the tag (by its id, not even that)."""
    with locked():
        image = find(ref)
        named = ":".join(parse_reference(ref))        # an id parses too: it is no tag, so all go
        by_name = named in image["RepoTags"]
        untag = [named] if by_name else image["RepoTags"]
        if len({tag.rsplit(":", 1)[0] for tag in untag}) > 1 and not force:
            raise Conflict(f"conflict: unable to delete {image['Id'][7:19]} (must be forced) - image is referenced "
                           f"in multiple repositories ({', '.join(untag)}): remove a tag, or use -f")
        last = len(untag) == len(image["RepoTags"])          # the last tag goes: the image goes
        if last:
            # A damaged image record stops rmi here, before anything changes: which layers it
            # uses, and rmi would delete as unused, is unknown.
            list_images()
            users = [c for c in store.list_containers() if c.config["ImageId"] == image["Id"]]
            running = [c.name for c in users if c.is_running()]
            if users and not force:
                raise Conflict(f"the image {ref} is used by the container {users[0].name}: remove the container "
                               f"first (lab rm {users[0].name}), or force it (rmi -f: the container keeps its files)")
            if running and not by_name:
                raise Conflict(f"conflict: unable to delete {image['Id'][7:19]} (cannot be forced) - image is being "
                               f"used by running container {running[0]}: stop it first")
            last = not running                                # (forced, by name: its tag goes, the image stays)
        write_json(tags_path(), {r: i for r, i in tags().items() if r not in untag})
        done = [f"Untagged: {r}" for r in untag]
        labels = image["Config"].get("Labels")
        for _ in untag:                                      # (docker's untag events name the id)
            record_image_event("untag", image["Id"], labels=labels)
        if last:
            image_path(image["Id"]).unlink()
            record_image_event("delete", image["Id"], labels=labels)
            done.append(f"Deleted: {image['Id']}")
            done += delete_layers(layers_to_delete())
    return done


def tag(source: str, ref: str) -> str:
    """`lab tag` (docker tag): one more name for an image; return the image's id."""
    name, tag = parse_reference(ref)
    with locked():
        image = find(source)
        write_json(tags_path(), {**tags(), f"{name}:{tag}": image["Id"]})
    record_image_event("tag", image["Id"], f"{name}:{tag}", image["Config"].get("Labels"))
    return image["Id"]


# Adding layers: from an archive (lab image import) or from a container (lab commit).

class HashingReader:
    """A file wrapper that hashes every byte read through it: the tar's digest, in the same pass."""

    def __init__(self, f):
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
        return gzip.GzipFile(fileobj=raw)
    if head.startswith(b"\xfd7zXZ"):
        return lzma.LZMAFile(raw)
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return zstd_opener()(raw)
    return raw


def zstd_opener():
    """What decompresses a zstd stream: Python 3.14's compression.zstd, else the zstandard
    package. The `lab` command starts Python without its site-packages (python -S: lab needs
    only the standard library); zstd before 3.14 is the one thing that needs them."""
    try:
        from compression import zstd
        return zstd.ZstdFile
    except ImportError:
        pass
    import site
    import sys
    if sys.flags.no_site:
        site.main()
    try:
        import zstandard
    except ImportError:
        raise LabError("zstd-compressed layers need Python 3.14's compression.zstd or the zstandard "
                       "package (pip install zstandard), or an image with gzip layers") from None
    return lambda raw: zstandard.ZstdDecompressor().stream_reader(raw)


def looks_like_an_archive(path: Path) -> bool:
    """True when the file starts like a tar (its header's "ustar" magic) or a compressed file."""
    with open(path, "rb") as f:
        head = f.read(512)
    return head[257:262] == b"ustar" or head.startswith((b"\x1f\x8b", b"\xfd7zXZ", b"BZh"))


def corrupt_errors() -> tuple:
    return (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, UnicodeDecodeError, ValueError)


def add_layer(open_blob, diff_id: str | None, added: list[str]) -> str:
    """Unpack the layer tar that open_blob() opens into the store; return its digest.

    With diff_id (what the image's config says the digest is), a layer whose digest differs
    is refused, and a layer already stored is only checked, not unpacked again. New layers
    are appended to added, so that a failed import can take them back.
    """
    work = layers_dir() / f".incoming-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        with open_blob() as raw:
            stream = decompressed(raw)
            stored = diff_id is not None and layer_path(diff_id).is_dir()
            recorder = None if stored else tarsplit.Recorder(stream)    # its tar's bytes, to push it as it was
            reader = HashingReader(recorder or stream)
            skipped = 0 if stored else overlay.unpack_layer(reader, work, recorder.note)
            digest = reader.digest()
        if diff_id is not None and digest != diff_id:
            raise LabError(f"a layer's content does not match its digest: expected {diff_id}, got {digest}")
        if skipped:
            print(f"lab: left out {skipped} device node(s) of layer {digest[7:19]}: "
                  "a container gets its own /dev", file=sys.stderr)
        if not stored and store_layer(work, digest):
            added.append(digest)
            recorder.save(digest)
        return digest
    except corrupt_errors() as e:
        raise LabError(f"the archive is truncated or corrupt ({e})") from None
    finally:
        folders.delete_quietly(work)


def run_config(config: dict) -> dict:
    """The part of an OCI/docker image config that says how to run it."""
    given = config.get("config") or {}
    run = {"Env": given.get("Env") or [f"PATH={DEFAULT_PATH}"], "WorkingDir": given.get("WorkingDir") or "/"}
    for key in ("Entrypoint", "Cmd", "User", "Labels", "ExposedPorts", "StopSignal", "Healthcheck"):
        if given.get(key):
            run[key] = given[key]
    return run


def pairs(args: str, instruction: str) -> list[tuple[str, str]]:
    """ENV and LABEL: KEY=VALUE ... (values may be quoted), or the old form KEY VALUE."""
    import shlex
    try:
        words = shlex.split(args)
    except ValueError:
        raise LabError(f"{instruction} {args}: a quote is not closed") from None
    if words and "=" not in words[0]:
        key, _, value = args.partition(" ")
        return [(key, value.strip())]
    if not words or not all("=" in w for w in words):
        raise LabError(f"{instruction} {args}: use {instruction} KEY=VALUE ...")
    return [tuple(w.split("=", 1)) for w in words]


def apply_changes(config: dict, changes) -> dict:
    """docker commit/import --change 'CMD ["sh"]': Dockerfile instructions that set how the
    image runs (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, STOPSIGNAL) on a copy of config."""
    config = dict(config)
    for change in changes:
        instruction, _, value = change.strip().partition(" ")
        instruction, value = instruction.upper(), value.strip()
        if instruction in ("CMD", "ENTRYPOINT"):
            try:
                argv = json.loads(value) if value.startswith("[") else ["/bin/sh", "-c", value]
            except ValueError:
                raise LabError(f"invalid --change {change!r}: {instruction} takes a JSON array or a shell command") from None
            config["Cmd" if instruction == "CMD" else "Entrypoint"] = argv
        elif instruction == "ENV" and value:                 # (a build's ENV and LABEL: pairs)
            for key, rest in pairs(value, "ENV"):
                config["Env"] = [e for e in config.get("Env", []) if not e.startswith(key + "=")] + [f"{key}={rest}"]
        elif instruction in ("WORKDIR", "USER", "STOPSIGNAL") and value:
            config[{"WORKDIR": "WorkingDir", "USER": "User", "STOPSIGNAL": "StopSignal"}[instruction]] = value
        elif instruction == "LABEL" and "=" in value:
            config["Labels"] = {**(config.get("Labels") or {}), **dict(pairs(value, "LABEL"))}
        elif instruction == "EXPOSE" and value:        # (what the image says it listens on: no port is published)
            config["ExposedPorts"] = {**(config.get("ExposedPorts") or {}),
                                      **{p if "/" in p else f"{p}/tcp": {} for p in value.split()}}
        else:
            raise LabError(f"lab does not support the change {change!r}: use CMD, ENTRYPOINT, ENV, WORKDIR, "
                           "USER, LABEL, EXPOSE or STOPSIGNAL")
    return config


def import_image(source: str, ref: str | None, changes=(), message: str = "", upload: bool = False,
                 which: int | None = None) -> str:
    """`lab image import`: a rootfs tarball, a `docker save` archive, or an OCI image layout
    (a folder or its tar). Every digest is checked; on any error nothing stays behind. upload:
    source is a request's body in a temporary file, which the errors call "the uploaded archive";
    which: the image of a `docker save` archive of several to take (docker load's)."""
    called = "the uploaded archive" if upload else source
    name, tag = parse_reference(ref) if ref else (None, "latest")
    apply_changes({}, changes)                         # (bad changes: before anything is read)
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
    elif not path.exists():
        raise LabError(f"no such file or folder: {source}")
    elif not path.is_file():
        raise LabError(f"{source} is neither a file nor a folder: lab imports a rootfs tarball, a `docker save` "
                       "archive, or an OCI image layout")
    else:
        try:
            archive = tarfile.open(path, "r:*")
            members = {m.name.removeprefix("./"): m for m in archive.getmembers()}
        except tarfile.ReadError:
            if looks_like_an_archive(path):
                raise LabError(f"{called} is truncated or corrupt: it starts like a tar "
                               "archive, but lab cannot read it to the end") from None
            raise LabError(f"{called} is not a tar archive (plain, gzip, xz or bzip2): lab imports a "
                           "rootfs tarball, a `docker save` archive, or an OCI image layout") from None
        except corrupt_errors() as e:
            raise LabError(f"{called} is truncated or corrupt ({e})") from None
        def open_member(member):
            found = members.get(member)
            if found is None or not found.isfile():
                raise LabError(f"{called} has no file {member}")
            return archive.extractfile(found)
        kind = "oci" if "oci-layout" in members else "docker" if "manifest.json" in members else "rootfs"
    added: list[str] = []
    try:
        with locked():
            try:
                if kind == "rootfs":
                    digest = add_layer(lambda: open(path, "rb"), None, added)
                    config = {"Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"}
                    image = with_history({"Layers": [digest], "Config": apply_changes(config, changes)}, None, "",
                                         message or f"Imported from {'-' if upload else source}")
                else:
                    if kind == "oci":
                        layers, raw, config = read_oci(open_member, added)
                    else:
                        layers, raw, config = read_docker_save(open_member, added, which)
                    image = {"Layers": layers, "Config": apply_changes(run_config(config), changes),
                             "Created": created(config)}          # (when it was made, not loaded)
                # (an archive's image keeps the id it had where it came from, unless --change changed it)
                image_id = save_image(image, name, tag, None if kind == "rootfs" or changes else raw)
            except BaseException:
                for digest in added:                   # nothing half-imported
                    folders.delete_quietly(layer_path(digest))
                raise
    finally:
        if archive is not None:
            archive.close()
    labels = image["Config"].get("Labels")
    if kind == "rootfs" and name is not None:          # (docker's import tags, then imports; its load only loads)
        record_image_event("tag", image_id, f"{name}:{tag}", labels)
    record_image_event("import" if kind == "rootfs" else "load", image_id, labels=labels)
    return image_id


def read_json_member(open_member, member: str, digest: str | None = None):
    """A JSON file of the archive, its sha256 checked when digest is given."""
    return parse_json(read_member(open_member, member, digest), member)


def read_member(open_member, member: str, digest: str | None = None) -> bytes:
    with open_member(member) as f:
        data = f.read()
    if digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise LabError(f"{member} does not match its digest {digest}")
    return data


def parse_json(data: bytes, member: str):
    try:
        return json.loads(data)
    except ValueError as e:
        raise LabError(f"{member} is not valid JSON ({e})") from None


def blob_name(digest: str) -> str:
    return f"blobs/sha256/{digest_hex(digest)}"


def read_oci(open_member, added: list[str]) -> tuple[list[str], bytes, dict]:
    """An OCI image layout: index.json -> manifest -> config and layers, all by digest."""
    arch = host_arch().split("/")[0]
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
    raw = read_member(open_member, blob_name(config_digest), config_digest)
    config = parse_json(raw, blob_name(config_digest))
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
    return layers, raw, config


def read_docker_save(open_member, added: list[str], which: int | None = None) -> tuple[list[str], bytes, dict]:
    """A `docker save` archive: manifest.json -> config (named by its digest) and layer tars.
    which: the archive's image number which (docker load takes each); None: its only one."""
    manifest = read_json_member(open_member, "manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise LabError("manifest.json lists no image")
    if which is None and len(manifest) > 1:
        raise LabError(f"the archive holds {len(manifest)} images: lab image import takes one (docker load takes all)")
    entry = manifest[which or 0]
    named = re.search(r"([0-9a-f]{64})(\.json)?$", entry.get("Config", ""))
    if not named:
        raise LabError(f"the config {entry.get('Config')!r} is not named by its sha256")
    config_digest = f"sha256:{named.group(1)}"
    raw = read_member(open_member, entry["Config"], config_digest)
    config = parse_json(raw, entry["Config"])
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(entry.get("Layers", [])):
        raise LabError(f"manifest.json lists {len(entry.get('Layers', []))} layers, the config {len(diff_ids)}")
    layers = [add_layer(lambda member=member: open_member(member), diff_id, added)
              for member, diff_id in zip(entry["Layers"], diff_ids)]
    return layers, raw, config


def commit(container, ref: str | None, changes=(), build_step: bool = False, author: str = "", comment: str = "",
           created_by: str | None = None) -> str:
    """`lab commit`: the container's upper folder becomes a new layer on top of its image
    (ref None: an untagged image, as `docker commit CONTAINER` makes). build_step: a RUN step
    of lab build, whose image keeps its base's config and is marked intermediate. The image's
    Env is the container's but for what lab adds to every container (HOSTNAME, and HOME when
    the image had none, its user's home): a user of the new image gets their own."""
    name, tag = parse_reference(ref) if ref else (None, "latest")
    try:
        base = load(container.whole("commit").config["ImageId"])
    except FileNotFoundError:
        raise NotFound(f"the image of {container.name} ({container.config['ImageId'][7:19]}) was removed (rmi -f): "
                       "a commit needs it, as docker's does") from None
    argv, entrypoint = container.config["Cmd"], container.config.get("Entrypoint", [])
    had_home = any(e.startswith("HOME=") for e in base["Config"].get("Env") or [])
    added_home = "HOME=" + default_home(base, container.config.get("User"))
    env = [e for e in container.config["Env"] if not e.startswith("HOSTNAME=") and (had_home or e != added_home)]
    config = {**base["Config"], "Env": env,
              "WorkingDir": container.config["WorkingDir"], "Entrypoint": entrypoint, "Cmd": argv[len(entrypoint):]}
    config = base["Config"] if build_step else apply_changes(config, changes)
    added: list[str] = []
    with locked():
        tar_file = layers_dir() / f".commit-{os.getpid()}.tar"
        try:
            def pack(out) -> None:
                overlay.pack_layer("/", out)
                out.flush()
            with open(tar_file, "wb") as out:    # (from a child chrooted into the upper folder: a
                folders.in_chroot(str(container.upper), pack, out)     # symlink the container swaps in leads back into it)
            digest = add_layer(lambda: open(tar_file, "rb"), None, added)
        finally:
            tar_file.unlink(missing_ok=True)
        image = {"Layers": base["Layers"] + [digest], "Config": config, "Parent": base["Id"],
                 **({"Author": author} if author else {}), **({"Comment": comment} if comment else {})}
        image = with_history(image, base, " ".join(argv) if created_by is None else created_by, comment)
        image_id = save_image({**image, "Intermediate": True} if build_step else image, name, tag)
    if not build_step:                                 # (as docker's: a build's steps make no events)
        if name is not None:
            record_image_event("tag", image_id, f"{name}:{tag}", config.get("Labels"))
        store.record_event(container, "commit", comment=comment, imageID=image_id,
                           imageRef=f"{name}:{tag}" if name is not None else "")
    return image_id
