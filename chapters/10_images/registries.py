"""Registries on 127.0.0.1 for chapter 10's lesson and tests; none on the internet.

    python3 chapters/10_images/registries.py &     # the lesson's: localhost:5000, tokens on :5001


- RegistryServer: the distribution's own registry (Debian's docker-registry, put in the venv by
  `make setup`), with a login: htpasswd (Basic) or a token server (Bearer), as Docker Hub does.
- TokenServer: that token server, a thread in the test process. It signs JWTs with a key the
  registry trusts, anonymous users get pull tokens, learner:secret gets pull and push.
- Hostile: a registry written for the occasion that lies (wrong digests, wrong sizes, endless
  answers, redirects elsewhere), answering only what a pull asks.
- The images the tests pull (filled once per module into `storage`), and the fixtures
  `registry` (htpasswd login, nothing stored yet) and `logged_in` (lab login done).
- skopeo_copy: fills a registry, an independent client (Debian's skopeo) pushing the OCI
  layouts written by oci_index.
"""
import base64
import hashlib
import http.server
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

if str(Path(__file__).resolve().parents[2]) not in sys.path:      # run as a script, or from a notebook
    sys.path.append(str(Path(__file__).resolve().parents[2]))     # (chapter 04's archives; never before LAB_IMPL's lab)
archives = importlib.import_module("chapters.04_overlay.archives")

USER, PASSWORD = "learner", "secret"
ISSUER, SERVICE = "lab-tokens", "lab-registry"


