"""`lab pull`: an image from a registry into the store, every byte checked. Chapter 10.

The walk, from a name to a rootfs:

    tag  --GET manifest-->  an index?  pick this machine's platform, GET that manifest
         manifest: the config's digest, and each layer's digest and size (compressed)
    config   --GET blob-->  how to run it, and each layer's diff_id (sha256 of the plain tar)
    layers   --GET blob-->  downloaded side by side, checked against the manifest's digest,
                            then unpacked in order, checked against the config's diff_id

A layer whose diff_id the store already has is not downloaded at all ("Already exists"): the
layers are shared between images, as chapter 04 stored them. The image's id is its config's
digest, as docker's is. Nothing is trusted: a blob longer than the manifest says stops at that
size, a wrong digest stops the pull, and on any error the store is as it was.
"""
import concurrent.futures
import hashlib
import json
import os
import sys
import threading

from lab import LabError
from lab.image_commands import add_layer, run_config, zstd_opener
from lab.images import load
from lab.layers import created, locked, save_image
from lab.names import digest_hex, host_arch
from lab.registry import MANIFEST_TYPES, MAX_DOCUMENT, Reference, Registry, read_limited
from lab.folders import delete_quietly
from lab.store import image_path, layer_path, layers_dir, record_image_event, remove_stale_temporaries, tags

INDEXES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
DOWNLOADS = 3          # layers downloaded at once, as dockerd's max-concurrent-downloads


def host_platform() -> str:
    return f"linux/{host_arch()}"


def pull(text: str, wanted_platform: str | None = None, insecure: bool = False, out=sys.stdout,
         progress=None, login: tuple[str, str] | None = None) -> str:
    """Pull the image text names; return its id. Progress goes to out (a bar per layer on a
    terminal), or to progress (the engine's, in JSON); login: a user and password of the caller's."""
    ref = Reference(text)
    registry = Registry(ref.registry, insecure)
    registry.login = login or registry.login
    scope = f"repository:{ref.repository}:pull"
    progress = progress or Progress(out)
    manifest, digest, config = walk(registry, ref, wanted_platform, scope, progress)
    config_digest = manifest["config"]["digest"]
    up_to_date = image_path(config_digest).is_file() and tags().get(f"{ref.name}:{ref.tag}") == config_digest
    files = download_layers(registry, ref, manifest["layers"], config["rootfs"]["diff_ids"], scope, progress)
    try:
        store_image(ref, digest, manifest, config, files, progress)
    finally:
        for path in files.values():
            os.unlink(path)
    record_image_event("pull", f"{ref.name}:{ref.tag}" if ref.tag else f"{ref.name}@{ref.digest}",
                       labels=(config.get("config") or {}).get("Labels"))
    progress.line(f"Digest: {digest}")
    progress.line(f"Status: {'Image is up to date' if up_to_date else 'Downloaded newer image'} for "
                  f"{ref.name}{':' + ref.tag if ref.tag else '@' + digest}")
    return config_digest


def walk(registry: Registry, ref: Reference, wanted_platform: str | None, scope: str, progress) -> tuple[dict, str, dict]:
    """From a reference to this platform's manifest and its config, each checked on the way.

    Returns (manifest, the digest of what the reference points at, config). (The lines after
    your part use those three names: they print "Pulling from", check the platform and the
    layers, and return them.)"""
    # HINT: three GETs: the manifest the reference names (ref.digest or ref.tag); if that is an
    # HINT: index (one manifest per platform), the manifest of this machine's platform; its config.
    # HINT 2: fetch_manifest(registry, ref, WHICH, scope) gives (manifest, its digest), checked;
    # HINT 2: is_index(manifest) says whether it is a list; choose_platform(index, "linux/amd64",
    # HINT 2: ref) gives the digest of the one to fetch next (wanted_platform, else host_platform()).
    # HINT 2: fetch_config(registry, ref, manifest, scope) gives the config, checked.
    # HINT 3: return the digest of the first manifest: the one the tag points at (docker's "Digest:").
    # BEGIN SOLUTION 10
    manifest, digest = fetch_manifest(registry, ref, ref.digest or ref.tag, scope)
    if is_index(manifest):
        chosen = choose_platform(manifest, wanted_platform or host_platform(), ref)
        manifest, _ = fetch_manifest(registry, ref, chosen, scope)
    config = fetch_config(registry, ref, manifest, scope)
    # END SOLUTION
    progress.line(f"{ref.tag or ref.digest}: Pulling from {ref.repository}")
    if wanted_platform and "/".join(filter(None, (config.get("os"), config.get("architecture")))) != \
            "/".join(wanted_platform.split("/")[:2]):
        raise LabError(f"{ref} is for {config.get('os')}/{config.get('architecture')}, not {wanted_platform}")
    diff_ids = config.setdefault("rootfs", {}).setdefault("diff_ids", [])
    layers = manifest.setdefault("layers", [])
    if len(diff_ids) != len(layers):
        raise LabError(f"{ref}: the manifest lists {len(layers)} layers, its config {len(diff_ids)}")
    for diff_id in diff_ids:                      # (each names a folder of the store: checked before any use)
        digest_hex(diff_id)
    if any("zstd" in layer.get("mediaType", "") for layer in layers):
        zstd_opener()                 # (before any download: one line if this Python cannot read them)
    return manifest, digest, config


