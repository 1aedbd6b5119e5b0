"""Talking to a registry: the OCI distribution API (Docker's Registry HTTP API v2). Chapter 10.

A registry is a web server with two kinds of things in it, both named by their sha256:

    GET /v2/<repository>/manifests/<tag or digest>   a manifest: the config's and layers' digests
    GET /v2/<repository>/blobs/<digest>              a blob: a config (JSON) or a layer (a tar.gz)

Everything else here is what makes that simple exchange safe on the internet:

- **Names.** `busybox` means docker.io/library/busybox:latest; a first component with a dot or
  a port, or `localhost`, is a registry's host (`localhost:5000/app`). Docker Hub's API lives
  at registry-1.docker.io.
- **Logins.** A registry answers 401 with `WWW-Authenticate`: `Basic` (send the user and
  password each time) or `Bearer realm=...,service=...,scope=...` (ask the realm for a token
  for that scope, with the password if there is one, then send the token). Passwords come from
  docker's config.json (`lab login` writes it), readable by its owner only.
- **Trust nothing.** Every answer has a size limit; a redirect to another host gets no
  password; plain HTTP only for this machine's own registries (127.0.0.0/8, ::1, localhost)
  or with --insecure, as dockerd allows; pull.py checks every byte against its digest.
"""
import base64
import http.client
import ipaddress
import json
import os
import re
import ssl
import urllib.parse
from pathlib import Path

from lab import LabError, NotFound
from lab.names import COMPONENT, DIGEST, TAG, shown

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_LOGIN = "https://index.docker.io/v1/"      # the key docker's config.json uses for it
MAX_DOCUMENT = 4 << 20        # a manifest, an index, a config, a token: containerd's limit too
TIMEOUT = 30                  # seconds without a byte from the registry

MANIFEST_TYPES = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
]
HOST = re.compile(r"(?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)+|\[[0-9a-f:]+\]|[a-z0-9-]+)(?::[0-9]+)?")
REFERENCE = re.compile(rf"(?P<path>{COMPONENT}(?:/{COMPONENT})*)(?::(?P<tag>{TAG}))?(?:@(?P<digest>{DIGEST.pattern}))?")


class Reference:
    """An image reference taken apart: registry host, repository, tag and/or digest."""

    def __init__(self, text: str):
        first, slash, rest = text.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
            self.registry, remainder = first.lower(), rest
        else:
            self.registry, remainder = DOCKER_HUB, text
        m = REFERENCE.fullmatch(remainder)
        if not HOST.fullmatch(self.registry) or not m or len(m["path"]) > 255:
            raise LabError(f"invalid reference {shown(text)}: use [HOST[:PORT]/]NAME[:TAG|@sha256:DIGEST], "
                           "lowercase, e.g. busybox, debian:12 or localhost:5000/app:v1")
        self.repository = m["path"]
        if self.registry == DOCKER_HUB and "/" not in self.repository:
            self.repository = "library/" + self.repository        # busybox = library/busybox
        self.digest = m["digest"]
        self.tag = m["tag"] or (None if self.digest else "latest")

    @property
    def name(self) -> str:
        """The name lab stores it under, docker's short form: busybox, me/app, localhost:5000/app."""
        if self.registry != DOCKER_HUB:
            return f"{self.registry}/{self.repository}"
        return self.repository.removeprefix("library/")

    def __str__(self) -> str:        # the full form: docker.io/library/busybox:latest
        return f"{self.registry}/{self.repository}" + (f":{self.tag}" if self.tag else "") + \
            (f"@{self.digest}" if self.digest else "")


def is_local(host: str) -> bool:
    """True for this machine's own registries, which dockerd reaches over plain HTTP by default."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# Credentials: docker's config.json, {"auths": {"HOST": {"auth": base64("user:password")}}}.

def config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def login_key(registry: str) -> str:
    return DOCKER_HUB_LOGIN if registry == DOCKER_HUB else registry


def read_config() -> dict:
    try:
        config = json.loads(config_path().read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise LabError(f"{config_path()} is not valid JSON ({e}): fix or delete it") from None
    return config if isinstance(config, dict) else {}


def credentials(registry: str) -> tuple[str, str] | None:
    entry = read_config().get("auths", {}).get(login_key(registry)) or {}
    if not entry.get("auth"):
        return None
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return user, password


def save_credentials(registry: str, user_password: tuple[str, str] | None) -> None:
    """Store (or, with None, forget) a login; the file is made readable by its owner only."""
    config = read_config()
    auths = config.setdefault("auths", {})
    if user_password is None:
        auths.pop(login_key(registry), None)
    else:
        auths[login_key(registry)] = {"auth": base64.b64encode(":".join(user_password).encode()).decode()}
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".config.json.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent="\t")
    os.replace(tmp, path)


# The HTTP side: one Registry per host, remembering its tokens.

def parse_challenge(header: str) -> tuple[str, dict]:
    """'Bearer realm="https://auth",service="reg",scope="repository:x:pull"' -> ('bearer', {...})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