class Handler(http.server.BaseHTTPRequestHandler):
    """A request handler that answers in one call and logs nothing."""

    def answer(self, body: bytes, media_type: str = "application/octet-stream", status: int = 200,
               headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": media_type, "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(handler, address: str = "127.0.0.1", port: int = 0) -> http.server.ThreadingHTTPServer:
    """An HTTP server on address:port (0: a free one), answering in a thread of its own. It looks
    for a shutdown() every 20 ms (socketserver's default, 0.5 s, made each stop last that long)."""
    server = http.server.ThreadingHTTPServer((address, port), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registry_program() -> str:
    program = Path(sys.executable).with_name("docker-registry")      # in the venv, beside python
    if not program.exists():
        raise AssertionError(f"no docker-registry at {program}: run make setup (it puts Debian's there)")
    return str(program)


class RegistryServer:
    """docker-registry serving folder's storage on a free port; auth "htpasswd", a TokenServer,
    or None (anyone may pull and push)."""

    def __init__(self, folder: Path, auth=None, port: int = 0):
        import bcrypt
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        auth_config = None
        if auth == "htpasswd":
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
            (folder / "htpasswd").write_text(f"{USER}:{hashed}\n")
            auth_config = {"htpasswd": {"realm": "lab-test", "path": str(folder / "htpasswd")}}
        elif auth is not None:
            auth_config = {"token": {"realm": auth.realm, "service": SERVICE, "issuer": ISSUER,
                                     "rootcertbundle": str(auth.certificate)}}
        config = {"version": 0.1, "log": {"level": "error"}, **({"auth": auth_config} if auth_config else {}),
                  "storage": {"filesystem": {"rootdirectory": str(folder / "data")}, "delete": {"enabled": True}},
                  "http": {"addr": self.host}}
        (folder / "config.yml").write_text(json.dumps(config))      # YAML reads JSON
        self.log = open(folder / "registry.log", "ab")
        self.process = subprocess.Popen([registry_program(), "serve", str(folder / "config.yml")],
                                        stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while not self.answers():
            assert self.process.poll() is None, f"docker-registry exited: {(folder / 'registry.log').read_text()}"
            assert time.monotonic() < deadline, "docker-registry did not answer within 60 s"
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2)
        except urllib.error.HTTPError:
            return True                        # 401: it is up, and wants a login
        except OSError:
            return False
        return True

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class TokenServer:
    """A Bearer token server: GET /token?service=S&scope=repository:NAME:pull,push -> {"token": JWT}."""

    def __init__(self, folder: Path, port: int = 0):
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab test token issuer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(self.key, hashes.SHA256()))
        folder.mkdir(parents=True, exist_ok=True)
        self.certificate = folder / "token.pem"
        self.certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        # The registry finds the key by its libtrust id: sha256 of the public key (DER), 240 bits, base32.
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
        self.key_id = ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))
        self.asked: list[tuple[str, str | None]] = []      # (scope, user) of every token request
        server = self

        class Tokens(Handler):
            def do_GET(self):
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                user = None
                if (sent := self.headers.get("Authorization", "")).startswith("Basic "):
                    user, _, password = base64.b64decode(sent[6:]).decode().partition(":")
                    if (user, password) != (USER, PASSWORD):
                        return self.answer(b"", status=401)
                server.asked.append((query.get("scope", ""), user))
                self.answer(json.dumps({"token": server.token(query, user)}).encode(), "application/json")

        self.httpd = serve(Tokens, port=port)
        self.realm = f"http://127.0.0.1:{self.httpd.server_port}/token"

    def token(self, query: dict, user: str | None) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        access = []
        for scope in query.get("scope", "").split():
            kind, name, actions = scope.split(":")[0], ":".join(scope.split(":")[1:-1]), scope.split(":")[-1]
            granted = [a for a in actions.split(",") if a == "pull" or user is not None]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": query.get("service"), "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).decode().rstrip("=")
        signed = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.key_id}).encode()) + "." + \
            b64(json.dumps(claims).encode())
        signature = self.key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signed + "." + b64(signature)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def blob(blobs: Path, data: bytes, media_type: str, **extra) -> dict:
    (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
    return {"mediaType": media_type, "digest": archives.sha256(data), "size": len(data), **extra}


def image_manifest(blobs: Path, layers: list[bytes], cmd: list[str], arch: str = archives.ARCH,
                   compression: str = "gzip") -> dict:
    """One platform's manifest (its config and its layers, gzip or zstd, written into blobs)."""
    config = json.loads(archives.image_config(layers, cmd))
    config["architecture"] = arch
    if compression == "zstd":
        import zstandard
        compress = zstandard.ZstdCompressor().compress
    else:
        compress = archives.gz
    return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": blob(blobs, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
            "layers": [blob(blobs, compress(layer), f"application/vnd.oci.image.layer.v1.tar+{compression}")
                       for layer in layers]}


