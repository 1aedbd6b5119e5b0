"""A container's supervisor: one small process per container, from create to the end.

Whoever creates a container does not stay while it runs: `lab run -d` returns, the engine
(chapter 07) may be restarted. The supervisor stays, as docker's containerd-shim does. It forked
twice and has a session of its own, so it is nobody's child but init's, and no terminal's. It

  - starts the container when asked (create and start are two steps, as in docker),
  - copies the container's stdout and stderr to whoever is attached, and to its log, and
    passes what a client sends on to its stdin (relay.py: a Supervisor is a Relay),
  - runs `exec` processes inside it, and relays theirs,
  - waits for the container, records how it ended, and tells whoever waits,
  - starts it again if its restart policy says so (docker run --restart),
  - runs its healthcheck, if it has one (health.py).

It listens on containers/<id>/supervisor.sock. Each connection sends one JSON line, and with
it, for attach and exec, the client's connection itself (SCM_RIGHTS, man 7 unix):
{"start": true}, {"attach": [1, 2], "stdin": true}, {"wait": true}, {"resize": [rows, cols]},
{"exec": ID}. Those requests are sent by supervisor_client.py; this module is the process
that answers them (and launch(), which starts it). See man 2 pidfd_open for how it waits for
a child inside a select loop.
"""
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from pathlib import Path

from lab import LabError, health, logs, process, store, supervisor_client, views, volumes
from lab import container as runtime
from lab.relay import STDERR, STDOUT, Process, Relay, frame, send_answer, send_log


def launch(container: store.Container, start_it: bool = True, new: bool = True) -> None:
    """`lab run -d` and the engine's create: give the container a supervisor, which holds it
    from now on (and removes it when it ends, if its config says AutoRemove: --rm); with
    start_it (run -d), have it start the container too, else it waits for the engine's start.
    Whatever fails, nothing is left behind; a container made before (new False: docker start,
    restart) stays as it was."""
    try:
        spawn(container)
        if start_it:
            supervisor_client.start(container)
    except BaseException as e:
        if not isinstance(e, KeyboardInterrupt):       # (Ctrl-C: it would go on, not end)
            container.wait_for_supervisor(10)          # it records why it failed, and ends
        removed_by_supervisor = container.config.get("AutoRemove") and isinstance(e, process.StartError)   # (--rm: it said why, and went)
        if not container.path.exists() and not removed_by_supervisor:
            raise LabError(f"container {container.name} was removed (lab rm -f) while it was starting") from None
        if new and container.path.exists():            # whatever it got goes too: its supervisor, its
            container.reload()                         # process (a supervisor killed after its fork),
            try:                                       # its cgroup and ports, its folder
                runtime.remove(container, force=True)
            except Exception as cleanup:               # (the start's error is the one to tell)
                e.add_note(f"and removing the container failed: {cleanup}")
        raise


def spawn(container: store.Container) -> None:
    """Start the container's supervisor; return once it listens (or raise why it could not)."""
    report = supervisor_report(container, from_zygote=ZYGOTE is not None)
    if report is None:            # the zygote was killed, before or after this request reached it
        print("lab daemon: the zygote is gone: this supervisor is forked from the daemon itself "
              "(restart the daemon for small ones)", file=sys.stderr)
        report = supervisor_report(container, from_zygote=False)
    if report != "ready":
        raise LabError(f"the container's supervisor did not start: {report or 'it ended'}")


