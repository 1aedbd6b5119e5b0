"""`lab push`: an image from the store to a registry. Chapter 10.

The pull's walk backwards: every layer becomes a blob (its folder packed as a tar, gzipped),
then the config that lists the tars' digests, then the manifest that lists the blobs. A layer's
tar is the one it came as, byte for byte (tarsplit.py), so the image pushed is the image pulled. The
registry takes a blob in two requests: POST .../blobs/uploads/ opens an upload and says where
(Location), PUT there with ?digest= sends the bytes and closes it; the registry checks the
digest itself. A blob the registry already has (HEAD answers 200) is not sent again.

The manifest goes last, under the tag: until then the registry has blobs nobody names, and a
failed push changes no tag. Packing is reproducible (the same tar, a gzip without a time in
it), so pushing the same image twice sends the same digests.
"""
import hashlib
import json
import os
import sys
import tempfile
import urllib.parse
from pathlib import Path

from lab import LabError
from lab.images import find
from lab.names import digest_hex
from lab.layers import sent_config
from lab.pull import Progress
from lab.registry import Reference, Registry
from lab.store import layers_dir, record_image_event
from lab.tarsplit import write_tar

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
            path = Path(work, f"{n}.tar.gz")
            tar_digest, blob_digest, size = write_tar(diff_id, path, compress=True)
            packed.append((tar_digest, {"mediaType": LAYER, "digest": blob_digest, "size": size}, path))
        config = sent_config(image, [diff for diff, _, _ in packed])
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
    record_image_event("push", f"{ref.name}:{ref.tag}", labels=image["Config"].get("Labels"))
    return digest


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


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
