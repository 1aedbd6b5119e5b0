"""`lab push`: an image from the store to a registry. Chapter 10.

The pull's walk backwards: every layer becomes a blob (its folder packed as a tar, gzipped),
then the config that lists the tars' digests, then the manifest that lists the blobs. The
registry takes a blob in two requests: POST .../blobs/uploads/ opens an upload and says where
(Location), PUT there with ?digest= sends the bytes and closes it; the registry checks the
digest itself. A blob the registry already has (HEAD answers 200) is not sent again.

The manifest goes last, under the tag: until then the registry has blobs nobody names, and a
failed push changes no tag. Packing is reproducible (sorted names, the layer's own times, a
gzip without a time in it), so pushing the same image twice sends the same digests.
"""
import gzip
import hashlib
import json
import os
import sys
import tempfile
import urllib.parse
from pathlib import Path

from lab import LabError, overlay, views
from lab.images import find
from lab.names import digest_hex
from lab.pull import Progress, host_platform
from lab.registry import Reference, Registry
from lab.store import layer_path, layers_dir

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push(text: str, insecure: bool = False, out=sys.stdout, progress=None,
         login: tuple[str, str] | None = None) -> str:
    """Push the image text names (NAME[:TAG]); return the manifest's digest."""
    ref = Reference(text)
    if ref.digest:
        raise LabError(f"push {text}: push a tag, not a digest (lab tag IMAGE NAME:TAG first)")
    image = find(f"{ref.name}:{ref.tag}")
    registry = Registry(ref.registry, insecure)
    registry.login = login or registry.login
    scope = f"repository:{ref.repository}:pull,push"
    progress = progress or Progress(out)
    progress.line(f"The push refers to repository [{ref.registry}/{ref.repository}]")
    layers_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=layers_dir(), prefix=f".incoming-{os.getpid()}-push-") as work:
        packed = []
        for n, diff_id in enumerate(image["Layers"]):
            progress.update(digest_hex(diff_id)[:12], "Preparing")
            packed.append(pack(layer_path(diff_id), Path(work, f"{n}.tar.gz")))
        config = json.dumps({
            "architecture": image.get("Architecture") or host_platform().split("/")[1], "os": "linux",
            "created": views.iso(image["Created"]), "config": image["Config"],
            "rootfs": {"type": "layers", "diff_ids": [diff for diff, _, _ in packed]}}).encode()
        Path(work, "config.json").write_bytes(config)
        config_blob = {"mediaType": CONFIG, "digest": sha256(config), "size": len(config)}
        for diff_id, (_, blob, path) in zip(image["Layers"], packed):
            upload(registry, ref, blob, path, scope, progress, digest_hex(diff_id)[:12])
        upload(registry, ref, config_blob, Path(work, "config.json"), scope, None, "")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": config_blob,
                           "layers": [blob for _, blob, _ in packed]}).encode()
    answer = registry.request("PUT", f"/v2/{ref.repository}/manifests/{ref.tag}",
                              {"Content-Type": MANIFEST, "Content-Length": str(len(manifest))}, manifest,
                              scope=scope, ok=(201,))
    answer.read()
    digest = sha256(manifest)
    if answer.getheader("Docker-Content-Digest", digest) != digest:
        raise LabError(f"the registry {ref.registry} stored the manifest as {answer.getheader('Docker-Content-Digest')}, "
                       f"not as {digest}: it changed it")
    progress.line(f"{ref.tag}: digest: {digest} size: {len(manifest)}")
    return digest


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Hashing:
    """A binary file to write to that hashes and counts what goes through it."""

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def pack(folder: Path, path: Path) -> tuple[str, dict, Path]:
    """The layer at folder as a gzipped tar at path: (the tar's digest, the blob's descriptor, path)."""
    with open(path, "wb") as raw:
        blob = Hashing(raw)
        with gzip.GzipFile(fileobj=blob, mode="wb", mtime=0) as compressed:
            tar = Hashing(compressed)
            overlay.pack_layer(folder, tar)
    diff_id = "sha256:" + tar.sha.hexdigest()
    return diff_id, {"mediaType": LAYER, "digest": "sha256:" + blob.sha.hexdigest(), "size": blob.size}, path


def upload(registry: Registry, ref: Reference, blob: dict, path: Path, scope: str, progress, short: str) -> None:
    """One blob: nothing when the registry has it; else POST an upload, PUT the bytes there."""
    blobs = f"/v2/{ref.repository}/blobs/"
    head = registry.request("HEAD", blobs + blob["digest"], scope=scope, ok=(200, 404))
    head.read()
    if head.status == 200:
        if progress:
            progress.update(short, "Layer already exists")
        return
    if progress:
        progress.update(short, "Pushing", 0, blob["size"])
    started = registry.request("POST", blobs + "uploads/", {"Content-Length": "0"}, b"", scope=scope, ok=(202,))
    started.read()
    location = started.getheader("Location")
    if not location:
        raise LabError(f"the registry {ref.registry} opened an upload but did not say where (no Location)")
    url = urllib.parse.urljoin(f"{registry.scheme}://{registry.api}{blobs}", location)
    url += ("&" if urllib.parse.urlsplit(url).query else "?") + urllib.parse.urlencode({"digest": blob["digest"]})
    with open(path, "rb") as f:
        done = registry.request("PUT", url, {"Content-Type": "application/octet-stream",
                                             "Content-Length": str(blob["size"])}, f, scope=scope, ok=(201,))
        done.read()
    if progress:
        progress.update(short, "Pushed")