class Registry:
    def __init__(self, host: str, insecure: bool = False):
        self.host = host
        self.api = DOCKER_HUB_API if host == DOCKER_HUB else host
        self.scheme = "http" if insecure or is_local(host) else "https"
        self.login = credentials(host)
        self.authorization: str | None = None          # what the last 401 taught us to send

    def request(self, method: str, path: str, headers: dict | None = None, body=None, scope: str = "",
                ok=(200,)) -> http.client.HTTPResponse:
        """Send a request to the registry (path: /v2/..., or a URL it gave), logging in when it
        asks; follow redirects (without the password when they lead to another host). Return
        the response, its body unread."""
        url = path if path.startswith(("http://", "https://")) else f"{self.scheme}://{self.api}{path}"
        for attempt in range(2):
            response = self.send(method, url, headers or {}, body)
            if response.status != 401 or attempt == 1:
                break
            challenge = response.getheader("WWW-Authenticate") or ""
            response.close()
            self.authorization = self.authenticate(challenge, scope)
            if hasattr(body, "seek"):
                body.seek(0)                   # a file sent again, from its start
        if response.status not in ok:
            raise self.error(response, f"{method} {path}")
        return response

    def send(self, method: str, url: str, headers: dict, body) -> http.client.HTTPResponse:
        origin = urllib.parse.urlsplit(url).netloc
        for _ in range(5):
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or (parts.scheme == "http" and self.scheme == "https"):
                raise LabError(f"the registry {self.host} redirected to {shown(url)}: lab follows https "
                               "redirects only")
            sent = dict(headers)
            if self.authorization and parts.netloc == origin:
                sent["Authorization"] = self.authorization
            connection = (http.client.HTTPSConnection(parts.netloc, timeout=TIMEOUT, context=ssl.create_default_context())
                          if parts.scheme == "https" else http.client.HTTPConnection(parts.netloc, timeout=TIMEOUT))
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            try:
                connection.request(method, target or "/", body=body, headers=sent)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise LabError(f"cannot reach the registry at {parts.netloc} ({describe(e)})") from None
            if response.status not in (301, 302, 303, 307, 308) or method not in ("GET", "HEAD"):
                return response
            url = urllib.parse.urljoin(url, response.getheader("Location") or "")
            response.close()
        raise LabError(f"the registry {self.host} redirected more than 5 times: giving up")

    def authenticate(self, challenge: str, scope: str) -> str:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.login is None:
                raise LabError(f"the registry {self.host} wants a login: lab login {self.host}")
            return "Basic " + base64.b64encode(":".join(self.login).encode()).decode()
        if scheme != "bearer" or not params.get("realm"):
            raise LabError(f"the registry {self.host} asks for an unknown kind of login: {shown(challenge)}")
        query = {"service": params.get("service", ""), "scope": scope or params.get("scope", "")}
        realm = urllib.parse.urlsplit(params["realm"])
        if realm.scheme != "https" and not (realm.scheme == "http" and (self.scheme == "http")):
            raise LabError(f"the registry {self.host} sends its login to {shown(params['realm'])}: "
                           "lab sends passwords over https only")
        headers = {}
        if self.login is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(self.login).encode()).decode()
        url = params["realm"] + ("&" if realm.query else "?") + urllib.parse.urlencode({k: v for k, v in query.items() if v})
        response = self.send("GET", url, headers, None)
        if response.status == 401:
            raise LabError(f"the registry {self.host} refused the login" +
                           (": check it with lab login" if self.login else f": lab login {self.host}"))
        if response.status != 200:
            raise self.error(response, "GET token")
        try:
            answer = json.loads(read_limited(response, MAX_DOCUMENT, "the token"))
            token = answer.get("token") or answer["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise LabError(f"the registry {self.host}'s login server sent no token") from None
        return f"Bearer {token}"

    def error(self, response: http.client.HTTPResponse, what: str) -> LabError:
        """The registry's own error message (its JSON `errors` list), as one line."""
        try:
            errors = json.loads(read_limited(response, 64 << 10, "an error"))["errors"]
            said = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (LabError, ValueError, KeyError, TypeError, AttributeError):
            said = response.reason
        if response.status == 404 or "UNKNOWN" in said:
            return NotFound(f"{self.host}: {said or 'not found'} ({what})")
        if response.status in (401, 403):
            return LabError(f"the registry {self.host} denied {what}: {said}" +
                            ("" if self.login else f" (lab login {self.host} first, if it is private)"))
        return LabError(f"the registry {self.host} answered {response.status} to {what}: {said}")


def read_limited(response, limit: int, what: str) -> bytes:
    """The whole body, or a LabError when it is longer than limit (an endless answer stops here)."""
    data = response.read(limit + 1)
    response.close()
    if len(data) > limit:
        raise LabError(f"{what} is larger than {limit >> 20} MiB: the registry is broken or hostile")
    return data


def describe(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def server_name(address: str) -> str:
    """What `login` is given (https://index.docker.io/v1/, localhost:5000) as a registry's host."""
    server = address.removeprefix("https://").removeprefix("http://").split("/")[0]
    return DOCKER_HUB if server in ("index.docker.io", "registry-1.docker.io") else server


def check_login(registry: str, user: str, password: str, insecure: bool = False) -> None:
    """`lab login`: the registry accepts these credentials (GET /v2/ with them) or a LabError."""
    client = Registry(registry, insecure)
    client.login = (user, password)
    client.request("GET", "/v2/")
