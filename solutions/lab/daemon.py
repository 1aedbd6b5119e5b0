"""`lab daemon`: the engine's HTTP server on a Unix socket (plumbing for chapter 07).

HTTP/1.1 as the Engine API uses it: JSON bodies, /vX.Y/ in front of paths (version
negotiation: a client reads API-Version from /_ping and speaks min(its, ours)), errors as
{"message": "..."} which clients print as one line. Attach and exec start "hijack" the
connection: after the answer (101 UPGRADED), the same socket carries the container's raw
input and output, and the daemon hands it to the container's supervisor (SCM_RIGHTS).

Each connection is served by a forked process (socketserver.ForkingMixIn): a handler that
waits (docker wait, logs -f) or forks (docker cp's child, a build's steps) never blocks or
confuses the others, and the daemon itself stays small. The containers' supervisors are
forked by the zygote (supervisor.start_zygote), not by the daemon. Only root may talk to it: the socket is 0660 root:root,
and the peer's credentials (SO_PEERCRED, man 7 unix) are checked on every connection.
"""
import http.server
import json
import os
import re
import select
import signal
import socket
import socketserver
import stat
import struct
import sys
import time
import traceback
from urllib.parse import parse_qsl, unquote, urlsplit

from lab import LabError, NotFound, api, engine, engine_images, engine_system, operations, process, relay, store

MAX_BODY = 16 << 20             # bytes; the API's bodies are small JSON documents, but for:
PIECE = 1 << 20                 # (bytes read at a time)

# The routes' patterns, compiled once, here in the daemon. Each connection's handler is a fresh
# fork: a pattern it compiled itself (re's cache) would be gone with it, and the next handler
# would compile them all again (63 routes: 3 ms of every request, more than the rest of a ping).
ROUTES = [(method, re.compile(pattern), handler) for method, pattern, handler in
          engine.ROUTES + operations.ROUTES + engine_images.ROUTES + engine_system.ROUTES]
# The uploads: the routes whose body is a tar of any size (docker cp into a container, load,
# import, build's context). Each is written to a temporary file in the store as it comes (the
# handler gets it as req.upload), and the clock restarts with every piece: a client sending a
# docker save of a gigabyte through a pipe takes its time, but must not stop.
UPLOADS = {operations.put_archive, engine_images.post_images_load, engine_images.post_images_create,
           engine_images.post_build}
VERSIONED_PATH = re.compile(r"/v(\d+)\.(\d+)(/.*)")
DECIMAL, HEX = re.compile(r"[0-9]{1,20}"), re.compile(rb"[0-9a-fA-F]{1,15}")


def peer_uid(connection: socket.socket) -> int:
    """Who is calling: the user id of the process at the other end of a Unix socket.

    The kernel recorded it when that process connected (SO_PEERCRED, man 7 unix), so a client
    cannot claim to be someone else, as it could with anything it sends."""
    # HINT: a socket option tells it: getsockopt(SOL_SOCKET, SO_PEERCRED, size) returns the
    # HINT: kernel's struct ucred as bytes.
    # HINT 2: struct ucred is three C ints: pid, uid, gid (struct.calcsize("3i") bytes);
    # HINT 2: struct.unpack("3i", data) takes them apart.
    # BEGIN SOLUTION 07
    data = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", data)
    return uid
    # END SOLUTION


def no_constant(name: str):
    """NaN, Infinity: Python's JSON takes them, docker's (Go's) does not."""
    raise ValueError(f"{name} is not a JSON value")