def oci_index(folder: Path, images: dict[str, tuple[list[bytes], list[str]]], compression: str = "gzip") -> Path:
    """An OCI layout whose one entry is an index of images, {architecture: (layers, cmd)}."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    manifests = []
    for arch, (layers, cmd) in images.items():
        manifest = image_manifest(blobs, layers, cmd, arch, compression)
        manifests.append(blob(blobs, json.dumps(manifest).encode(), manifest["mediaType"],
                              platform={"architecture": arch, "os": "linux"}))
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    top = {"schemaVersion": 2, "manifests": [blob(blobs, json.dumps(index).encode(), index["mediaType"])]}
    (folder / "index.json").write_text(json.dumps(top))
    (folder / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return folder


def skopeo_copy(source: str, dest: str, *options: str) -> None:
    result = subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                             "--dest-creds", f"{USER}:{PASSWORD}", *options, source, dest],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"skopeo copy {source} {dest}: {result.stderr}"


BUSYBOX = Path(os.environ.get("LAB_BUSYBOX") or "/bin/busybox").read_bytes()
BASE = archives.tar([("bin", None), ("bin/busybox", BUSYBOX, {"mode": 0o755}), ("bin/sh", ("symlink", "busybox")),
                     ("bin/cat", ("symlink", "busybox")), ("etc", None), ("etc/os-release", b"NAME=lab-test\n")])
APP = archives.tar([("app", None), ("app/hello.txt", b"hello from layer 2\n")])
TOP = archives.tar([("etc/.wh.os-release", b"")])          # a whiteout: layer 3 deletes a file of layer 1
OTHER_ARCH = "arm64" if archives.ARCH != "arm64" else "amd64"      # another machine's platform than this one
OTHER = archives.tar([("app", None), ("app/hello.txt", b"hello from %s\n" % OTHER_ARCH.encode())])


@pytest.fixture(autouse=True)
def lab_root(monkeypatch, tmp_path):
    """A LAB_ROOT of each test's own: every pull starts from an empty store."""
    monkeypatch.setenv("LAB_ROOT", str(tmp_path / "lab-root"))
    return tmp_path / "lab-root"


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """A registry's storage, filled once per module by skopeo (through a registry of its own)."""
    folder = tmp_path_factory.mktemp("registry")
    server = RegistryServer(folder / "basic", "htpasswd")
    try:
        app = oci_index(folder / "app", {OTHER_ARCH: ([BASE, OTHER], ["sh"]),     # (first: a walk must choose)
                                         archives.ARCH: ([BASE, APP, TOP], ["cat", "/app/hello.txt"])})
        skopeo_copy(f"oci:{app}", f"docker://{server.host}/course/app:1", "--all")
        base = oci_index(folder / "base", {archives.ARCH: ([BASE], ["sh"])})
        skopeo_copy(f"oci:{base}", f"docker://{server.host}/course/base:1", "--all")
        twice = oci_index(folder / "twice", {archives.ARCH: ([BASE, APP, APP], ["cat", "/app/hello.txt"])})
        skopeo_copy(f"oci:{twice}", f"docker://{server.host}/course/twice:1", "--all")
    finally:
        server.stop()
    return folder / "basic"


@pytest.fixture
def registry(storage, monkeypatch, tmp_path):
    """The filled registry with an htpasswd login; no login stored yet (DOCKER_CONFIG is empty)."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    server = RegistryServer(storage, "htpasswd")
    yield server
    server.stop()


@pytest.fixture
def logged_in(registry, lab):
    result = lab("login", "-u", USER, "--password-stdin", registry.host, input=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    return registry


def store_entries(lab_root: Path) -> set[str]:
    """The layers and images in a LAB_ROOT's store."""
    return {p.name for folder in ("layers", "images") if (lab_root / folder).is_dir()
            for p in (lab_root / folder).iterdir() if p.name != ".lock"}


