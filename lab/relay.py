"""The supervisor's relay: a process's output to the clients attached to it and to its log,
a client's input to the process's stdin. Chapter 07.

A container's stdout and stderr are two pipes (or one terminal); an Engine API client has one
connection. So the output is framed, as the API's "multiplexed stream": 8 bytes (the stream,
1 stdout or 2 stderr; 0 0 0; the length), then the data. Not when the process has a terminal
(one stream anyway), or when the client asked for it raw (exec start's Tty decides). What a
client sends goes to stdin, watched for the detach keys (ctrl-p ctrl-q): they end the client's
attach, not the container. Nothing here may block, since the supervisor serves everyone from
one select loop: a client that reads nothing for 5 s is dropped, and input the process does
not take yet waits (Process.pending) while that client is not read.

The supervisor (supervisor.py) is a Relay, and says what the relay cannot: what happens when a
process has exited (exited), when its output is all read (check), and when the log cannot be
written (log_failed). self.selector is its select loop's.
"""
import fcntl
import os
import selectors
import socket
import struct
import sys
import termios
import time

from lab import health, logs, store
from lab.terminal import Escape, write_all

STDOUT, STDERR = 1, 2


def frame(stream: int, data: bytes) -> bytes:
    """A piece of a container's output as the Engine API sends stdout and stderr on one
    connection (its "multiplexed stream"): a header of 8 bytes, then the data."""
    # HINT: the header is the stream (1: stdout, 2: stderr) in one byte, three zero bytes, then
    # HINT: the data's length in 4 bytes, big-endian; docker clients read it to take the streams apart.
    raise NotImplementedError('chapter 07: write frame() in lab/relay.py: A piece of a container\'s output as the Engine API sends stdout and stderr on one connection (its "multiplexed stream"): a header of 8 bytes, then the data (see chapters/07_engine/README.md, \'Your turn\')')


def check_frame() -> None:
    """Call frame() once, in the daemon's handler, before a multiplexed stream begins: a frame()
    not written yet fails the request with its "write ..." line (in a supervisor it would reach
    only the supervisor's log, and the client would get no output at all)."""
    frame(STDOUT, b"")


def send_answer(client: socket.socket, answer: bytes, timeout: float = 0.5) -> None:
    """Send the HTTP answer that hands the connection over (101 UPGRADED), then wait until the
    client has read it (at most timeout s), before any of the stream. The Docker SDK reads the
    answer with http.client, which reads ahead into a buffer of its own, then takes the stream
    from the socket itself: output sent with the answer was lost (attach with logs=1 gave b''
    one time in four; docker-py #1770, #3332). SIOCOUTQ (= TIOCOUTQ) on a Unix socket: the
    bytes sent that the other end has not read yet."""
    client.sendall(answer)
    unread = bytearray(4)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fcntl.ioctl(client.fileno(), termios.TIOCOUTQ, unread)
        if not int.from_bytes(unread, sys.byteorder):
            return
        time.sleep(0.0001)


def drain(client: socket.socket, timeout: float = 0.2) -> None:
    """Read and drop what the client still sends, while it sends (at most timeout s). A Unix
    socket closed with input unread resets the other end: a client still sending (`seq 1000000 |
    docker run -i busybox head -1`) read "connection reset by peer", not the end of the output.
    A client that sent nothing more costs nothing here (not the 5 s of its attach's timeout,
    which Python's recv waits out before it looks, MSG_DONTWAIT or not: hence non-blocking)."""
    client.setblocking(False)
    try:
        if not client.recv(65536):                          # it has hung up
            return
    except BlockingIOError:                                 # nothing unread: nothing to reset
        return
    client.settimeout(0.01)                                 # it sends: read on while it does
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and client.recv(65536):
        pass


def send_log(container: store.Container, client: socket.socket, streams: set[int]) -> None:
    """attach with logs=1: what the container has written so far, framed as its output is
    (in the supervisor nothing is written meanwhile: it is busy here)."""
    tty = container.config.get("Tty", False)
    for stream, data, _ in logs.follow(container, False):
        if stream in streams:
            client.sendall(data if tty else frame(stream, data))


class Process:
    """A process the supervisor relays: the container's own, or one started by exec."""

    def __init__(self, pid: int, stdio, stdin_once: bool, log=None, exec_id: str | None = None):
        self.pid, self.tty, self.stdin_once = pid, stdio.tty, stdin_once
        self.log, self.exec_id = log, exec_id       # the container's log (its own process only); exec's id
        self.stdin = stdio.master if stdio.tty else stdio.ours.get("stdin")
        if self.stdin is not None and not self.tty:
            os.set_blocking(self.stdin, False)
        self.pending, self.close_stdin = b"", False     # input the container has not taken yet
        self.captured = None                            # a healthcheck's output (bytearray), kept here
        self.outputs = ({stdio.master: STDOUT} if stdio.tty else
                        {stdio.ours["stdout"]: STDOUT, stdio.ours["stderr"]: STDERR})
        self.clients: list[tuple[socket.socket, set[int], bool]] = []    # (connection, streams, framed)
        self.escapes: dict[socket.socket, Escape] = {}  # the clients whose input it reads: their detach keys
        self.status = None

    def done(self) -> bool:
        return self.status is not None and not self.outputs