def supervisor_report(container: store.Container, from_zygote: bool) -> str | None:
    """Fork the container's supervisor, or have the zygote fork it; what it says once it listens
    ("ready", or why it could not), "" if it ended without a word, None if the zygote is gone."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe:
        try:
            if not from_zygote:
                fork_supervisor(container.path, write_end)
            else:
                try:
                    socket.send_fds(ZYGOTE, [bytes(container.path)], [write_end])
                except OSError:
                    return None
        finally:
            os.close(write_end)
        report = pipe.read().decode(errors="replace")
    # Killed with this request in its queue, the zygote took the pipe's other end with it, unread:
    # no supervisor has it, so another may be forked.
    return None if from_zygote and not report and zygote_gone() else report


def zygote_gone() -> bool:
    """Whether the zygote has closed its end of the pair (it ends when it dies: the pipe's end it
    received may close a moment before it, hence the wait; its answer is quick)."""
    import select
    poller = select.poll()
    poller.register(ZYGOTE, select.POLLRDHUP)
    return bool(poller.poll(100))


def fork_supervisor(path: Path, report_fd: int) -> None:
    """Fork the supervisor of the container at path; it says "ready" (or why not) on report_fd."""
    fork_twice(lambda: Supervisor(store.Container(path)).serve(report_fd))


def fork_twice(life) -> None:
    """Run life() (which never returns) in a process that is nobody's child but init's, in a
    session of its own: no terminal, so closing yours does not stop it."""
    sys.stdout.flush()
    sys.stderr.flush()
    middle = os.fork()
    if middle == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                life()
        finally:
            os._exit(0)
    os.waitpid(middle, 0)


# The engine's supervisors are forked from a "zygote" (the word is Android's and Chrome's): a
# process `lab daemon` forks first thing, before it loads the engine. A supervisor forked from
# the daemon itself would be a copy of all the daemon holds (22 MB, of which it needs 13), and
# every page the daemon has touched since would have to be copied first. The daemon's handlers
# send the zygote the container's path and the pipe to report on (SCM_RIGHTS) over a socket
# pair; a SOCK_SEQPACKET socket keeps each of their messages whole, whoever sends at once.
ZYGOTE: socket.socket | None = None       # the daemon's end, inherited by its handlers


def start_zygote() -> int:
    """Fork the zygote, which forks each supervisor the engine asks for, until the daemon and
    all its handlers are gone (their ends of the pair closed: it reads nothing more); its pid."""
    global ZYGOTE
    ZYGOTE, its_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fork_twice(lambda: zygote(its_end))   # (the daemon's children are its handlers only)
    its_end.close()
    pid = ZYGOTE.recv(16)                 # it says its pid once it is there
    if not pid:
        raise LabError("the daemon's zygote, which forks the containers' supervisors, did not start")
    return int(pid)


def zygote(requests: socket.socket):
    """The zygote's life (it never returns): a supervisor for each request."""
    global ZYGOTE
    try:
        ZYGOTE.close()                    # (the daemon's end: with it, it would never read the end)
        ZYGOTE = None
        Path("/proc/self/comm").write_text("lab-zygote")
        requests.send(str(os.getpid()).encode())
        while True:
            message, fds, _, _ = socket.recv_fds(requests, 4096, 1)
            if not message:
                break
            try:
                fork_supervisor(Path(os.fsdecode(message)), fds[0])
            except OSError as e:          # a fork refused (out of memory, pids.max), a handler gone:
                try:                      # this one fails, the next may not
                    os.write(fds[0], str(e).encode())
                except OSError:
                    pass
            finally:
                os.close(fds[0])
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(0)