def download_layers(registry: Registry, ref: Reference, layers: list[dict], diff_ids: list[str], scope: str,
                    progress) -> dict[str, str]:
    """The layers the store lacks, downloaded side by side: {blob digest: its file}. On any
    failure, every file downloaded is deleted and the first error raised."""
    layers_dir().mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(layers_dir())
    jobs: dict[str, concurrent.futures.Future] = {}
    with concurrent.futures.ThreadPoolExecutor(DOWNLOADS) as pool:
        for layer, diff_id in zip(layers, diff_ids):
            short = digest_hex(layer["digest"])[:12]
            if layer_path(diff_id).is_dir():
                progress.update(short, "Already exists")
            elif layer["digest"] not in jobs:         # (an image may list the same layer twice)
                progress.update(short, "Pulling fs layer")
                jobs[layer["digest"]] = pool.submit(download, registry, ref, layer, scope, progress)
    files = {blob: job.result() for blob, job in jobs.items() if not job.exception()}
    failed = [job.exception() for job in jobs.values() if job.exception()]
    if failed:
        for path in files.values():
            os.unlink(path)
        raise failed[0]
    return files


def store_image(ref: Reference, digest: str, manifest: dict, config: dict, files: dict[str, str],
                progress) -> None:
    """Under the store's lock: unpack the downloaded layers, in order, each checked against its
    diff_id; then the image (its id: the config's digest) and its tag. On any error, the new
    layers go again."""
    config_digest, diff_ids = manifest["config"]["digest"], config["rootfs"]["diff_ids"]
    added: list[str] = []
    with locked():
        try:
            for layer, diff_id in zip(manifest["layers"], diff_ids):
                if layer["digest"] in files:
                    short = digest_hex(layer["digest"])[:12]
                    progress.update(short, "Extracting")
                    add_layer(lambda path=files[layer["digest"]]: open(path, "rb"), diff_id, added)
                    progress.update(short, "Pull complete")
            image = {"Layers": diff_ids, "Config": run_config(config), "Created": created(config),
                     "RepoDigests": [f"{ref.name}@{digest}"], "Os": config.get("os", "linux"),
                     "Architecture": config.get("architecture", "")}
            if image_path(config_digest).is_file():          # keep the digests it was pulled by before
                known = load(config_digest).get("RepoDigests", [])
                image["RepoDigests"] = sorted(set(known + image["RepoDigests"]))
            save_image(image, ref.name if ref.tag else None, ref.tag or "latest", getattr(config, "raw", None))
        except BaseException:
            for diff_id in added:
                delete_quietly(layer_path(diff_id))
            raise


def fetch_manifest(registry: Registry, ref: Reference, which: str, scope: str) -> tuple[dict, str]:
    """The manifest (or index) called which (a tag or a digest), and its digest, checked."""
    response = registry.request("GET", f"/v2/{ref.repository}/manifests/{which}",
                                {"Accept": ", ".join(MANIFEST_TYPES)}, scope=scope)
    body = read_limited(response, MAX_DOCUMENT, f"the manifest of {ref}")
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if which.startswith("sha256:") and digest != which:
        raise LabError(f"the manifest {which[:19]} of {ref} does not match its digest (got {digest[:19]}): "
                       "the registry sent something else than was asked for")
    try:
        manifest = json.loads(body)
    except ValueError:
        raise LabError(f"the manifest of {ref} is not JSON") from None
    if not isinstance(manifest, dict):
        raise LabError(f"the manifest of {ref} is not a JSON object")
    return manifest, digest


def choose_platform(index: dict, wanted: str, ref: Reference) -> str:
    """The digest of the index's manifest for wanted ("linux/amd64", "linux/arm/v7")."""
    os_name, _, arch = wanted.partition("/")
    arch, _, variant = arch.partition("/")
    offered = []
    for m in index.get("manifests", []):
        p = m.get("platform") or {}
        offered.append("/".join(filter(None, (p.get("os"), p.get("architecture"), p.get("variant")))))
        if p.get("os") == os_name and p.get("architecture") == arch and (not variant or p.get("variant") == variant):
            return m["digest"]
    raise LabError(f"{ref} has no image for {wanted}; it has: {', '.join(o for o in offered if o) or 'none'}"
                   " (choose one with --platform)")


def fetch_blob(registry: Registry, ref: Reference, descriptor: dict, scope: str) -> bytes:
    """A small blob (a config), read whole and checked against its digest and size."""
    if descriptor.get("size", 0) > MAX_DOCUMENT:
        raise LabError(f"{ref}: its config is said to be {descriptor['size']} bytes: too large")
    response = registry.request("GET", f"/v2/{ref.repository}/blobs/{descriptor['digest']}", scope=scope)
    data = read_limited(response, MAX_DOCUMENT, f"the config of {ref}")
    if "sha256:" + hashlib.sha256(data).hexdigest() != descriptor["digest"]:
        raise LabError(f"the config of {ref} does not match its digest {descriptor['digest'][:19]}")
    return data


