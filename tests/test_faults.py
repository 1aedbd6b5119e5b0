"""Bad input tried as a careful operator would (issue 13): names that are paths, limits past what
the kernel takes, a volume over the container's /, and HTTP requests that never end.

Each is one `lab: error:` line that says what was wrong, and changes nothing."""
import json
import os
import shutil
import socket
import tarfile
import time
from pathlib import Path

import pytest

from chapters.harness import Daemon, children


def refused(result, status: int, text: str) -> None:
    """One short error line with text in it, and lab's exit status."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("lab: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert text in result.stderr and len(result.stderr) < 400, result.stderr


@pytest.fixture
def victim(tmp_path) -> Path:
    """A host folder shaped like a volume (a _data folder in it): what a bad name might delete."""
    folder = tmp_path / "victim"
    (folder / "_data").mkdir(parents=True)
    (folder / "_data" / "keep").write_text("the host's\n")
    return folder


def tarball(tmp_path, content: str) -> str:
    """A rootfs tarball with one file of its own (its layer is shared with no other image)."""
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "file").write_text(content)
    with tarfile.open(tmp_path / "rootfs.tar", "w") as tar:
        tar.add(tmp_path / "rootfs" / "file", arcname="file")
    return str(tmp_path / "rootfs.tar")


# --- volumes: LAB_ROOT/volumes/NAME

def bad_volume_names(lab_root: Path, victim: Path) -> list[str]:
    return ["..", ".", os.path.relpath(victim, lab_root / "volumes"), str(victim), "a/b", "a" * 129]


def test_a_volume_name_that_is_a_path_is_refused_and_deletes_nothing(lab, lab_root, victim):
    lab("volume", "create", "kept")
    before = sorted((lab_root / "volumes").iterdir())
    for name in bad_volume_names(lab_root, victim):
        refused(lab("volume", "rm", name), 1, "invalid volume name")
        refused(lab("volume", "create", name), 1, "invalid volume name")
        refused(lab("volume", "inspect", name), 125, "invalid volume name")
        if not name.startswith("/"):                            # /path:/data is a bind mount
            refused(lab("run", "--rm", "-v", f"{name}:/data", "busybox", "true"), 125, "volume name")
    assert (victim / "_data" / "keep").read_text() == "the host's\n"
    assert sorted((lab_root / "volumes").iterdir()) == before
    assert lab("volume", "rm", "kept").returncode == 0


def test_a_volume_name_of_5000_characters_gets_one_short_line(lab):
    refused(lab("volume", "create", "v" * 5000), 1, "(5000 characters): use 2 to 128 letters")


def test_a_symlink_in_the_volume_store_is_never_followed(lab, lab_root, victim):
    (lab_root / "volumes").mkdir(exist_ok=True)
    (lab_root / "volumes" / "linked").symlink_to(victim)                 # the volume's folder
    (lab_root / "volumes" / "data-linked").mkdir()
    (lab_root / "volumes" / "data-linked" / "_data").symlink_to(victim / "_data")     # its _data
    try:
        for name in ("linked", "data-linked"):
            refused(lab("volume", "rm", name), 1, f"the volume {name} ({lab_root / 'volumes' / name}) "
                                                  "goes through a symlink")
            refused(lab("run", "--rm", "-v", f"{name}:/data", "busybox", "ls", "/data"), 125,
                    "goes through a symlink")
            assert name not in lab("volume", "ls").stdout
        assert (victim / "_data" / "keep").read_text() == "the host's\n"
    finally:
        (lab_root / "volumes" / "linked").unlink()
        shutil.rmtree(lab_root / "volumes" / "data-linked")
    assert lab("ps", "-aq").stdout == ""


# --- images and tags: names in tags.json, ids and digests as file names

BAD_IMAGE_NAMES = ["..", "../x", "/etc", "a/../b", "a//b", "a/", "Upper", "a" * 256, "x:" + "t" * 129,
                   "sha256:../../x"]


def test_an_image_name_that_is_not_a_reference_is_refused_and_changes_nothing(lab, lab_root, tmp_path):
    archive = tarball(tmp_path, "bad names\n")
    lab("run", "--name", "source", "busybox", "true")
    store = lambda: sorted(str(p) for p in (lab_root / "images").iterdir())
    before = store()
    try:
        for ref in BAD_IMAGE_NAMES:
            refused(lab("image", "import", archive, ref), 125, "invalid image name")
            refused(lab("commit", "source", ref), 125, "invalid image name")
            refused(lab("rmi", ref), 1, "invalid image name")
            refused(lab("image", "inspect", ref), 125, "invalid image name")
            assert lab("inspect", ref).returncode == 125
    finally:
        lab("rm", "source")
    assert store() == before
    assert "a" * 256 not in (lab_root / "images" / "tags.json").read_text()


def test_an_image_name_may_have_a_registry_host_and_port(lab, tmp_path):
    ref = "registry.local:5000/team/app:v1"
    imported = lab("image", "import", tarball(tmp_path, "registry\n"), ref)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(lab("image", "inspect", ref).stdout)[0]["RepoTags"] == [ref]
    assert lab("rmi", ref).returncode == 0


def test_rmi_deletes_a_symlink_in_the_layer_store_never_its_target(lab, lab_root, tmp_path, victim):
    assert lab("image", "import", tarball(tmp_path, "linked layer\n"), "linked:v1").returncode == 0
    digest = json.loads(lab("image", "inspect", "linked:v1").stdout)[0]["RootFS"]["Layers"][0]
    layer = lab_root / "layers" / digest.removeprefix("sha256:")
    shutil.rmtree(layer)
    layer.symlink_to(victim)
    removed = lab("rmi", "linked:v1")
    assert removed.returncode == 0, removed.stderr
    assert not os.path.lexists(layer) and (victim / "_data" / "keep").read_text() == "the host's\n"


# --- containers: LAB_ROOT/containers/ID, found by name or id

BAD_CONTAINER_REFS = ["..", "../x", "/etc", "a/b", ".hidden", "c" * 129]


def test_a_container_name_that_is_a_path_or_too_long_is_refused(lab):
    for ref in BAD_CONTAINER_REFS:
        refused(lab("run", "--name", ref, "busybox", "true"), 125, "invalid container name")
        # Looked up, it is no container (the engine's 404: `docker inspect` then tries an image).
        for command in (["rm", "-f", ref], ["stop", ref], ["kill", ref]):       # one line per container: 1
            refused(lab(*command), 1, "is not a container's name or id")
        for command in (["inspect", ref], ["logs", ref], ["exec", ref, "true"], ["commit", ref, "x:v1"]):
            refused(lab(*command), 125, "is not a container's name or id")
    refused(lab("run", "--name", "c" * 5000, "busybox", "true"), 125, "(5000 characters): use 2 to 128 letters")
    assert lab("ps", "-aq").stdout == ""


def test_a_symlink_in_the_container_store_is_never_followed(lab, lab_root, tmp_path):
    host = tmp_path / "host-folder"
    host.mkdir()
    (host / "keep").write_text("the host's\n")
    made = lab("run", "--name", "model", "busybox", "true")         # a real record, to copy
    assert made.returncode == 0, made.stderr
    model = next(p for p in (lab_root / "containers").iterdir() if not p.name.startswith("."))
    shutil.copy(model / "config.json", host / "config.json")
    lab("rm", "model")
    fake = os.urandom(32).hex()
    (lab_root / "containers" / fake).symlink_to(host)
    try:
        assert fake[:12] not in lab("ps", "-a").stdout
        refused(lab("rm", "-f", fake), 1, "no such container")
        assert (host / "keep").read_text() == "the host's\n" and (host / "config.json").exists()
    finally:
        for link in (lab_root / "containers").glob(f"*{fake}"):
            link.unlink()


# --- limits: what the kernel takes

def test_a_limit_beyond_what_the_kernel_takes_is_refused(lab):
    for flags, error in (
            (["-m", "99999999999999999999g"], "memory limit 99999999999999999999g is too large: "
                                              "the kernel takes at most 8589934591g"),
            (["-m", "8589934592g"], "memory limit 8589934592g is too large"),             # 2**63 bytes
            (["--pids-limit", "99999999999999999999"], "--pids-limit 99999999999999999999 is too large"),
            (["--pids-limit", "4194305"], "--pids-limit 4194305 is too large: the kernel takes at most 4194304"),
            (["--pids-limit", "²"], "invalid --pids-limit '²'"),
            (["--cpus", "1e400"], "--cpus 1e400 is out of range"),
            (["--cpus", "nan"], "--cpus nan is out of range")):
        refused(lab("run", "--rm", *flags, "busybox", "true"), 125, error)
    assert lab("ps", "-aq").stdout == ""


def test_a_user_looked_up_in_a_pipe_gets_one_line_not_a_wait_for_ever(lab):
    """-u NAME is looked up in the container's /etc/passwd and /etc/group, which the container
    owns: made pipes, their open would wait for a writer for ever (lab exec stuck, and deaf to
    SIGTERM while its helper starts)."""
    assert lab("run", "-d", "--name", "piped", "busybox", "sleep", "600").returncode == 0
    try:
        made = lab("exec", "piped", "sh", "-c", "rm /etc/passwd /etc/group; mkfifo /etc/passwd; ln -s /dev/zero /etc/group")
        assert made.returncode == 0, made.stderr
        for user, path in (("nobody", "passwd"), ("1000", "passwd")):
            refused(lab("exec", "-u", user, "piped", "id"), 126, f"the container's /etc/{path} is not a regular file")
        assert lab("exec", "piped", "sh", "-c", "rm /etc/passwd; echo 'u:x:7:7::/:/bin/sh' > /etc/passwd").returncode == 0
        refused(lab("exec", "-u", "u", "piped", "id"), 126, "the container's /etc/group is not a regular file")
        assert lab("exec", "piped", "sh", "-c", "rm /etc/group; echo 'g:x:7:' > /etc/group").returncode == 0
        assert lab("exec", "-u", "u", "piped", "id").stdout == "uid=7(u) gid=7(g) groups=7(g)\n"
    finally:
        lab("rm", "-f", "piped")


# --- -v over the container's / or through ..

def test_a_volume_over_the_containers_root_or_through_dot_dot_is_refused(lab, tmp_path):
    volumes = lab("volume", "ls").stdout
    for spec, error in ((f"{tmp_path}:/", "cannot be mounted over the container's /"),
                        (f"{tmp_path}://", "cannot be mounted over the container's /"),
                        ("data:/", "cannot be mounted over the container's /"),
                        (f"{tmp_path}:/a/../etc", "without '.' or '..', e.g. /etc"),
                        (f"{tmp_path}:/./etc:ro", "without '.' or '..', e.g. /etc"),
                        ("data:/..", "without '.' or '..'")):
        refused(lab("run", "--rm", "-v", spec, "busybox", "true"), 125, error)
    assert lab("ps", "-aq").stdout == "" and lab("volume", "ls").stdout == volumes
    (tmp_path / "seen").write_text("here\n")
    shown = lab("run", "--rm", "-v", f"{tmp_path}://a//b/", "busybox", "cat", "/a/b/seen")
    assert shown.stdout == "here\n", shown.stderr                      # extra slashes are harmless


# --- the daemon: requests that never end, bodies that are malformed

@pytest.fixture
def impatient_daemon(monkeypatch):
    """A daemon that gives a client 1 s to send its request."""
    monkeypatch.setenv("LAB_DAEMON_READ_TIMEOUT", "1")
    started = Daemon()
    try:
        yield started
    finally:
        started.close()


def raw_connection(daemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(daemon.socket)
    return s


def answer_within(s: socket.socket, seconds: float) -> bytes:
    """What the daemon sends before it closes the connection, which it must do within seconds."""
    s.settimeout(seconds)
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"the daemon still held the connection after {seconds} s") from None
    except ConnectionResetError:
        pass                               # it closed with bytes of ours unread: an end too
    return data


def test_a_request_that_stops_half_way_is_dropped_after_the_read_timeout(impatient_daemon):
    daemon = impatient_daemon
    volumes = daemon.request("GET", "/volumes")[1]["Volumes"]
    s = raw_connection(daemon)                       # a whole request, then nothing: the kept-alive
    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: lab\r\n\r\n")       # connection ends after the timeout,
    assert answer_within(s, 5).startswith(b"HTTP/1.1 200 OK")     # and that is no error of the client's
    s.close()
    s = raw_connection(daemon)
    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: lab\r\n")             # no empty line: the headers never end
    started = time.monotonic()
    assert answer_within(s, 5) == b"" and time.monotonic() - started >= 0.9
    s.close()
    assert daemon.log.read_text().count("did not send a whole request in time") == 1      # (the second only)
    # A chunked body without end: chunks keep coming, the last one never does.
    s = raw_connection(daemon)
    s.sendall(b"POST /volumes/create HTTP/1.1\r\nHost: lab\r\nTransfer-Encoding: chunked\r\n\r\n")
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            s.sendall(b"1\r\n \r\n")
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass                                           # it stopped listening: as it should
    answer = answer_within(s, 1)
    s.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'{"message": "the request body did not arrive within 1 s"}' in answer
    wait = time.monotonic() + 5                        # the handlers' processes are gone
    while any(state != "Z" for state, _ in children(daemon.process.pid).values()):
        assert time.monotonic() < wait, f"handlers still running: {children(daemon.process.pid)}"
        time.sleep(0.05)
    assert daemon.request("GET", "/_ping") == (200, "OK")
    assert daemon.request("GET", "/volumes")[1]["Volumes"] == volumes              # none was made


@pytest.mark.parametrize("body, error", [
    (b"zz\r\n{}\r\n0\r\n\r\n", "malformed chunked body: b'zz\\r\\n' is not a chunk size"),
    (b"-2\r\n{}\r\n0\r\n\r\n", "is not a chunk size"),
    (b"1\r\n{}\r\n0\r\n\r\n", "a chunk does not end (CRLF) where its size says"),
])
def test_a_malformed_chunked_body_gets_400_and_no_traceback(daemon, body, error):
    head = b"POST /volumes/create HTTP/1.1\r\nHost: lab\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, answer = daemon.request("", "", raw=head + body)
    assert (status, list(answer)) == (400, ["message"]) and error in answer["message"], answer
    good = daemon.request("", "", raw=head + b'10\r\n{"Name": "ok-1"}\r\n0\r\n\r\n')
    assert good[0] == 201 and good[1]["Name"] == "ok-1"
    assert daemon.request("DELETE", "/volumes/ok-1")[0] == 204
    assert "Traceback" not in daemon.log.read_text()


@pytest.mark.parametrize("head, status, error", [
    (b"Transfer-Encoding: gzip, chunked\r\n", 501, "unsupported Transfer-Encoding 'gzip, chunked'"),
    (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", 501, "unsupported Transfer-Encoding 'chunked, gzip'"),
    (b"Content-Length: 2\r\nContent-Length: 20\r\n", 400, "two different Content-Length headers"),
])
def test_a_body_lab_cannot_frame_is_refused_and_creates_nothing(daemon, head, status, error):
    """Once read as an empty body ({} made a volume) or by its first length, the rest of it read
    as the next request."""
    before = daemon.request("GET", "/volumes")[1]["Volumes"]
    answer_status, answer = daemon.request("", "", raw=b"POST /volumes/create HTTP/1.1\r\nHost: lab\r\n" + head
                                           + b'\r\n{"Name": "framed"}')
    assert (answer_status, error in answer["message"]) == (status, True), answer
    assert daemon.request("GET", "/volumes")[1]["Volumes"] == before
    spaced = daemon.request("", "", raw=b"POST /volumes/create HTTP/1.1\r\nHost: lab\r\nContent-Length: 16 \r\n"
                                         b'\r\n{"Name": "ok-2"}')                    # (spaces around a value
    assert spaced[0] == 201 and spaced[1]["Name"] == "ok-2", spaced                      # are not part of it)
    assert daemon.request("DELETE", "/volumes/ok-2")[0] == 204
    assert "Traceback" not in daemon.log.read_text()


def test_a_request_line_without_a_version_gets_a_status_line(daemon):
    status, answer = daemon.request("", "", raw=b"GET /_ping\r\n\r\n")        # HTTP/0.9: http.server
    assert status == 400 and "no HTTP version" in answer["message"], answer     # answered "OK" bare


def test_a_body_too_large_gets_413_before_it_is_read(daemon):
    status, answer = daemon.request("", "", raw=b"POST /volumes/create HTTP/1.1\r\nHost: lab\r\n"
                                                b"Content-Length: 1000000000000\r\n\r\n{}")
    assert status == 413 and answer["message"].startswith("the request body is too large")
    assert "Traceback" not in daemon.log.read_text()


def test_the_engine_refuses_names_and_ids_that_are_paths(daemon):
    status, answer = daemon.request("GET", "/volumes/..", b"")     # no volume is called so: not found, as
    assert status == 404 and answer["message"].startswith("No such volume"), answer   # for a container
    for method, path, body in (("DELETE", "/volumes/..", b""),
                               ("POST", "/volumes/create", b'{"Name": "../x"}'),
                               ("POST", "/volumes/create", b'{"Name": 5}'),
                               ("POST", "/volumes/create", json.dumps({"Name": "v" * 5000}).encode())):
        status, answer = daemon.request(method, path, body)
        assert status == 400 and answer["message"].startswith("invalid volume name"), (path, body, answer)
    for exec_id in ("..", "%2e%2e%2f%2e%2e%2fetc", "%2Fetc%2Fpasswd", "x" * 5000):
        for method, path in (("GET", f"/exec/{exec_id}/json"), ("POST", f"/exec/{exec_id}/start"),
                             ("POST", f"/exec/{exec_id}/resize?h=1&w=1")):
            status, answer = daemon.request(method, path, b"{}")
            assert status == 400 and answer["message"].startswith("invalid exec id"), (path, answer)
    assert "Traceback" not in daemon.log.read_text()


# A field of another kind than docker's, a query parameter that is no number, filters of
# another shape: each a 400 that names it (they were 500s, or stored and then broke `docker ps`
# or `volume ls` for every client), and nothing made.
@pytest.mark.parametrize("method, path, body, error", [
    ("POST", "/containers/create", {"Image": "busybox", "Cmd": [1, 2]}, "invalid Cmd: it must be a string or a list of strings"),
    ("POST", "/containers/create", {"Image": "busybox", "StopTimeout": "x"}, "invalid StopTimeout: it must be an integer"),
    ("POST", "/containers/create", {"Image": "busybox", "Labels": {"a": 1}}, "invalid Labels"),
    ("POST", "/containers/create", {"Image": "busybox", "HostConfig": "x"}, "invalid HostConfig: it must be an object"),
    ("POST", "/containers/create", {"Image": "busybox", "HostConfig": {"Memory": "1g"}}, "invalid HostConfig.Memory"),
    ("POST", "/containers/create", {"Image": "busybox", "HostConfig": {"Binds": [1]}}, "invalid HostConfig.Binds"),
    ("POST", "/containers/create", {"Image": "busybox", "HostConfig": {"RestartPolicy": "always"}},
     "invalid HostConfig.RestartPolicy"),
    ("POST", "/containers/create", {"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": "8080"}}},
     "invalid HostConfig.PortBindings"),
    ("POST", "/containers/create", {"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": ["bridge"]}},
     "invalid NetworkingConfig.EndpointsConfig"),
    ("POST", "/containers/create", b'{"Image": "busybox", "StopTimeout": NaN}', "not valid JSON"),
    ("POST", "/containers/create", b"[" * 100000, "not valid JSON"),
    ("POST", "/volumes/create", {"Labels": "x"}, "invalid Labels"),
    ("POST", "/networks/create", {"Name": "n1", "Labels": ["a"]}, "invalid Labels"),
    ("POST", "/networks/create", {"Name": "n1", "IPAM": {"Config": [{"Subnet": 5}]}}, "invalid IPAM.Config[].Subnet"),
    ("GET", "/containers/json?limit=abc", None, "invalid limit='abc'"),
    ("GET", "/containers/json?filters=%7B%22name%22%3A5%7D", None, "invalid filter 'name'"),
    ("GET", "/volumes?filters=%7B%22name%22%3A%5B5%5D%7D", None, "invalid filter 'name'"),
    ("GET", "/events?since=nan", None, "since and until are times"),
])
def test_the_engine_refuses_fields_of_another_kind_with_400_and_makes_nothing(daemon, lab, method, path, body, error):
    before = lab("ps", "-a", "-q").stdout, lab("volume", "ls").stdout, lab("network", "ls").stdout
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    status, answer = daemon.request(method, f"/v1.41{path}", data)
    assert status == 400 and error in answer["message"], answer
    assert (lab("ps", "-a", "-q").stdout, lab("volume", "ls").stdout, lab("network", "ls").stdout) == before
    assert "Traceback" not in daemon.log.read_text()


def test_logs_follow_and_events_end_their_handler_when_the_client_leaves(daemon):
    """Ctrl-C of `docker logs -f` on a quiet container, or of `docker events`: the daemon's
    handler process for it ends then, not at the container's next line or the next event."""
    import socket
    from chapters.harness import children, wait_until
    assert daemon.docker("run", "-d", "--name", "quiet", "busybox", "sleep", "600").returncode == 0
    for path in ("/containers/quiet/logs?stdout=1&follow=1", "/events"):
        before = set(children(daemon.process.pid))
        client = socket.socket(socket.AF_UNIX)
        client.connect(daemon.socket)
        client.sendall(f"GET /v1.41{path} HTTP/1.1\r\nHost: lab\r\n\r\n".encode())
        assert client.recv(100).startswith(b"HTTP/1.1 200")                  # streaming now
        handlers = set(children(daemon.process.pid)) - before
        assert handlers, "no handler process"
        client.close()
        wait_until(lambda: not handlers & set(children(daemon.process.pid)), 10, f"the handler of {path} ended")
    assert daemon.docker("rm", "-f", "quiet").returncode == 0