class Hostile:
    """A registry that serves one image (manifest `m`, its config and layer) and lies as told:
    lie="digest" (a layer whose bytes differ), "longer" (more bytes than the manifest says),
    "endless" (a manifest that never ends), "config" (another config than its digest names: the
    command changed), "redirect" (the layer from another host, which checks that no password
    came along), "none" (the truth: for a hostile layer). diff_id: what the config calls the
    layer instead of its digest. docker_list: the tag names a Docker manifest list (docker's
    own index, which many images on Docker Hub still are), another machine's manifest first,
    and the manifests are Docker's schema 2."""

    def __init__(self, lie: str, layer: bytes, diff_id: str | None = None, docker_list: bool = False):
        gz = archives.gz(layer)
        config = archives.image_config([layer], ["sh"])
        if diff_id:
            config = config.replace(archives.sha256(layer).encode(), diff_id.encode())
        self.blobs = {archives.sha256(config): config, archives.sha256(gz): gz}
        if lie == "config":
            self.blobs[archives.sha256(config)] = config.replace(b'["sh"]', b'["id"]')
        served = gz + b"x" * 1000 if lie == "longer" else gz[:-8] + b"\0" * 8 if lie == "digest" else gz
        self.kind = kind = "application/vnd.docker.distribution.manifest.v2+json" if docker_list else \
            "application/vnd.oci.image.manifest.v1+json"
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": kind,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json" if docker_list else
                       "application/vnd.oci.image.config.v1+json", "digest": archives.sha256(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker_list else
                        "application/vnd.oci.image.layer.v1.tar+gzip", "digest": archives.sha256(gz), "size": len(gz)}]}).encode()
        self.listed = None if not docker_list else json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": [{"mediaType": kind, "digest": "sha256:" + "0" * 64, "size": 1,
                           "platform": {"architecture": "arm64" if archives.ARCH != "arm64" else "amd64", "os": "linux"}},
                          {"mediaType": kind, "digest": archives.sha256(self.manifest), "size": len(self.manifest),
                           "platform": {"architecture": archives.ARCH, "os": "linux"}}]}).encode()
        self.layer_digest = archives.sha256(gz)
        self.authorizations: list[str | None] = []       # what the other host was sent
        hostile = self

        class Elsewhere(Handler):
            def do_GET(self):
                hostile.authorizations.append(self.headers.get("Authorization"))
                self.answer(served)
        self.elsewhere = serve(Elsewhere, "127.0.0.2")

        class Liar(Handler):
            def do_GET(self):
                if self.headers.get("Authorization") != "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
                    return self.answer(b"", status=401, headers={"WWW-Authenticate": 'Basic realm="hostile"'})
                if self.path == "/v2/":
                    return self.answer(b"{}")
                if "/manifests/" in self.path:
                    if lie == "endless":
                        self.send_response(200)
                        self.end_headers()
                        try:
                            while True:
                                self.wfile.write(b" " * 65536)
                        except OSError:
                            return
                    if hostile.listed and "/manifests/sha256:" not in self.path:       # (by tag)
                        return self.answer(hostile.listed, "application/vnd.docker.distribution.manifest.list.v2+json")
                    if hostile.listed and not self.path.endswith(archives.sha256(hostile.manifest)):
                        return self.answer(b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}', status=404)   # (another machine's)
                    return self.answer(hostile.manifest, hostile.kind)
                digest = self.path.rsplit("/", 1)[-1]
                if digest == hostile.layer_digest and lie == "redirect":
                    location = f"http://127.0.0.2:{hostile.elsewhere.server_port}/blob"
                    return self.answer(b"", status=307, headers={"Location": location})
                self.answer(served if digest == hostile.layer_digest else hostile.blobs[digest])
        self.httpd = serve(Liar)
        self.host = f"127.0.0.1:{self.httpd.server_port}"

    def stop(self) -> None:
        for server in (self.httpd, self.elsewhere):
            server.shutdown()
            server.server_close()


def main() -> None:
    """The lesson's registry, as Docker Hub is: anyone may pull, learner:secret may also push."""
    import argparse
    import tempfile
    parser = argparse.ArgumentParser(description="A registry on 127.0.0.1 with Docker Hub's kind of login "
                                                 "(Bearer tokens), until Ctrl-C or kill.")
    parser.add_argument("--port", type=int, default=5000, help="the registry's port (5000); its tokens: the next one")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lab-registry-"))
    tokens = server = None
    try:
        tokens = TokenServer(folder / "tokens", args.port + 1)
        server = RegistryServer(folder, tokens, args.port)
        print(f"registry: localhost:{args.port} (login {USER}/{PASSWORD}; anyone may pull), "
              f"tokens: {tokens.realm}", flush=True)
        # Wait for kill or Ctrl-C. Not with signal.pause(): the kernel may hand the signal to
        # the token server's thread, and this one's pause() would never return. Python's own
        # handler writes the signal's number to the wakeup fd, whichever thread it ran in.
        woken, wake = os.pipe()
        os.set_blocking(wake, False)
        signal.set_wakeup_fd(wake)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        os.read(woken, 1)              # then Python runs the handler here, in the main thread
    except OSError as e:
        sys.exit(f"registries.py: {e} (is a registry already running on port {args.port}?)")
    except KeyboardInterrupt:
        pass
    finally:
        for running in (server, tokens):
            if running:
                running.stop()
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
