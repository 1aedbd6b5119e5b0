"""The names lab accepts: one rule per kind, docker's, checked before a name becomes a path.

A name typed by a user or sent to the engine ends up in a path: LAB_ROOT/volumes/NAME,
containers/ID, execs/ID.json. A name like `../../home` or `/etc` would lead out of LAB_ROOT
(and `lab volume rm` would delete what is there), so every name is checked here first:

    containers, volumes   [a-zA-Z0-9][a-zA-Z0-9_.-]+, at most 128 characters
    networks              the same, and spaces ("test 01": docker takes it)
    images                NAME[:TAG]: lowercase components [a-z0-9]+ joined by '.', '_', '-'
                          (busybox, my-app), separated by '/', maybe after a registry's
                          host[:port]/; at most 255 characters. TAG: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
                          Docker Hub's own are stored short: docker.io/library/debian is debian.
    ids                   64 hex digits (containers, execs); sha256:<64 hex digits> (images, blobs)
"""
import os
import re

from lab import LabError

MAX_NAME = 128           # docker has no limit for these; a file name may have 255 bytes
MAX_IMAGE_NAME = 255     # docker's limit
NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
NETWORK_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_. -]+")
COMPONENT = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
HOST = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]+)?/"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
# (a pattern, compiled by re on its first use and kept: 0.8 ms, which most commands never need)
REFERENCE = rf"(?P<name>(?:{HOST})?{COMPONENT}(?:/{COMPONENT})*)(?::(?P<tag>{TAG}))?"
ID = re.compile(r"[0-9a-f]{64}")
DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


def shown(value) -> str:
    """value as an error message quotes it: a name of 5000 characters is not printed whole."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...' ({len(value)} characters)"


def is_name(value, rule: re.Pattern = NAME) -> bool:
    return isinstance(value, str) and len(value) <= MAX_NAME and bool(rule.fullmatch(value))


def check_name(value, kind: str) -> str:
    """value, if it is a valid name of its kind (container, volume, network, ...); else a LabError."""
    network = kind == "network"
    if not is_name(value, NETWORK_NAME if network else NAME):
        raise LabError(f"invalid {kind} name {shown(value)}: use 2 to {MAX_NAME} letters, digits, "
                       f"'_', '.'{', spaces' if network else ''} or '-', starting with a letter or digit")
    return value


def parse_reference(ref) -> tuple[str, str]:
    """'busybox' -> ('busybox', 'latest'); 'me/app:v1' -> ('me/app', 'v1'); else a LabError."""
    m = re.fullmatch(REFERENCE, ref) if isinstance(ref, str) else None
    if not m or len(m["name"]) > MAX_IMAGE_NAME:
        raise LabError(f"invalid image name {shown(ref)}: use lowercase NAME[:TAG] (a NAME of at most "
                       f"{MAX_IMAGE_NAME} characters), e.g. busybox or busybox:latest")
    name = re.sub(r"^(?:(?:index\.)?docker\.io/)?(?:library/(?=[^/]+$))?", "", m["name"])   # docker.io/library/x = library/x = x
    return name, m["tag"] or "latest"


def check_id(value, kind: str) -> str:
    """value, if it is a full id (64 hex digits, as lab makes them); else a LabError."""
    if not (isinstance(value, str) and ID.fullmatch(value)):
        raise LabError(f"invalid {kind} id {shown(value)}: an id is 64 hex digits")
    return value


def digest_hex(digest) -> str:
    """'sha256:<64 hex digits>' -> the hex digits, the file name of a layer or an image."""
    m = DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if not m:
        raise LabError(f"unsupported or malformed digest {shown(digest)}: lab knows sha256:<64 hex digits> only")
    return m[1]


def host_arch() -> str:
    """This machine's architecture as images and seccomp profiles name it (Go's names): amd64, arm64..."""
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7", "i686": "386"}.get(machine, machine)


def runs_here(platform: str) -> bool:
    """Whether docker's --platform OS[/ARCH[/VARIANT]] is this machine's (lab's own images all are)."""
    os_name, _, arch = platform.partition("/")
    return os_name == "linux" and arch.split("/")[0] in ("", host_arch(), os.uname().machine)
