"""Image archives made on the spot, so that the import tests need no network.

A layer is a tar; `docker save` wraps layers in a tar with manifest.json and a config named
by its sha256; an OCI image layout is a folder (or a tar of it) of blobs named by their
sha256, found from index.json. These writers follow docker/docker's image/spec and the OCI
image-spec (image-layout.md, manifest.md, config.md), as far as `lab image import` reads them.
"""
import gzip
import hashlib
import io
import json
import platform
import tarfile
from pathlib import Path

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def gz(data: bytes) -> bytes:
    """data gzip-compressed as the tests' images are: level 1, six times faster than the
    default 9 on busybox's layer (40 ms against 241), and nothing that lab reads changes."""
    return gzip.compress(data, compresslevel=1, mtime=0)


def tar(entries) -> bytes:
    """A tar of entries: (name, content) where content is bytes (a file), None (a folder),
    ("symlink", target) or ("hardlink", target); a third item, a dict such as {"mode": 0o777},
    sets the member's mode, uid, gid or mtime."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content, *meta in entries:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif isinstance(content, tuple):
                info.type = tarfile.SYMTYPE if content[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = content[1]
            else:
                info.size = len(content)
            for key, value in (meta[0] if meta else {}).items():
                setattr(info, key, value)
            archive.addfile(info, io.BytesIO(content) if isinstance(content, bytes) else None)
    return out.getvalue()


def climbing_to(target: Path) -> str:
    """A member name that climbs to / from wherever it is unpacked (.. at / stays there), then goes
    down to target: what an unpacker must refuse."""
    return "../" * 40 + str(target).lstrip("/")


# What a hostile member carries, to be set on whatever its name leads to: the test's host files
# must keep their own mode, owner and time.
FOREIGN = {"mode": 0o777, "uid": 4242, "gid": 4242, "mtime": 86400}


def through_symlink_layers(host_file: Path, host_folder: Path) -> dict[str, bytes]:
    """Layers that try to change host_file or host_folder through a symlink of their own."""
    return {
        "a hard link to a symlink to a host file":       # chmod of the link would follow the symlink
            tar([("passwd", ("symlink", str(host_file))), ("shadow", ("hardlink", "passwd"), FOREIGN)]),
        "a symlink to a host file, then a file of that name":
            tar([("passwd", ("symlink", str(host_file))), ("passwd", b"replaced", FOREIGN)]),
        "a symlink to a host folder, then a folder of that name":
            tar([("etc", ("symlink", str(host_folder))), ("etc", None, FOREIGN)]),
        "a folder, then a symlink of that name to a host folder":   # the folder's time is set last
            tar([("etc", None, FOREIGN), ("etc", ("symlink", str(host_folder)))]),
        "the layer's own folder as a symlink to a host folder":      # "." then "passwd" lands there
            tar([(".", ("symlink", str(host_folder))), ("passwd", b"planted", FOREIGN)]),
    }


def folder_tar(folder: Path) -> bytes:
    """A tar of a folder's content (e.g. the busybox layer): what a rootfs tarball is."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in sorted(folder.iterdir()):
            archive.add(entry, arcname=entry.name)
    return out.getvalue()


def image_config(layers: list[bytes], cmd: list[str]) -> bytes:
    return json.dumps({"architecture": ARCH, "os": "linux",
                       "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": cmd},
                       "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]}}).encode()


def docker_save(layers: list[bytes], cmd: list[str], config: bytes | None = None) -> bytes:
    """A `docker save` archive (the classic layout: <id>/layer.tar, <config sha>.json, manifest.json)."""
    config = config or image_config(layers, cmd)
    names = [f"{hashlib.sha256(layer).hexdigest()}/layer.tar" for layer in layers]
    manifest = [{"Config": f"{sha256(config)[7:]}.json", "RepoTags": ["example:latest"], "Layers": names}]
    return tar([(f"{sha256(config)[7:]}.json", config), *zip(names, layers),
                ("manifest.json", json.dumps(manifest).encode())])


def oci_layout(folder: Path, layers: list[bytes], cmd: list[str]) -> Path:
    """An OCI image layout in folder, with gzip-compressed layers (what `skopeo copy ... oci:` writes)."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media_type: str) -> dict:
        (blobs / sha256(data)[7:]).write_bytes(data)
        return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}

    compressed = [gz(layer) for layer in layers]
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": blob(image_config(layers, cmd), "application/vnd.oci.image.config.v1+json"),
                "layers": [blob(c, "application/vnd.oci.image.layer.v1.tar+gzip") for c in compressed]}
    index = {"schemaVersion": 2, "manifests": [
        {**blob(json.dumps(manifest).encode(), manifest["mediaType"]),
         "platform": {"architecture": ARCH, "os": "linux"}}]}
    (folder / "index.json").write_text(json.dumps(index))
    (folder / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return folder


def oci_tar(folder: Path) -> bytes:
    return folder_tar(folder)


if __name__ == "__main__":
    # python3 chapters/04_overlay/archives.py docker-save|oci ROOTFS_FOLDER OUT: an image of
    # two layers, the folder's files and a hello.txt, as `docker save` or `skopeo copy` would.
    # python3 chapters/04_overlay/archives.py pack UPPER: the layer tar that lab's pack_layer (your
    # lab/overlay.py, or the reference's with LAB_IMPL=solutions) makes of an upper folder, on stdout.
    import sys
    if sys.argv[1:2] == ["pack"] and len(sys.argv) == 3:
        import lab_impl
        lab_impl.activate()
        from lab import overlay
        overlay.pack_layer(sys.argv[2], sys.stdout.buffer)
        sys.exit(0)
    if len(sys.argv) != 4 or sys.argv[1] not in ("docker-save", "oci"):
        sys.exit("usage: archives.py docker-save|oci ROOTFS_FOLDER OUT, or archives.py pack UPPER_FOLDER")
    kind, rootfs, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    image = [folder_tar(rootfs), tar([("hello.txt", b"hello from the second layer\n")])]
    if kind == "docker-save":
        out.write_bytes(docker_save(image, ["sh"]))
    else:
        oci_layout(out, image, ["sh"])
