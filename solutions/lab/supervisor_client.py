"""Talking to a container's supervisor (supervisor.py), from the engine and from `lab`.

A supervisor listens on containers/<id>/supervisor.sock. Each request is one connection: a
JSON line, and with it, for attach and exec, the client's own connection (a descriptor sent
over the Unix socket, SCM_RIGHTS, man 7 unix), which the supervisor keeps and serves from
then on. The answer is one JSON line, or, for a wait, nothing until the container has ended.
"""
import json
import os
import socket

from lab import LabError, NotFound, process, store, views


SOCKET = "supervisor.sock"


def socket_address(folder: int) -> str:
    # A Unix socket's path must fit in 108 bytes and LAB_ROOT may be deeper than that: the path
    # goes through a descriptor of the container's folder instead (/proc/self/fd/N is that folder).
    return f"/proc/self/fd/{folder}/{SOCKET}"


def connect(container: store.Container) -> socket.socket:
    try:
        folder = os.open(container.path, os.O_PATH)
    except FileNotFoundError:             # removed meanwhile: --rm once it ended, rm -f
        raise NotFound(f"no such container: {container.name} (it was removed)") from None
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(socket_address(folder))
        except OSError:
            sock.close()
            raise gone(container) from None
        return sock
    finally:
        os.close(folder)


def gone(container: store.Container) -> LabError:
    return LabError(f"container {container.name} has no supervisor any more "
                    "(it has ended, or its supervisor was killed)")


def request(container: store.Container, message: dict, client: socket.socket | None = None) -> dict:
    """Send one request (and maybe a client's connection); return the supervisor's answer."""
    with connect(container) as sock:
        try:
            socket.send_fds(sock, [json.dumps(message).encode() + b"\n"], [client.fileno()] if client else [])
        except OSError:                   # it ended with our connection not yet accepted
            raise gone(container) from None
        return json.loads(read_line(sock) or b'{"error": "the supervisor ended"}')


def read_line(sock: socket.socket) -> bytes:
    """One line of answer; empty if the supervisor ended before answering."""
    line = b""
    try:
        while not line.endswith(b"\n") and (data := sock.recv(4096)):
            line += data
    except ConnectionResetError:          # it ended with our request unread
        return b""
    return line


def start(container: store.Container) -> None:
    """Ask the supervisor to start its container; raise the reason if it could not."""
    answer = request(container, {"start": True})
    if "error" in answer:
        raise process.StartError(answer.get("status", 125), answer["error"])


def wait(container: store.Container, removed: bool = False, registered=lambda: None) -> dict:
    """Wait until the container ends (and, if removed, until it is removed too); return
    {"StatusCode": N} and, if it failed to start, "Error". registered() is called once the
    supervisor has the request: a start asked for after that cannot be missed. If the
    supervisor ends before it answers, the answer is the one on disk."""
    with connect(container) as sock:
        try:
            sock.sendall(b'{"wait": true}\n')
        except OSError:                   # it ended with our connection not yet accepted
            sock.close()
        registered()
        answer = json.loads(read_line(sock) or b"null") if sock.fileno() != -1 else None
        while removed and sock.fileno() != -1 and read_line(sock):   # it hangs up once it is gone
            pass
    return answer or views.exit_of(container)