class Relay:
    selector: selectors.BaseSelector

    def attach(self, proc, client, streams: set[int], stdin: bool, framed: bool | None = None,
               detach_keys: bytes = b"\x10\x11") -> dict:
        """A client gets these streams of proc's output (framed unless it has a terminal, or as
        the client asked: exec start's Tty decides, not exec create's), and maybe its input,
        watched for the detach keys (ctrl-p,ctrl-q unless the client said otherwise)."""
        if client is None:
            return {"error": "attach needs the client's connection"}
        client.settimeout(5)              # a client that reads nothing for 5 s is dropped (see output)
        proc.clients.append((client, streams, not proc.tty if framed is None else framed))
        if stdin and proc.stdin is not None:
            proc.escapes[client] = Escape(detach_keys)
            self.selector.register(client, selectors.EVENT_READ, lambda c: self.client_input(proc, c))
        return {}

    def watch(self, proc: Process) -> Process:
        for fd in proc.outputs:
            self.selector.register(fd, selectors.EVENT_READ, lambda fd, proc=proc: self.output(proc, fd))
        pidfd = os.pidfd_open(proc.pid)
        self.selector.register(pidfd, selectors.EVENT_READ, lambda fd, proc=proc: self.exited(proc, fd))
        return proc

    def output(self, proc: Process, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:                   # EIO: every copy of the terminal's other side is closed
            data = b""
        if not data:
            self.selector.unregister(fd)
            del proc.outputs[fd]
            if fd != proc.stdin:
                os.close(fd)
            self.check(proc)
            return
        stream = proc.outputs[fd]
        if proc.captured is not None:     # a healthcheck's: for State.Health.Log
            proc.captured += data[:health.OUTPUT - len(proc.captured)]
        if proc.log:
            try:
                proc.log.write(stream, data)
            except OSError as e:          # the disk is full: the container goes on, its log stops
                proc.log = None
                self.log_failed(e)
        for client, streams, framed in list(proc.clients):
            if stream in streams:
                try:
                    client.sendall(frame(stream, data) if framed else data)
                except OSError:           # the client went away
                    self.drop(proc, client)

    def client_input(self, proc: Process, client: socket.socket) -> None:
        try:
            data = client.recv(65536)
        except OSError:
            data = b""
        if data and proc.stdin is not None:
            data, detached = proc.escapes[client].scan(data)
            if data:
                self.feed(proc, client, data)
            if detached:                  # the detach keys: the client goes, the container stays
                self.drop(proc, client)
            return
        self.selector.unregister(client)
        if not data and proc.stdin_once and not proc.tty and proc.stdin is not None:
            proc.close_stdin = True       # the attached input ended: so does the container's
            self.feed(proc, client, b"")

    def feed(self, proc: Process, client: socket.socket, data: bytes) -> None:
        """Pass data on to the container's stdin. A container that reads slower than the client
        writes must not block the supervisor (its output would stop, and it would wait for
        us): what does not fit waits in proc.pending, and the client is not read meanwhile."""
        if proc.tty:
            write_all(proc.stdin, data)   # keys typed on a terminal: a few bytes at a time
            return
        proc.pending += data
        try:
            proc.pending = proc.pending[os.write(proc.stdin, proc.pending):] if proc.pending else b""
        except BlockingIOError:
            pass
        except OSError:                   # it closed its stdin: what it did not read is lost
            proc.pending = b""
        reading = self.watched(client)
        if proc.pending:
            if reading:
                self.selector.unregister(client)
            if proc.stdin not in self.selector.get_map():
                self.selector.register(proc.stdin, selectors.EVENT_WRITE, lambda fd: self.feed(proc, client, b""))
            return
        if proc.stdin in self.selector.get_map():
            self.selector.unregister(proc.stdin)
        if proc.close_stdin:
            os.close(proc.stdin)
            proc.stdin = None
        elif not reading and client.fileno() != -1:
            self.selector.register(client, selectors.EVENT_READ, lambda c: self.client_input(proc, c))

    def watched(self, sock: socket.socket) -> bool:
        return any(key.fileobj is sock for key in self.selector.get_map().values())

    def drop(self, proc: Process, client: socket.socket) -> None:
        proc.clients = [entry for entry in proc.clients if entry[0] is not client]
        proc.escapes.pop(client, None)
        if self.watched(client):
            self.selector.unregister(client)
        client.close()

    def hang_up(self, proc: Process) -> None:
        if proc.stdin is not None and proc.stdin not in proc.outputs:   # a pipe (or an ended terminal)
            if proc.stdin in self.selector.get_map():                    # waiting to write to it
                self.selector.unregister(proc.stdin)
            os.close(proc.stdin)
        proc.stdin = None
        for fd in list(proc.outputs):
            self.selector.unregister(fd)
            os.close(fd)
        proc.outputs.clear()
        for client, *_ in list(proc.clients):
            try:
                client.shutdown(socket.SHUT_WR)
                drain(client)
            except OSError:
                pass
            self.drop(proc, client)

    def resize(self, proc, rows: int, columns: int) -> dict:
        if proc is not None and proc.tty:
            fcntl.ioctl(proc.stdin, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        return {}

    def exited(self, proc: Process, pidfd: int) -> None:
        raise NotImplementedError          # the supervisor's: see supervisor.Supervisor

    def check(self, proc: Process) -> None:
        raise NotImplementedError

    def log_failed(self, error: OSError) -> None:
        raise NotImplementedError