class Supervisor(Relay):
    def __init__(self, container: store.Container):
        self.container = container
        self.main: Process | None = None          # the container's process, once started
        self.failed: int | None = None            # its exit status, if it could not start
        self.cgroup = None
        self.execs: dict[str, Process] = {}
        self.early: list = []                     # attached before the start: (client, streams, stdin)
        self.waiting: list[socket.socket] = []
        self.backing_off = False                  # between an end and a restart (--restart)
        self.in_a_row = 0                         # restarts after runs shorter than 10 s
        self.health: health.Health | None = None  # this run's healthcheck (--health-cmd)

    def serve(self, report_fd: int):
        """The supervisor's life (it never returns)."""
        try:
            process.close_all_but(report_fd)     # the daemon's socket, a client's connection...
            Path("/proc/self/comm").write_text("lab-supervisor")     # its name in ps and pstree
            self.selector = selectors.DefaultSelector()
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(null, 2)                      # until its log is open: nothing on lab's terminal
            runtime.NOTED = False                 # (a skipped chapter's note would go into the container's log)
            errors = os.open(self.container.supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            os.dup2(errors, 2)
            for sig in process.FORWARDED:
                signal.signal(sig, self.forward)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, process.FORWARDED)
            log_config = self.container.config.get("LogConfig") or {}
            self.log = None if log_config.get("Type") == "none" else logs.Writer(self.container.log, log_config)
            # Room kept for the last words: when the log fills the disk, this file goes, and the
            # state (why the log stopped, later how the container ended) can still be written.
            self.ballast = self.container.ballast
            with open(self.ballast, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, 64 << 10)
            folder = os.open(self.container.path, os.O_PATH | os.O_CLOEXEC)
            address = supervisor_client.socket_address(folder)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:                                  # the socket of an earlier supervisor (docker start
                os.unlink(address)                # of a container that ran before): it has ended
            except FileNotFoundError:
                pass
            listener.bind(address)
            # Closed at once: an exec's command or a healthcheck is forked from this process, and
            # with --cap-add SYS_PTRACE the container could take a descriptor from it before it
            # closes them (pidfd_getfd): one of a host folder is the host's whole tree (openat ..).
            os.close(folder)
            listener.listen(64)
            listener.setblocking(False)           # (a connection gone before accept: no wait)
            self.selector.register(listener, selectors.EVENT_READ, self.accept)
            self.container.save_state(Supervisor=os.getpid(), WaitsForStart=True,
                                      SupervisorStartTime=store.process_start_time(os.getpid()))
            os.write(report_fd, b"ready")
            os.close(report_fd)
            report_fd = None
            self.loop()
            while self.main is not None and self.restart_due():     # --restart: docker's policies
                self.ended()
                self.restart()
                self.loop()
            self.ended()
            self.finish()
        except BaseException as e:
            if not isinstance(e, SystemExit):
                traceback.print_exc()
            if report_fd is not None:             # not listening yet: lab says why, in one line
                os.write(report_fd, (str(e) or type(e).__name__).encode())
        finally:
            os._exit(0)

    def loop(self) -> None:
        """Until the container has ended and its output has all been read (or, after its end,
        2 more seconds have passed: a process it left behind may hold its output open)."""
        ended = None
        while self.failed is None and not (self.main and self.main.done()):
            if ended is None and self.main and self.main.status is not None:
                ended = time.monotonic()
            timeout = 1 if ended is None else ended + 2 - time.monotonic()
            if timeout <= 0:
                return
            if self.health and ended is None:
                timeout = min(timeout, self.check_health())
            if self.main is None and not self.container.path.exists():
                raise SystemExit              # removed (rm -f) before it was started: nothing to do
            for key, _ in self.selector.select(timeout):
                if self.selector.get_map().get(key.fd) is not key:
                    continue                  # dropped by an earlier event of this round (a client hung up on)
                try:
                    key.data(key.fileobj)
                except Exception:             # one request or client failed: the container goes on
                    traceback.print_exc()

    def forward(self, sig, frame):
        """A signal sent to the supervisor goes to the container (before it starts, or while
        it waits to restart it: we end; its end is on record already)."""
        if self.main is None or self.backing_off:
            raise SystemExit
        if self.main.status is None:
            os.kill(self.main.pid, sig)

    def accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()       # (blocking, as the default timeout is: Python's rule)
        except BlockingIOError:
            return
        message, fds, _, _ = socket.recv_fds(conn, 65536, 1)
        for fd in fds:                    # received descriptors are inheritable: not into the container
            os.set_inheritable(fd, False)
        client = socket.socket(fileno=fds[0]) if fds else None
        try:
            req = json.loads(message)
            if "start" in req:
                answer = self.start()
            elif "attach" in req:
                if client is not None:    # the HTTP answer first (see daemon.Request.upgrade), then
                    send_answer(client, req.get("answer", "").encode("latin-1"))   # what it wrote so far
                    if req.get("logs"):
                        send_log(self.container, client, set(req["attach"]))
                answer = self.attach(self.main, client, set(req["attach"]), req.get("stdin", False),
                                     detach_keys=bytes(req.get("detach_keys", b"\x10\x11")))
            elif "exec" in req:
                answer = self.exec(req["exec"], client, req.get("framed"))
            elif "resize" in req:
                proc = self.execs.get(req["exec_id"]) if "exec_id" in req else self.main
                answer = self.resize(proc, *req["resize"])
            elif "wait" in req:
                self.waiting.append(conn)
                return
            else:
                answer = {"error": f"unknown request {message!r}"}
        except (LabError, process.StartError, OSError, ValueError, KeyError, TypeError, struct.error) as e:
            answer = {"error": str(e), "status": getattr(e, "status", 125)}
        try:
            conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass
        conn.close()

    def start(self) -> dict:
        if self.main is not None or self.failed is not None:
            return {"error": f"container {self.container.name} has already been started"}
        self.container.save_state(WaitsForStart=False, StoppedByUser=False, RestartCount=0)
        # what changed since its create (network connect, docker update) counts from this start
        self.container.config = store.read_json(self.container.path / "config.json")
        return self.run()

    def run(self) -> dict:
        signal.pthread_sigmask(signal.SIG_BLOCK, process.FORWARDED)   # until self.main is set
        try:
            pid, self.cgroup, stdio = runtime.start(self.container)
        except (LabError, process.StartError, OSError, NotImplementedError) as e:   # (NotImplementedError:
            # a chapter not written yet, which `lab run -d` must name as `lab run` does)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, process.FORWARDED)
            self.failed = getattr(e, "status", 125)
            # as docker's: one that never ran stays "Created", one that ran before "Exited" at the
            # end of that run; both with this exit status and error
            ran = self.container.state.get("StartedAt")
            self.container.save_state(Status="exited" if ran else "created", ExitCode=self.failed, Error=str(e), Pid=0)
            return {"error": str(e), "status": self.failed}
        self.main = self.watch(Process(pid, stdio, self.container.config.get("StdinOnce", False), self.log))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, process.FORWARDED)
        check = self.container.config.get("Healthcheck")
        self.health = health.Health(self.container, check) if check and check["Test"][0] != "NONE" else None
        for client, streams, stdin, keys in self.early:
            self.attach(self.main, client, streams, stdin, detach_keys=keys)
        self.early.clear()
        return {"Pid": pid}

    def attach(self, proc, client, streams: set[int], stdin: bool, framed: bool | None = None,
               detach_keys: bytes = b"\x10\x11") -> dict:
        if proc is None and client is not None:    # docker run attaches first, then starts
            self.early.append((client, streams, stdin, detach_keys))
            return {}
        return super().attach(proc, client, streams, stdin, framed, detach_keys)

    def log_failed(self, error: OSError) -> None:
        """The log could not be written (a full disk): room for the last words, and why."""
        self.ballast.unlink(missing_ok=True)
        self.container.save_state(LogStopped=f"{time.ctime()}: {error.strerror}")

    def exited(self, proc: Process, pidfd: int) -> None:
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _, wait_status = os.waitpid(proc.pid, 0)
        proc.status = process.exit_status(wait_status)
        self.check(proc)

    def check_health(self) -> float:
        """Start the healthcheck when it is due, kill one past its timeout; return the seconds
        until there is something to do again."""
        h, now = self.health, time.monotonic()
        if h.probe is None and now >= h.due:
            stdio = runtime.Stdio(False, False)
            h.begin()
            try:
                pid = runtime.exec_start(self.container, h.command, stdio)
            except (LabError, process.StartError, OSError) as e:
                stdio.close_ours()
                h.ended(getattr(e, "status", 126), str(e).encode())
            else:
                h.probe = Process(pid, stdio, stdin_once=True)
                h.probe.captured = bytearray()
                self.watch(h.probe)
        elif h.probe is not None and h.probe.status is None and now >= h.deadline:
            h.timed_out = True
            os.kill(h.probe.pid, signal.SIGKILL)
        return h.wait() if h.probe is None or h.probe.status is None else 1

    def check(self, proc: Process) -> None:
        """An exec'd process that has ended and whose output is all read: record it, hang up."""
        if proc is self.main or not proc.done():
            return
        if proc.captured is not None:     # a healthcheck (of this run: one of the last went with it)
            if self.health and proc is self.health.probe:
                self.health.ended(proc.status, bytes(proc.captured))
            self.hang_up(proc)
            return
        del self.execs[proc.exec_id]
        exec_ended(self.container, proc.exec_id, proc.status)
        self.hang_up(proc)

    def exec(self, exec_id: str, client: socket.socket | None, framed: bool | None = None) -> dict:
        config = read_exec(self.container, exec_id)
        stdio = runtime.Stdio(config["AttachStdin"], config["Tty"], size=config.get("ConsoleSize"))
        store.record_event(self.container, store.exec_action("exec_start", config["Cmd"]), execID=exec_id)
        try:
            pid = runtime.exec_start(self.container, config["Cmd"], stdio, env=config["Env"] or [],
                                     workdir=config["WorkingDir"] or None, user=config.get("User") or None)
        except (LabError, process.StartError, OSError, NotImplementedError) as e:
            stdio.close_ours()
            status = getattr(e, "status", 126)
            exec_ended(self.container, exec_id, status)
            if client is not None:           # the client reads the stream: tell it there
                message = f"lab: error: {e}\n".encode()
                client.sendall(message if config["Tty"] else frame(STDERR, message))
                client.close()
            return {"error": str(e), "status": status}
        proc = self.execs[exec_id] = self.watch(Process(pid, stdio, stdin_once=True, exec_id=exec_id))
        update_exec(self.container, exec_id, Running=True, Pid=pid)
        if client is not None:               # (exec -d: nobody reads its output)
            streams = {n for n, key in ((STDOUT, "AttachStdout"), (STDERR, "AttachStderr")) if config.get(key, True)}
            self.attach(proc, client, streams, config["AttachStdin"], framed, bytes(config.get("DetachKeys", b"\x10\x11")))
        return {"Pid": pid}

    def restart_due(self) -> bool:
        """docker's restart policies: always, unless-stopped, on-failure[:N] (a non-zero exit,
        at most N restarts). Never after `stop`, `rm -f` or a `kill` with what stop sends (KILL,
        or its stop signal): those say it should end."""
        try:                          # (docker update and rename change it meanwhile)
            self.container.config = store.read_json(self.container.path / "config.json")
        except (OSError, ValueError):
            pass
        policy = self.container.config.get("RestartPolicy") or {}
        self.container.reload()
        if self.container.state.get("StoppedByUser") or not self.container.path.exists():
            return False
        if policy.get("Name") in ("always", "unless-stopped"):
            return True
        limit = policy.get("MaximumRetryCount") or 0
        return (policy.get("Name") == "on-failure" and self.main.status != 0
                and (not limit or self.container.state.get("RestartCount", 0) < limit))

    def restart(self) -> None:
        """Start the container again after a pause that doubles with each restart in a row
        (100 ms, 200 ms... at most a minute; a run of 10 s or more starts the count anew), as
        docker does, so that a container that fails at once does not spin. Requests are served
        meanwhile; a stop, kill or rm -f in that time ends it."""
        for conn in self.waiting:                 # docker wait: this end was the one they waited for
            conn.close()
        self.waiting.clear()
        ran = time.time() - self.container.state.get("StartedAt", 0)
        self.in_a_row = 0 if ran >= 10 else self.in_a_row + 1
        deadline = time.monotonic() + (min(0.1 * 2 ** (self.in_a_row - 1), 60) if self.in_a_row else 0)
        self.backing_off = True
        self.container.save_state(Restarting=True)
        while time.monotonic() < deadline:
            for key, _ in self.selector.select(max(0.0, min(0.05, deadline - time.monotonic()))):
                key.data(key.fileobj)
            self.container.reload()
            if self.container.state.get("StoppedByUser") or not self.container.path.exists():
                self.container.save_state(Restarting=False)
                raise SystemExit
        self.backing_off = False
        self.main = None
        self.container.save_state(Restarting=False, RestartCount=self.container.state.get("RestartCount", 0) + 1)
        self.run()                        # (container.start takes our PID namespace back: own_pid_namespace)

    def ended(self) -> None:
        """The container has ended: record it, tell whoever waits, hang up."""
        if self.main is not None:
            runtime.finish(self.container, self.main.status, self.cgroup)
            self.hang_up(self.main)
        self.health = None                # (a check still running went with the cgroup)
        for exec_id, proc in list(self.execs.items()):   # what exec started dies with the container
            if proc.status is None:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.status = process.exit_status(os.waitpid(proc.pid, 0)[1])
            exec_ended(self.container, exec_id, proc.status)
            self.hang_up(proc)
        for client, *_ in self.early:         # attached, and it never started
            client.close()
        self.early.clear()
        answer = json.dumps(views.exit_of(self.container)).encode() + b"\n"
        for conn in self.waiting:
            try:
                conn.sendall(answer)
            except OSError:
                pass

    def finish(self) -> None:
        """Its last end: remove it if asked, and hang up on whoever waits."""
        if self.container.config.get("AutoRemove"):    # --rm: the container, and its anonymous volumes
            store.remove_container(self.container)
            volumes.remove_anonymous(self.container.config.get("Mounts", []))
        for conn in self.waiting:             # condition=removed: this says it is gone
            conn.close()


def read_exec(container: store.Container, exec_id: str) -> dict:
    return store.read_json(container.exec_record(exec_id))


def exec_ended(container: store.Container, exec_id: str, status: int) -> None:
    """An exec has ended (or never started): its record, and docker's exec_die event."""
    update_exec(container, exec_id, Running=False, ExitCode=status, Pid=0)
    store.record_event(container, "exec_die", execID=exec_id, exitCode=str(status))


def update_exec(container: store.Container, exec_id: str, **changes) -> None:
    try:
        store.write_json(container.exec_record(exec_id), {**read_exec(container, exec_id), **changes})
    except FileNotFoundError:
        pass                              # the container was removed meanwhile
