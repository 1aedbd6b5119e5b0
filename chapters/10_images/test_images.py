"""Chapter 10: images from registries.   Check your work: pytest chapters/10_images

The registry is the one Docker's registries run (the distribution's server, Debian's
docker-registry), on 127.0.0.1 with a login, filled by another client (skopeo) with images
written by the tests: a three-layer image whose top layer deletes a file of the first, a
two-platform index, a base image that shares its layer with the others. registries.py also
holds a registry that lies. Nothing here reaches the internet.
"""
import hashlib
import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from registries import (BUSYBOX, OTHER_ARCH, PASSWORD, USER, Hostile, archives, lab_root, logged_in,  # noqa: E402,F401
                        registry, storage, store_entries)


def test_pull_of_a_multi_layer_image_then_run_it(logged_in, lab):
    ref = f"{logged_in.host}/course/app:1"
    result = lab("pull", ref, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "1: Pulling from course/app"
    assert result.stdout.count("Pull complete") == 3, result.stdout
    assert result.stdout.splitlines()[-1] == ref
    run = lab("run", "--rm", ref)                          # the image's own Cmd: cat /app/hello.txt
    assert (run.returncode, run.stdout) == (0, "hello from layer 2\n"), run.stderr
    gone = lab("run", "--rm", ref, "cat", "/etc/os-release")     # layer 3's whiteout hides layer 1's file
    assert gone.returncode == 1 and "No such file" in gone.stderr
    inspected = json.loads(lab("image", "inspect", ref).stdout)[0]
    assert inspected["Architecture"] == archives.ARCH
    assert len(inspected["RootFS"]["Layers"] if "RootFS" in inspected else inspected["Layers"]) == 3


def test_layers_already_stored_are_not_downloaded_again(logged_in, lab):
    first = lab("pull", f"{logged_in.host}/course/base:1", timeout=120)
    assert first.returncode == 0, first.stderr
    second = lab("pull", f"{logged_in.host}/course/app:1", timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("Already exists") == 1, second.stdout     # BASE, shared
    assert second.stdout.count("Pull complete") == 2, second.stdout
    again = lab("pull", f"{logged_in.host}/course/app:1", timeout=120)
    assert "Status: Image is up to date" in again.stdout and "Pull complete" not in again.stdout


def test_a_multi_platform_index_gives_this_machine_its_image_and_platform_chooses_another(logged_in, lab):
    ref = f"{logged_in.host}/course/app:1"
    result = lab("pull", "--platform", f"linux/{OTHER_ARCH}", ref, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(lab("image", "inspect", ref).stdout)[0]["Architecture"] == OTHER_ARCH
    missing = lab("pull", "--platform", "linux/s390x", ref)
    assert missing.returncode == 125
    assert f"has no image for linux/s390x; it has: linux/{OTHER_ARCH}, linux/{archives.ARCH}" in missing.stderr


def test_pull_by_digest_checks_the_manifest_and_runs_by_that_digest(logged_in, lab):
    ref = f"{logged_in.host}/course/app:1"
    pulled = lab("pull", ref, timeout=120)
    digest = next(line.split()[1] for line in pulled.stdout.splitlines() if line.startswith("Digest: "))
    by_digest = f"{logged_in.host}/course/app@{digest}"
    again = lab("pull", by_digest, timeout=120)
    assert again.returncode == 0, again.stderr
    run = lab("run", "--rm", by_digest)
    assert (run.returncode, run.stdout) == (0, "hello from layer 2\n"), run.stderr
    # "Digest:" is what the tag points at, the index of every platform: not this machine's manifest
    other = lab("pull", "--platform", f"linux/{OTHER_ARCH}", by_digest, timeout=120)
    assert other.returncode == 0, f"the digest pull printed is not the tag's (its index): {other.stderr}"
    wrong = lab("pull", f"{logged_in.host}/course/app@sha256:{'0' * 64}")
    assert wrong.returncode == 125
    pinned = lab("pull", f"{logged_in.host}/course/app:1@sha256:{'0' * 64}")     # the digest wins over the tag
    assert pinned.returncode == 125, "a tag and a digest: the digest names the manifest, the tag is only a name"


def test_a_docker_manifest_list_gives_this_machine_its_image(lab, monkeypatch, tmp_path):
    """Docker's own index, the "manifest list" (application/vnd.docker.distribution.manifest.list.v2+json),
    which many images on Docker Hub still are: walk() takes this machine's manifest from it as
    from an OCI index (another machine's comes first)."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    layer = archives.tar([("bin", None), ("bin/busybox", BUSYBOX, {"mode": 0o755}), ("bin/cat", ("symlink", "busybox")),
                          ("hello", b"from a docker manifest list\n")])
    listed = Hostile("none", layer, docker_list=True)
    try:
        assert lab("login", "-u", USER, "--password-stdin", listed.host, input=PASSWORD).returncode == 0
        pulled = lab("pull", f"{listed.host}/listed:1", timeout=60)
        assert pulled.returncode == 0, ("a Docker manifest list is an index too (is_index), and its entry for this "
                                        f"machine's platform is the one to fetch (choose_platform): {pulled.stderr}")
        run = lab("run", "--rm", "--network", "none", f"{listed.host}/listed:1", "cat", "/hello")
        assert run.stdout == "from a docker manifest list\n", run.stderr
    finally:
        listed.stop()


BAD = {
    "digest": "does not match its digest",
    "config": "does not match its digest",
    "longer": "is longer than the",
    "endless": "larger than 4 MiB",
}
LIES = {
    "digest": "sends other bytes than a layer's digest names (copy_checked hashes what comes)",
    "config": "sends another config than the manifest's digest names (fetch_config checks it)",
    "longer": "sends more bytes than the manifest says a layer has (copy_checked reads one byte past the size to see it)",
    "endless": "sends a manifest that never ends",
}


@pytest.mark.parametrize("lie", sorted(BAD))
def test_a_lying_registry_is_refused_with_one_line_and_nothing_stored(lie, lab, lab_root, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    hostile = Hostile(lie, archives.tar([("lie", b"%s\n" % lie.encode())]))
    try:
        assert lab("login", "-u", USER, "--password-stdin", hostile.host, input=PASSWORD).returncode == 0
        before = store_entries(lab_root)
        result = lab("pull", f"{hostile.host}/lies:{lie}", timeout=60)
        assert result.returncode == 125, f"lab pull took an image from a registry that {LIES[lie]}"
        errors = [line for line in result.stderr.splitlines() if line.startswith("lab: error:")]
        assert len(errors) == 1 and BAD[lie] in errors[0], result.stderr
        assert store_entries(lab_root) == before
    finally:
        hostile.stop()
    if lie == "longer":        # and one that never ends: refused at size + 1 bytes, not when the disk is full
        from lab import LabError, pull

        class Endless:
            given = 0

            def read(self, n=-1):
                assert n is not None and n >= 0, "copy_checked read the whole answer at once: read it in chunks"
                assert self.given + n <= 1001, (f"copy_checked asked for {self.given + n} bytes of a blob of 1000: "
                                                "never more than size + 1 in all")
                self.given += n
                return b"x" * n
        with pytest.raises(LabError, match="is longer than"):
            pull.copy_checked(Endless(), io.BytesIO(), "sha256:" + "0" * 64, 1000, "an endless blob", lambda done: None)


def test_copy_checked_copies_a_blob_whole_says_how_far_it_got_and_refuses_a_short_one():
    from lab import LabError, pull
    blob = bytes(range(256)) * 10_000                                    # 2.5 MB: more than one chunk
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    copied, progressed = io.BytesIO(), []
    pull.copy_checked(io.BytesIO(blob), copied, digest, len(blob), "a blob", progressed.append)
    assert copied.getvalue() == blob
    assert progressed and progressed[-1] == len(blob) and progressed == sorted(progressed), \
        f"copy_checked called progressed({progressed}): the bytes so far, after each chunk"
    with pytest.raises(LabError, match=f"ended after {len(blob) - 1} of its {len(blob)} bytes"):
        pull.copy_checked(io.BytesIO(blob[:-1]), io.BytesIO(), digest, len(blob), "a short blob", lambda done: None)

def test_a_build_from_a_pulled_image_is_a_layer_per_step_and_all_cached_the_second_time(logged_in, lab, tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    (context / "greeting.txt").write_text("hello from the context\n")
    (context / "Dockerfile").write_text(f"FROM {logged_in.host}/course/base:1\n"
                                        "COPY greeting.txt /app/\n"
                                        "RUN cat /app/greeting.txt > /app/copy.txt\n"
                                        'CMD ["cat", "/app/copy.txt"]\n')
    assert lab("pull", f"{logged_in.host}/course/base:1", timeout=120).returncode == 0
    first = lab("build", "-t", "hello:1", str(context), timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    base = json.loads(lab("image", "inspect", f"{logged_in.host}/course/base:1").stdout)[0]
    built = json.loads(lab("image", "inspect", "hello:1").stdout)[0]
    layers = built["RootFS"]["Layers"] if "RootFS" in built else built["Layers"]
    base_layers = base["RootFS"]["Layers"] if "RootFS" in base else base["Layers"]
    assert layers[:1] == base_layers and len(layers) == 3            # the base's, then COPY's and RUN's
    run = lab("run", "--rm", "hello:1")
    assert (run.returncode, run.stdout) == (0, "hello from the context\n"), run.stderr
    again = lab("build", "-t", "hello:1", str(context), timeout=120)
    assert again.returncode == 0 and again.stdout.count("Using cache") == 3, again.stdout
    assert json.loads(lab("image", "inspect", "hello:1").stdout)[0]["Id"] == built["Id"]