class Request:
    """What a handler gets: path parameters, query, body, and the connection (for streams)."""

    def __init__(self, handler, params, pairs: list[tuple[str, str]], body: bytes, version: tuple[int, int]):
        self.handler, self.params, self.pairs, self.body = handler, params, pairs, body
        self.upload = None                # an upload's body (UPLOADS): a file, deleted once answered
        self.query = dict(pairs)          # (a parameter given twice: its last value; values() has all)
        self.version = version            # the API version the client speaks: (1, 47)
        self.out = None                   # the answer's body, once stream() has sent its headers

    def values(self, key: str) -> list[str]:
        """Every value of a query parameter given more than once (?changes=A&changes=B)."""
        return [value for name, value in self.pairs if name == key]

    def flag(self, key: str) -> bool:
        return self.query.get(key, "").lower() in ("1", "true", "yes")

    def number(self, key: str, default=None, integer: bool = False, meaning: str = ""):
        """?KEY=N as a number (an int, with integer), default when not given; else a 400 (nan too)
        that says what it means."""
        given = self.query.get(key)
        if given in (None, ""):
            return default
        try:
            value = int(given) if integer else float(given)
        except ValueError:
            value = None
        if value is None or not -1e15 < value < 1e15:          # (nan compares false)
            raise api.ApiError(400, f"invalid {key}={given!r}: {meaning or ('a whole number' if integer else 'a number')}")
        return value

    def query_json(self, key: str, default, kind):
        """?KEY=JSON (a build's buildargs, labels...), of its kind (api.check_kinds); default when not given."""
        try:
            value = json.loads(self.query.get(key) or "null")
        except ValueError:
            raise api.ApiError(400, f"invalid {key}: it is not valid JSON") from None
        api.check_kinds({key: value}, {key: kind}, "query parameter ")
        return default if value is None else value

    def json(self):
        if not self.body.strip():
            return {}
        try:
            body = json.loads(self.body, parse_constant=no_constant)
        except (ValueError, RecursionError) as e:
            raise api.ApiError(400, f"the request body is not valid JSON: {e}") from None
        if body is None:                      # (docker commit sends null when there is no --change)
            return {}
        if not isinstance(body, dict):
            raise api.ApiError(400, "the request body must be a JSON object")
        return body

    def stream(self, content_type: str, chunked: bool = False, headers: dict | None = None):
        """Answer 200 and return the connection's file: the body runs until we close it.
        chunked: in pieces that each say their length, so that a client can read one piece
        while the next is not written yet (the SDK reads docker stats' stream so)."""
        h = self.handler
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Connection", "close")
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.close_connection = True
        self.out = Chunks(h.wfile) if chunked else h.wfile
        return self.out

    def end_if_client_leaves(self, then=None) -> None:
        """While a long answer is prepared: if the client hangs up, this handler ends (docker
        run -d asks for a wait and leaves without reading it), or calls then() and goes on (a
        build stops its child). Until answering()."""
        import threading

        def watch():
            try:
                gone = self.handler.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                gone = True
            if gone and self.watching and then:
                then()
            elif gone and self.watching:
                os._exit(0)
        self.watching = True
        threading.Thread(target=watch, daemon=True).start()

    def answering(self) -> None:
        """The answer is ready: a client that hangs up once it has it no longer ends this
        handler, which has its request to log yet (lesson 07 waits for that line)."""
        self.watching = False

    def hijack(self) -> socket.socket:
        """Answer 101 UPGRADED (200 if the client did not ask to upgrade); from then on the
        connection carries the container's raw stream, both ways."""
        connection, answer = self.upgrade()
        relay.send_answer(connection, answer)
        return connection

    def upgrade(self) -> tuple[socket.socket, bytes]:
        """The connection, and the answer that hands it over (see hijack), for whoever takes
        the connection to send first: the supervisor sends it once the client is attached, so
        that a `start` the client sends on seeing it cannot come first (output would be lost)."""
        h = self.handler
        upgrade = "upgrade" in h.headers.get("Connection", "").lower()
        h.status = 101 if upgrade else 200      # (for the log line)
        lines = ["HTTP/1.1 101 UPGRADED" if upgrade else "HTTP/1.1 200 OK",
                 "Content-Type: application/vnd.docker.raw-stream", f"Api-Version: {api.API_VERSION}"]
        if upgrade:
            lines += ["Connection: Upgrade", "Upgrade: tcp"]
        h.close_connection = True
        h.server.hijacked = True              # the supervisor has it now: do not shut it down
        return h.connection, ("\r\n".join(lines) + "\r\n\r\n").encode()


class Chunks:
    """HTTP/1.1's chunked transfer coding: each write is one chunk (its size in hex, CRLF, the
    data, CRLF); a chunk of size 0 ends the body."""

    def __init__(self, f):
        self.f = f

    def write(self, data: bytes) -> None:
        if data:
            self.f.write(b"%x\r\n%s\r\n" % (len(data), data))

    def flush(self) -> None:
        self.f.flush()

    def end(self) -> None:
        self.f.write(b"0\r\n\r\n")
        self.f.flush()