def is_index(manifest: dict) -> bool:
    """Is this an index (a manifest list), whose entries are one manifest per platform?"""
    return manifest.get("mediaType") in INDEXES or "manifests" in manifest


def fetch_config(registry: Registry, ref: Reference, manifest: dict, scope: str) -> dict:
    """The config of an image's manifest (schema 2 or OCI), checked against its digest."""
    if manifest.get("schemaVersion") != 2 or not isinstance(manifest.get("config"), dict):
        raise LabError(f"{ref} has an old (schema 1) or unknown manifest: lab pulls schema 2 and OCI images")
    data = fetch_blob(registry, ref, manifest["config"], scope)
    try:
        config = Config(json.loads(data))
    except (ValueError, TypeError):
        raise LabError(f"the config of {ref} is not a JSON object") from None
    config.raw = data
    return config


class Config(dict):
    """An image's config, and .raw: its bytes as pulled (the image's id is their digest; push sends them again)."""
    raw = None


def download(registry: Registry, ref: Reference, layer: dict, scope: str, progress) -> str:
    """Stream one layer blob to a hidden file in layers/, hashing as it comes; return the file's path.
    It must be exactly as long as the manifest says and match its digest, or it is deleted."""
    digest, size = layer["digest"], layer.get("size")
    short = digest_hex(digest)[:12]
    if not isinstance(size, int) or size < 0:
        raise LabError(f"{ref}: layer {short} has no size in its manifest")
    path = layers_dir() / f".{short}-download.{os.getpid()}.tmp"
    response = registry.request("GET", f"/v2/{ref.repository}/blobs/{digest}", scope=scope)
    try:
        with open(path, "wb") as f:
            copy_checked(response, f, digest, size, f"{ref}: layer {short}",
                         lambda done: progress.update(short, "Downloading", done, size))
        progress.update(short, "Download complete")
        return str(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        response.close()


def copy_checked(response, f, digest: str, size: int, what: str, progressed) -> None:
    """Copy a blob from response to the file f, checked as it streams.

    Call progressed(bytes so far) after each chunk. The blob must be exactly size bytes whose
    sha256 is digest. Read at most size + 1 bytes: the one more is how a blob longer than its
    manifest says shows, and an endless one must not fill the disk. Refuse with a LabError that
    says what (which blob): "WHAT is longer than the SIZE bytes its manifest says", "WHAT ended
    after N of its SIZE bytes", or "WHAT does not match its digest"."""
    # HINT: a registry can lie or break: hash every chunk as it goes by (hashlib.sha256().update),
    # HINT: count the bytes, and raise LabError (what says which blob) when the total is wrong.
    # HINT 2: read in chunks of at most 1 MiB, and never more than size + 1 bytes in all: one byte
    # HINT 2: too many is enough to know the blob is longer than the manifest says (an endless
    # HINT 2: answer must not fill the disk). After the loop: too short? Then compare
    # HINT 2: "sha256:" + sha.hexdigest() with digest.
    # BEGIN SOLUTION 10
    sha, done = hashlib.sha256(), 0
    while chunk := response.read(min(1 << 20, size + 1 - done)):
        done += len(chunk)
        if done > size:
            raise LabError(f"{what} is longer than the {size} bytes its manifest says")
        sha.update(chunk)
        f.write(chunk)
        progressed(done)
    if done != size:
        raise LabError(f"{what} ended after {done} of its {size} bytes")
    if "sha256:" + sha.hexdigest() != digest:
        raise LabError(f"{what} does not match its digest: the download is corrupt "
                       "or the registry is lying (nothing was stored)")
    # END SOLUTION


class Progress:
    """docker pull's display: one line per layer, redrawn in place on a terminal (a bar and the
    bytes); elsewhere, and on a terminal that cannot move its cursor (TERM=dumb), one plain
    line each time a layer changes state (no byte counts)."""

    def __init__(self, out):
        self.out, self.tty = out, out.isatty() and os.environ.get("TERM", "dumb") != "dumb"
        self.rows: dict[str, str] = {}
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        with self.lock:
            print(text, file=self.out, flush=True)

    def update(self, short: str, state: str, done: int = 0, total: int = 0) -> None:
        with self.lock:
            if not self.tty:
                if state != "Downloading" and self.rows.get(short) != state:
                    print(f"{short}: {state}", file=self.out, flush=True)
                self.rows[short] = state
                return
            if total:
                bar = "=" * (done * 50 // total) + (">" if done < total else "")
                state = f"{state} [{bar:<50.50}] {size(done)}/{size(total)}"
            if short not in self.rows:                 # a new row, at the bottom
                self.rows[short] = state
                print(f"{short}: {state}", file=self.out, flush=True)
                return
            up = len(self.rows) - list(self.rows).index(short)     # rewrite that row in place
            self.rows[short] = state
            print(f"\x1b[{up}A\r\x1b[2K{short}: {state}\x1b[{up}B\r", end="", file=self.out, flush=True)


def size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000
    return str(n)
