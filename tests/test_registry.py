"""lab login, tokens, redirects, hostile layers, references, run-pulls-first and push, against
real registries on 127.0.0.1 (chapter 10's pull itself is checked by pytest chapters/10_images).

The registry is the distribution's own server (Debian's docker-registry), filled by skopeo with
images written here; its login is htpasswd (Basic) or a token server (Bearer), as on Docker Hub.
"""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from chapters.harness import ROOT

sys.path.insert(0, str(ROOT / "chapters" / "10_images"))
from registries import (APP, BASE, PASSWORD, USER, Hostile, RegistryServer, TokenServer, archives,  # noqa: E402,F401
                        lab_root, logged_in, oci_index, registry, skopeo_copy, storage, store_entries)


def test_login_stores_the_password_as_docker_does_readable_by_its_owner_only(registry, lab, tmp_path):
    result = lab("login", "-u", USER, "--password-stdin", registry.host, input=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert "Login Succeeded" in result.stdout
    config = tmp_path / "docker-config" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    auth = json.loads(config.read_text())["auths"][registry.host]["auth"]
    import base64
    assert base64.b64decode(auth).decode() == f"{USER}:{PASSWORD}"
    hub = lab("logout", "")                       # as docker logout "": Docker Hub's login, not this one
    assert hub.stdout == "Removing login credentials for docker.io\n", hub.stderr
    assert registry.host in json.loads(config.read_text())["auths"]
    assert lab("logout", registry.host).returncode == 0
    assert registry.host not in json.loads(config.read_text())["auths"]


def test_a_wrong_password_is_refused_and_not_stored(registry, lab, tmp_path):
    result = lab("login", "-u", USER, "--password-stdin", registry.host, input="wrong\n")
    assert result.returncode == 125
    assert "denied" in result.stderr or "refused" in result.stderr, result.stderr
    assert not (tmp_path / "docker-config" / "config.json").exists()


def test_pull_without_a_login_says_to_log_in_and_stores_nothing(registry, lab, lab_root):
    before = store_entries(lab_root)
    result = lab("pull", f"{registry.host}/course/app:1")
    assert result.returncode == 125
    assert result.stderr.strip().splitlines()[-1] == \
        f"lab: error: the registry {registry.host} wants a login: lab login {registry.host}"
    assert store_entries(lab_root) == before


def test_a_token_server_gives_anonymous_pulls_and_logins_their_tokens(storage, lab, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    tokens = TokenServer(tmp_path / "tokens")
    server = RegistryServer(storage, tokens)       # the same images, behind Bearer tokens
    try:
        ref = f"{server.host}/course/base:1"
        result = lab("pull", ref, timeout=120)
        assert result.returncode == 0, result.stderr
        assert ("repository:course/base:pull", None) in tokens.asked
        login = lab("login", "-u", USER, "--password-stdin", server.host, input=PASSWORD + "\n")
        assert login.returncode == 0, login.stderr
        assert lab("pull", ref, timeout=120).returncode == 0
        assert ("repository:course/base:pull", USER) in tokens.asked
        bad = tmp_path / "docker-config" / "config.json"
        config = json.loads(bad.read_text())
        import base64
        config["auths"][server.host]["auth"] = base64.b64encode(f"{USER}:wrong".encode()).decode()
        bad.write_text(json.dumps(config))
        refused = lab("pull", ref)
        assert refused.returncode == 125 and "refused the login" in refused.stderr
    finally:
        server.stop()
        tokens.stop()


def test_a_redirect_to_another_host_gets_the_blob_but_not_the_password(lab, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    hostile = Hostile("redirect", archives.tar([("redirected", b"yes\n")]))
    try:
        assert lab("login", "-u", USER, "--password-stdin", hostile.host, input=PASSWORD).returncode == 0
        result = lab("pull", f"{hostile.host}/lies:redirect", timeout=60)
        assert result.returncode == 0, result.stderr
        assert hostile.authorizations == [None]
    finally:
        hostile.stop()


def test_a_layer_that_writes_outside_itself_is_refused_and_nothing_stored(lab, lab_root, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    slipped = tmp_path / "slipped"
    hostile = Hostile("none", archives.tar([(archives.climbing_to(slipped), b"out\n")]))
    try:
        assert lab("login", "-u", USER, "--password-stdin", hostile.host, input=PASSWORD).returncode == 0
        before = store_entries(lab_root)
        result = lab("pull", f"{hostile.host}/lies:slip", timeout=60)
        assert result.returncode == 125
        assert len([line for line in result.stderr.splitlines() if line.startswith("lab: error:")]) == 1
        assert store_entries(lab_root) == before
        assert not slipped.exists()
    finally:
        hostile.stop()


def test_references_are_read_as_docker_reads_them():
    from lab.registry import Reference
    for text, registry, repository, tag, name in [
        ("busybox", "docker.io", "library/busybox", "latest", "busybox"),
        ("debian:12", "docker.io", "library/debian", "12", "debian"),
        ("me/app", "docker.io", "me/app", "latest", "me/app"),
        ("docker.io/library/alpine:3", "docker.io", "library/alpine", "3", "alpine"),
        ("localhost:5000/app:v1", "localhost:5000", "app", "v1", "localhost:5000/app"),
        ("registry.example.org/team/app", "registry.example.org", "team/app", "latest", "registry.example.org/team/app"),
    ]:
        ref = Reference(text)
        assert (ref.registry, ref.repository, ref.tag, ref.name) == (registry, repository, tag, name), text
    with pytest.raises(Exception, match="invalid reference"):
        Reference("UPPER/Case:tag!")


def test_run_of_an_image_not_here_pulls_it_first_as_docker_run_does(logged_in, lab):
    ref = f"{logged_in.host}/course/app:1"
    run = lab("run", "--rm", ref, timeout=120)
    assert (run.returncode, run.stdout) == (0, "hello from layer 2\n"), run.stderr   # stdout: the container's
    assert run.stderr.startswith(f"Unable to find image '{ref}' locally\n1: Pulling from course/app\n")
    assert "Status: Downloaded newer image" in run.stderr
    again = lab("run", "--rm", ref)
    assert (again.returncode, again.stdout, again.stderr) == (0, "hello from layer 2\n", "")


def test_run_of_an_image_no_registry_has_says_both_in_one_error_line(lab, lab_root):
    run = lab("run", "--rm", "127.0.0.1:9/no-such-image")          # port 9: nobody listens
    assert run.returncode == 125
    assert run.stderr.splitlines()[0] == "Unable to find image '127.0.0.1:9/no-such-image' locally"
    errors = [line for line in run.stderr.splitlines() if line.startswith("lab: error:")]
    assert errors == ["lab: error: no such image: 127.0.0.1:9/no-such-image:latest (`lab images` lists the "
                      "images you have); pulling it failed: cannot reach the registry at 127.0.0.1:9 "
                      "(Connection refused)"]
    assert store_entries(lab_root) == set()
    assert not list(lab_root.glob("containers/*"))


def test_docker_pull_and_run_through_the_engine_and_the_sdk_with_its_login(registry, daemon):
    ref = f"{registry.host}/course/app:1"
    refused = daemon.docker("pull", ref)                  # the CLI sent no login: the registry's answer
    assert refused.returncode == 1 and f"lab login {registry.host}" in refused.stderr, refused.stderr
    client = daemon.client()
    pulled = client.images.pull(f"{registry.host}/course/base", tag="1",
                                auth_config={"username": USER, "password": PASSWORD})   # X-Registry-Auth
    assert pulled.attrs["Architecture"] == archives.ARCH and pulled.attrs["RepoDigests"]
    lines = list(client.api.pull(f"{registry.host}/course/app", tag="1", stream=True, decode=True,
                                 auth_config={"username": USER, "password": PASSWORD}))
    assert {"status": "Already exists", "progressDetail": {}, "id": lines[1]["id"]} in lines    # the base layer
    assert sum(line.get("status") == "Pull complete" for line in lines) == 2
    assert any(line.get("status") == "Downloading" and line["progressDetail"]["total"] > 0 for line in lines)
    run = daemon.docker("run", "--rm", ref)
    assert (run.returncode, run.stdout) == (0, "hello from layer 2\n"), run.stderr
    wrong = daemon.docker("login", "-u", USER, "--password-stdin", registry.host, input="wrong")
    assert wrong.returncode == 1 and "denied" in wrong.stderr
    login = daemon.docker("login", "-u", USER, "--password-stdin", registry.host, input=PASSWORD)
    assert login.returncode == 0 and "Login Succeeded" in login.stdout      # POST /auth: the daemon checked it
    assert daemon.docker("rmi", ref).returncode == 0
    pulled = daemon.docker("pull", ref)                   # the CLI sends the login it keeps
    assert pulled.returncode == 0 and "Pull complete" in pulled.stdout, pulled.stderr


def skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120)


def test_push_then_skopeo_and_lab_pull_it_back(logged_in, lab, tmp_path):
    ref = f"{logged_in.host}/me/busybox:1"
    assert lab("tag", "busybox", ref).returncode == 0
    pushed = lab("push", ref, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    lines = pushed.stdout.splitlines()
    assert lines[0] == f"The push refers to repository [{logged_in.host}/me/busybox]"
    assert lines[-1].startswith("1: digest: sha256:") and "Pushed" in pushed.stdout
    copied = skopeo("copy", "--src-tls-verify=false", "--src-creds", f"{USER}:{PASSWORD}",
                    f"docker://{ref}", f"oci:{tmp_path / 'copy'}")       # skopeo checks every digest
    assert copied.returncode == 0, copied.stderr
    again = lab("push", ref, timeout=120)
    assert again.returncode == 0 and "Layer already exists" in again.stdout and "Pushed" not in again.stdout
    assert again.stdout.splitlines()[-1] == lines[-1]                      # the same digest: reproducible
    assert lab("rmi", ref).returncode == 0
    run = lab("run", "--rm", ref, "echo", "came back")                    # pulled again, then run
    assert (run.returncode, run.stdout) == (0, "came back\n"), run.stderr


def test_push_without_a_login_sets_no_tag_in_the_registry(registry, lab):
    ref = f"{registry.host}/me/refused:1"
    assert lab("tag", "busybox", ref).returncode == 0
    refused = lab("push", ref)
    assert refused.returncode == 125
    assert refused.stderr.strip().splitlines()[-1] == \
        f"lab: error: the registry {registry.host} wants a login: lab login {registry.host}"
    inspected = skopeo("inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", f"docker://{ref}")
    assert inspected.returncode != 0 and "manifest unknown" in inspected.stderr


def test_docker_push_through_the_engine_with_the_sdk(registry, daemon, lab):
    ref = f"{registry.host}/me/engine"
    assert lab("tag", "busybox", f"{ref}:2").returncode == 0
    lines = list(daemon.client().api.push(ref, tag="2", stream=True, decode=True,
                                          auth_config={"username": USER, "password": PASSWORD}))
    assert not [line for line in lines if "error" in line], lines
    assert lines[-1]["status"].startswith("2: digest: sha256:")
    inspected = skopeo("inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", f"docker://{ref}:2")
    assert inspected.returncode == 0, inspected.stderr


def test_tag_and_rmi_of_busybox_on_a_new_store_build_it_first(lab):
    assert lab("tag", "busybox", "mine:1").returncode == 0       # (it waited for its own lock before)
    assert lab("rmi", "busybox").returncode == 0
    assert lab("run", "--rm", "mine:1", "true").returncode == 0


def test_busybox_is_built_again_when_lab_s_build_changed_not_when_the_user_made_it_another(lab, lab_root):
    """A busybox:latest pulled, loaded (docker save of lab's own loses its Recipe), committed or
    tagged was replaced by a fresh build at its next run; an older build of lab's still is."""
    def busybox() -> tuple[str, dict]:
        image_id = json.loads(lab("inspect", "busybox").stdout)[0]["Id"]
        return image_id, json.loads((lab_root / "images" / f"{image_id.split(':')[1]}.json").read_text())
    built, image = busybox()
    record = lab_root / "images" / f"{built.split(':')[1]}.json"
    kept = record.read_text()
    record.write_text(json.dumps({**image, "Recipe": image["Recipe"] - 1}))      # as an older lab built it
    rebuilt = None
    try:
        assert lab("run", "--rm", "--network", "none", "busybox", "true").returncode == 0
        rebuilt, again = busybox()
        assert rebuilt != built and again["Recipe"] == image["Recipe"]
    finally:
        record.write_text(kept)
        lab("tag", built, "busybox:latest")
        if rebuilt:
            lab("rmi", rebuilt)
    assert lab("run", "--name", "variant", "--network", "none", "busybox", "touch", "/mine").returncode == 0
    assert lab("commit", "variant", "variant:1").returncode == 0 and lab("rm", "variant").returncode == 0
    try:
        assert lab("tag", "variant:1", "busybox:latest").returncode == 0
        ran = lab("run", "--rm", "--network", "none", "busybox", "ls", "/mine")
        assert (ran.returncode, ran.stdout) == (0, "/mine\n"), ran.stderr
    finally:
        lab("tag", built, "busybox:latest")
        lab("rmi", "variant:1")
    assert json.loads(lab("inspect", "busybox").stdout)[0]["Id"] == built


def test_a_config_that_calls_a_host_folder_its_layer_is_refused(lab, lab_root, monkeypatch, tmp_path):
    """A layer's diff_id names its folder in the store: "sha256:../../somewhere" (or an absolute
    path) made a host folder one of the image's layers, "Already exists", readable in the container."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    secret = tmp_path / "host-folder"
    secret.mkdir()
    (secret / "secret.txt").write_text("the host's\n")
    climbing = os.path.relpath(secret, lab_root / "layers")
    for diff_id in (f"sha256:{climbing}", f"sha256:{secret}"):
        hostile = Hostile("none", archives.tar([("hello", b"hi\n")]), diff_id=diff_id)
        try:
            assert lab("login", "-u", USER, "--password-stdin", hostile.host, input=PASSWORD).returncode == 0
            before = store_entries(lab_root)
            result = lab("pull", f"{hostile.host}/lies:host-folder", timeout=60)
            assert result.returncode == 125 and "Already exists" not in result.stdout, result.stdout
            assert result.stderr.startswith("lab: error: unsupported or malformed digest"), result.stderr
            assert store_entries(lab_root) == before
        finally:
            hostile.stop()


def test_an_image_that_lists_a_layer_twice_downloads_it_once(logged_in, lab):
    ref = f"{logged_in.host}/course/twice:1"
    result = lab("pull", ref, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Pulling fs layer") == 2 and result.stdout.count("Download complete") == 2
    run = lab("run", "--rm", ref)
    assert (run.returncode, run.stdout) == (0, "hello from layer 2\n"), run.stderr


def debian_layer() -> bytes:
    """A Debian user space taken from this machine (Debian 12, as the course VM is): bash and
    cat, the libraries they link (as ldd finds them), the dynamic loader, Debian's release files."""
    ldd = subprocess.run(["ldd", "/usr/bin/bash", "/usr/bin/cat"], capture_output=True, text=True, check=True).stdout
    files = {"/usr/bin/bash", "/usr/bin/cat"} | {word for word in ldd.split() if word.startswith("/") and ":" not in word}
    entries, folders = [], set()
    for path in sorted(files | {"/etc/os-release", "/etc/debian_version"}):
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in folders:
                folders.add(folder)
                entries.append((folder, None))
        entries.append(("/".join(parts), Path(path).read_bytes(), {"mode": 0o755}))
    return archives.tar(entries + [("bin", ("symlink", "usr/bin"))])


def test_a_debian_user_space_pulled_runs_on_this_kernel(logged_in, lab, tmp_path):
    layout = oci_index(tmp_path / "debian", {archives.ARCH: ([debian_layer()], ["bash"])})
    skopeo_copy(f"oci:{layout}", f"docker://{logged_in.host}/course/debian:12")
    ref = f"{logged_in.host}/course/debian:12"
    pulled = lab("pull", ref, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    run = lab("run", "--rm", ref, "bash", "-c", 'echo "$BASH_VERSION"; cat /etc/debian_version; . /etc/os-release; '
              'echo "$ID"; echo /boot/*; cat /proc/sys/kernel/osrelease')
    assert run.returncode == 0, run.stderr
    version, release, distribution, boot, kernel = run.stdout.splitlines()
    host_bash = subprocess.run(["bash", "-c", 'echo "$BASH_VERSION"'], capture_output=True, text=True).stdout.strip()
    assert (version, release, distribution) == (host_bash, Path("/etc/debian_version").read_text().strip(), "debian")
    assert (boot, kernel) == ("/boot/*", os.uname().release)        # no kernel of its own: the host's


def test_an_image_with_zstd_layers_is_pulled_and_runs(logged_in, lab, tmp_path):
    layout = oci_index(tmp_path / "zstd", {archives.ARCH: ([BASE, APP], ["cat", "/app/hello.txt"])},
                       compression="zstd")
    ref = f"{logged_in.host}/course/zstd:1"
    skopeo_copy(f"oci:{layout}", f"docker://{ref}")
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
                          f"docker://{ref}"], capture_output=True, text=True, check=True).stdout
    manifest = json.loads(raw)
    if "manifests" in manifest:
        manifest = json.loads(subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
             f"docker://{logged_in.host}/course/zstd@{manifest['manifests'][0]['digest']}"],
            capture_output=True, text=True, check=True).stdout)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    pulled = lab("pull", ref, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    run = lab("run", "--rm", ref)
    assert (run.returncode, run.stdout) == (0, "hello from layer 2\n"), run.stderr


def test_an_image_pushed_and_pulled_back_is_the_same_image_layer_for_layer(logged_in, lab, tmp_path):
    """A pulled image pushed elsewhere, and an image built here, come back with the same id and
    no layer stored twice: push sends each layer's tar as it came, byte for byte (tar-split)."""
    pulled = f"{logged_in.host}/course/app:1"
    assert lab("pull", pulled, timeout=120).returncode == 0
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {pulled}\nRUN echo built here > /built.txt\n")
    assert lab("build", "-t", "built:1", str(context), timeout=120).returncode == 0
    for source in (pulled, "built:1", "busybox"):
        image = json.loads(lab("image", "inspect", source).stdout)[0]
        copy = f"{logged_in.host}/copies/{source.rsplit('/', 1)[-1].replace(':', '-')}:1"
        assert lab("tag", source, copy).returncode == 0
        pushed = lab("push", copy, timeout=120)
        assert pushed.returncode == 0, pushed.stderr
        assert lab("rmi", copy).returncode == 0
        layers = len(list((Path(os.environ["LAB_ROOT"]) / "layers").iterdir()))
        back = lab("pull", copy, timeout=120)
        assert back.returncode == 0, back.stderr
        assert back.stdout.count("Already exists") == len(image["RootFS"]["Layers"]), back.stdout
        assert json.loads(lab("image", "inspect", copy).stdout)[0]["Id"] == image["Id"], source
        assert len(list((Path(os.environ["LAB_ROOT"]) / "layers").iterdir())) == layers


@pytest.mark.parametrize("form", ["pax", "gnu", "ustar"])
def test_a_layer_tar_is_made_again_byte_for_byte_from_its_folder(form, lab_root, tmp_path):
    """tarsplit: what push and save send is the tar the layer came as, whatever wrote it; a
    layer whose folder no longer matches its records is packed anew instead."""
    import io
    import tarfile
    from lab import image_commands, tarsplit
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format={"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT,
                                                       "ustar": tarfile.USTAR_FORMAT}[form]) as tar:
        def add(name, data=None, kind=tarfile.REGTYPE, **meta):
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.mode = kind, 1234567890, 0o644
            for key, value in meta.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        add("etc", kind=tarfile.DIRTYPE, mode=0o755)
        for size in (0, 1, 511, 512, 513, 100_000, 3 << 20):              # around the 512-byte blocks
            add(f"etc/file-{size}", os.urandom(size))
        add("etc/link", kind=tarfile.SYMTYPE, linkname="file-1")
        add("etc/hard", kind=tarfile.LNKTYPE, linkname="etc/file-513")
        add("etc/.wh.gone", b"")
        add("dev", kind=tarfile.DIRTYPE, mode=0o755)
        add("dev/null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3)         # left out of the folder
        if form != "ustar":
            add("etc/" + "a-long-name-" * 12, b"long\n")                        # a PAX or GNU long name
    original = out.getvalue()
    (tmp_path / "layer.tar").write_bytes(original)
    (lab_root / "layers").mkdir(parents=True)
    digest = image_commands.add_layer(lambda: open(tmp_path / "layer.tar", "rb"), None, [])
    tar_digest, _, _ = tarsplit.write_tar(digest, tmp_path / "again.tar", compress=False)
    assert (tmp_path / "again.tar").read_bytes() == original and tar_digest == digest
    (lab_root / "layers" / digest[7:] / "etc" / "file-513").write_bytes(b"changed")
    tar_digest, _, _ = tarsplit.write_tar(digest, tmp_path / "packed.tar", compress=False)
    assert tar_digest != digest
    with tarfile.open(tmp_path / "packed.tar") as packed:
        assert packed.extractfile("etc/file-513").read() == b"changed"