class Reader:
    """The request, read from the socket as http.server reads it (readline, read), taking only
    the request's bytes: what the client sends after it (the input of a hijacked attach) stays
    in the socket, for the supervisor. A line is looked for with MSG_PEEK and then taken whole:
    two system calls, where an unbuffered file (rbufsize = 0) makes one a byte."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.taken = 0                    # bytes of the request being read (handle_one_request: 0)

    def readline(self, limit: int = -1) -> bytes:
        line, limit = b"", limit if limit > 0 else 1 << 16
        while len(line) < limit and (data := self.sock.recv(limit - len(line), socket.MSG_PEEK)):
            end = data.find(b"\n")
            line += self.sock.recv(end + 1 if end >= 0 else len(data))
            if end >= 0:
                break
        self.taken += len(line)
        return line

    def read(self, size: int) -> bytes:
        data = self.sock.recv(size)
        self.taken += len(data)
        return data

    def close(self) -> None:
        pass                             # (the connection is the handler's to close)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"lab/{api.LAB_VERSION}"

    def setup(self):
        super().setup()
        self.rfile = Reader(self.connection)
        self.server.socket.close()        # in this handler's process: only the daemon listens
        signal.signal(signal.SIGALRM, too_slow)

    def handle_one_request(self):
        # A client has read_timeout seconds to send a whole request (its line, headers and body):
        # one that stops half-way, or sends a body without end, would hold this process forever.
        # read_body() stops the clock: what follows may last (wait, logs -f, attach, exec).
        signal.setitimer(signal.ITIMER_REAL, self.server.read_timeout)
        self.rfile.taken = 0
        super().handle_one_request()

    def do_GET(self):
        self.dispatch()

    do_POST = do_DELETE = do_PUT = do_HEAD = do_GET

    def send_response(self, code, message=None):
        self.status = code
        super().send_response(code, message)
        self.send_header("Api-Version", api.API_VERSION)    # on every answer, streams and errors too
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")

    def dispatch(self):
        started = time.monotonic()
        self.status = None
        try:
            status, body, *headers = self.answer()         # (a handler may add headers)
            if status is not None:
                self.reply(status, body, *headers)
        except (BrokenPipeError, ConnectionResetError) as e:
            if self.client_left():
                self.close_connection = True   # the client went away
            else:
                self.fail(e)                   # a pipe or socket of the engine's own: say so
        except Exception as e:
            self.fail(e)
        print(f"{self.command} {self.path} -> {self.status} ({(time.monotonic() - started) * 1000:.1f} ms)",
              file=sys.stderr, flush=True)

    def client_left(self) -> bool:
        """Whether the client has closed its end of the connection (man 2 poll: POLLRDHUP)."""
        poller = select.poll()
        poller.register(self.connection, select.POLLRDHUP)
        return bool(poller.poll(0))

    def fail(self, e: Exception) -> None:
        """An error answer, as docker's: a status and {"message": ...}."""
        if self.status is not None:            # an answer (or a hijack) has begun: no second one
            self.close_connection = True
            print(f"lab daemon: {self.command} {self.path}: {e}", file=sys.stderr)
            return
        if isinstance(e, api.ApiError):
            self.reply(e.status, {"message": str(e)} if e.status != 304 else None)
        elif isinstance(e, (LabError, process.StartError)):
            message = str(e)                   # docker's wording, which clients match: "No such container"
            self.reply(api.error_status(e), {"message": message[:1].upper() + message[1:]
                                                if isinstance(e, NotFound) else message})
        elif isinstance(e, NotImplementedError):
            # A chapter not written yet: say which, in the log too (a client may not show the
            # answer: docker's says "unable to upgrade to tcp, received 500" for an attach).
            print(f"lab daemon: {self.command} {self.path}: {e}", file=sys.stderr)
            self.reply(500, {"message": str(e)})
        else:
            traceback.print_exc()
            self.reply(500, {"message": f"lab daemon: {e} ({type(e).__name__}; the daemon's log has the traceback)"})

    def answer(self):
        """(status, body) for this request; (None, None) when the handler answered itself."""
        if peer_uid(self.connection) != 0:
            raise api.ApiError(403, "permission denied: only root may use lab's daemon "
                               "(run the client with sudo)")
        url = urlsplit(self.path)
        path, asked = url.path, version_tuple(api.API_VERSION)
        if m := VERSIONED_PATH.fullmatch(path):
            asked, path = (int(m[1]), int(m[2])), m[3]
            if asked > version_tuple(api.API_VERSION):
                raise api.ApiError(400, f"client version {m[1]}.{m[2]} is too new. Maximum supported "
                                   f"API version is {api.API_VERSION}")
            if asked < version_tuple(api.MIN_API_VERSION):
                raise api.ApiError(400, f"client version {m[1]}.{m[2]} is too old. Minimum supported "
                                   f"API version is {api.MIN_API_VERSION}, please upgrade your client")
        pairs = parse_qsl(url.query)
        for method, pattern, handler in ROUTES:
            if method == self.command and (match := pattern.fullmatch(path)):
                params = tuple(g and unquote(g) for g in match.groups())          # (%20: " ")
                if handler not in UPLOADS:
                    return self.run(handler, Request(self, params, pairs, self.read_body(), asked))
                with self.read_upload() as upload:
                    req = Request(self, params, pairs, b"", asked)
                    req.upload = upload
                    return self.run(handler, req)
        # As an engine without that feature: a lookup is a 404 (`docker inspect NAME` then tries
        # the next kind of object), an action a 501. Clients print the message either way.
        self.close_connection = True          # (its body, if it has one, is not read)
        raise api.ApiError(404 if self.command in ("GET", "HEAD") else 501,
                           f"lab daemon does not implement {self.command} {path}: "
                           "lab serves a subset of the Docker Engine API (see chapters/07_engine/README.md)")

    @staticmethod
    def run(handler, req: Request):
        result = handler(req)
        if isinstance(req.out, Chunks):
            req.out.end()
        return result if result is not None else (None, None)

    def read_body(self) -> bytes:
        """Content-Length bytes, or chunks, at most MAX_BODY. Once it is read, handle_one_request's
        clock stops."""
        return b"".join(self.read_pieces(MAX_BODY))

    def read_upload(self):
        """An upload's body (UPLOADS), of any size, in a temporary file in the store (deleted when
        closed), read from its start."""
        import tempfile
        store.layers_dir().mkdir(parents=True, exist_ok=True)      # (named as an unfinished import:
        upload = tempfile.NamedTemporaryFile(dir=store.layers_dir(), prefix=f".incoming-{os.getpid()}-upload-")
        try:                                                       # cleaned up after a crash, layers.py)
            for piece in self.read_pieces(None):
                upload.write(piece)
                signal.setitimer(signal.ITIMER_REAL, self.server.read_timeout)    # it is coming: more time
            upload.flush()
            upload.seek(0)
            return upload
        except BaseException:
            upload.close()
            raise

    def read_pieces(self, limit: int | None):
        """The body's bytes, a piece at a time: Content-Length of them, or chunks (RFC 9112, 7.1:
        SIZE in hex, CRLF, SIZE bytes, CRLF; a 0 ends them), at most limit (None: any number)."""
        try:
            coding = ", ".join(self.headers.get_all("Transfer-Encoding", [])).strip(" \t").lower()
            if coding not in ("", "chunked"):                # (gzip, chunked: a body lab cannot read)
                raise api.ApiError(501, f"unsupported Transfer-Encoding {coding[:40]!r}: send the body as it "
                                   "is, with a Content-Length or chunked")
            if coding == "":
                lengths = {value.strip(" \t") for value in self.headers.get_all("Content-Length", [])}
                if len(lengths) > 1:                         # which one ends the body? (RFC 9112, 6.3)
                    raise api.ApiError(400, "two different Content-Length headers: send one")
                length = lengths.pop() if lengths else "0"
                if not DECIMAL.fullmatch(length):
                    raise api.ApiError(400, f"invalid Content-Length {length[:20]!r}")
                yield from read_exactly(self.rfile, check_size(int(length), limit))
                return
            taken = 0
            while True:
                line = self.rfile.readline(100)
                size = line.split(b";")[0].strip()               # a size may have ;extensions after it
                if not HEX.fullmatch(size):
                    raise api.ApiError(400, f"malformed chunked body: {line[:20]!r} is not a chunk size "
                                       "(hex digits)")
                if int(size, 16) == 0:
                    break
                taken = check_size(taken + int(size, 16), limit)
                yield from read_exactly(self.rfile, int(size, 16))
                if self.rfile.readline(3) != b"\r\n":
                    raise api.ApiError(400, "malformed chunked body: a chunk does not end (CRLF) where its "
                                       "size says")
            while self.rfile.readline(1000).strip():    # trailers, up to an empty line
                pass
        except (TimeoutError, api.ApiError) as e:
            self.close_connection = True          # what is left of a bad body is no next request
            if isinstance(e, TimeoutError):
                raise api.ApiError(408, f"the request body did not arrive within "
                                   f"{self.server.read_timeout:g} s") from None
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def reply(self, status: int, body, headers: dict | None = None) -> None:
        data = b"" if body is None else (body.encode() if isinstance(body, str) else json.dumps(body).encode() + b"\n")
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        if status not in (204, 304):
            self.send_header("Content-Type", "text/plain; charset=utf-8" if isinstance(body, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(data)

    def parse_request(self) -> bool:
        """http.server's, without HTTP/0.9: a request line with no version would be answered
        with no status line and no headers; docker's answers 400, as lab does."""
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "the request line has no HTTP version (HTTP/0.9): send HTTP/1.1")
            return False
        return True

    def send_error(self, code, message=None, explain=None):
        """Malformed HTTP (http.server's own checks): still a JSON error body, as docker's."""
        self.close_connection = True
        self.request_version = self.protocol_version    # answer in HTTP/1.1, whatever was sent
        self.reply(code, {"message": f"bad request: {message or code}"})

    def log_message(self, format, *args):
        pass                                       # dispatch() logs one line per request

    def log_error(self, format, *args):            # http.server's own: a request that timed out
        if self.rfile.taken:                       # (not a kept-alive connection that sent no more:
            print(f"lab daemon: {format % args}", file=sys.stderr, flush=True)     # that just ends)


def too_slow(signum, frame):
    raise TimeoutError("the client did not send a whole request in time")


def check_size(size: int, limit: int | None) -> int:
    if limit is not None and size > limit:
        raise api.ApiError(413, f"the request body is too large: lab takes at most {limit >> 20} MiB")
    return size


def read_exactly(f, size: int):
    """size bytes of f, a piece at a time."""
    while size > 0:
        piece = f.read(min(size, PIECE))
        if not piece:
            raise api.ApiError(400, "the request body ended early")
        size -= len(piece)
        yield piece


def version_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


class Server(socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    max_children = 10_000          # each attached `docker run` holds two connections open
    request_queue_size = 4096      # socketserver's 5 overflows under load, and a docker client
                                   # whose connect finds the queue full gives up at once (EAGAIN)
    hijacked = False
    read_timeout = 30.0            # seconds to send a request; LAB_DAEMON_READ_TIMEOUT changes it

    def shutdown_request(self, request):
        if self.hijacked:          # in the handler's process: the supervisor owns the connection now
            request.close()
        else:
            super().shutdown_request(request)


def serve(path: str, zygote: int) -> None:
    """Listen on path (0660, root only) until SIGTERM or Ctrl-C; zygote is the pid of the process
    that forks the supervisors (supervisor.start_zygote)."""
    timeout = read_timeout()
    kind = os.lstat(path).st_mode if path and os.path.lexists(path) else None
    if not path or (kind is not None and not stat.S_ISSOCK(kind)):
        what = "is empty" if not path else "is a folder" if stat.S_ISDIR(kind) else "is a file, not a socket"
        raise LabError(f"--socket {path!r} {what}: give the path of a socket to create (lab replaces "
                       "only a socket a killed daemon left behind)")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            raise LabError(f"a daemon is already listening on {path}: stop it first, or use --socket")
        except ConnectionRefusedError:
            os.unlink(path)                  # left behind by a daemon that was killed
        finally:
            probe.close()
    old_umask = os.umask(0o117)              # the socket file is born 0660
    try:
        server = Server(path, Handler)
    finally:
        os.umask(old_umask)
    server.read_timeout = timeout
    os.chown(path, 0, 0)
    signal_handlers(server)
    print(f"lab daemon: API {api.API_VERSION} listening on unix://{path} (pid {os.getpid()}, zygote {zygote})",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        for pid in server.active_children or ():      # handlers still answering (wait, logs -f),
            os.kill(pid, signal.SIGTERM)              # or holding a client's idle connection: ended,
        server.server_close()                         # and waited for (socketserver's block_on_close)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        print("lab daemon: stopped; the containers keep running with their supervisors", file=sys.stderr)


def read_timeout() -> float:
    """LAB_DAEMON_READ_TIMEOUT, or 30: the seconds a client has to send a whole request."""
    text = os.environ.get("LAB_DAEMON_READ_TIMEOUT") or str(Server.read_timeout)
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0
    if not 0 < seconds <= 3600:
        raise LabError(f"LAB_DAEMON_READ_TIMEOUT={text!r}: give the seconds a client has to send a request "
                       "(more than 0, at most 3600)")
    return seconds


def signal_handlers(server) -> None:
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, process.FORWARDED)
