"""Chapter 00: a container is a process.

The runtime fork()s; the child exec()s the user's command; the runtime wait()s for it and
reports how it ended, the way docker does: the command's exit code, 128+N when signal N
killed it, 126 when the file cannot be executed, 127 when it does not exist. Later chapters
add steps around the fork: in the runtime before it (container.start), and in the child
between fork and exec (its `setup`: container.init_container).
See man 2 fork, man 2 execve, man 2 waitpid, man 7 signal.
"""
import errno
import os
import signal
import sys

from lab import LabError, StartError    # (StartError lives in lab/__init__.py: see there)

# Signals that `lab run` passes on to the container, as `docker run` does (--sig-proxy).
FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
             signal.SIGUSR1, signal.SIGUSR2)


def spawn(argv: list[str], env: dict[str, str], cwd: str, setup=None, fork=os.fork) -> int:
    """Fork a child that runs setup() and then execs argv; return its pid once exec worked.

    fork is os.fork, or one that starts the child somewhere else: on cgroup v2, in its cgroup
    (chapter 02: syscalls.fork_into_cgroup)."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()   # close-on-exec: exec closes it, so EOF means "exec worked"
    # HINT: two processes come out of one call: the child sets itself up and becomes the command;
    # HINT: the parent must learn whether that worked without waiting for the command to end (the
    # HINT: lesson's pipe is how).
    # HINT 2: fork() (the parameter: os.fork unless the caller passed another) returns twice: 0 in
    # HINT 2: the child, the child's pid in the parent.
    # HINT 3: the child runs child_main(...) (it never returns); the parent closes its copy of
    # HINT 3: the pipe's write end, then check_started(read end, pid) says whether exec worked.
    # BEGIN SOLUTION 00
    pid = fork()
    if pid == 0:
        os.close(read_end)
        child_main(argv, env, cwd, setup, write_end)
    os.close(write_end)
    check_started(read_end, pid)
    return pid
    # END SOLUTION


def exec_command(argv: list[str], env: dict[str, str], cwd: str) -> None:
    """Replace this process with argv, run in cwd with exactly the environment env."""
    # HINT: the child becomes the command: the same process, a new program. Go to the working folder
    # HINT: first; the program is looked up in the container's PATH, not lab's.
    # HINT 2: os.chdir, then os.execvpe: it searches env's PATH when argv[0] has no slash.
    # BEGIN SOLUTION 00
    os.chdir(cwd)
    os.execvpe(argv[0], argv, env)
    # END SOLUTION


def exit_status(wait_status: int) -> int:
    """Turn a raw waitpid() status into docker's exit status: the code, or 128 + signal."""
    # HINT: a wait status holds one of two stories, an exit with its code or a death by a signal;
    # HINT: docker reports the second as 128 + the signal's number.
    # HINT 2: os.WIFEXITED / os.WEXITSTATUS, os.WIFSIGNALED / os.WTERMSIG.
    # BEGIN SOLUTION 00
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)
    # END SOLUTION


def describe(e: BaseException) -> str:
    """An error's words for the user: a LabError's or an unwritten exercise's as they are
    (written for you); anything else is a bug, and says its kind ('pid' alone says nothing)
    and where in lab it came from."""
    if isinstance(e, (LabError, NotImplementedError)):
        return str(e)
    where = raised_in(e)
    return (f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) + (f" (in {where})" if where else "")


def raised_in(e: BaseException) -> str:
    """The last of lab's own functions an error went through, where it was raised or passed
    on: "lab/cgroups.py, CgroupV1.stats" ("" if none). A bug's one line then names the
    function to look at, yours while you write a chapter."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    found, frame = None, e.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename.startswith(package):
            found = frame.tb_frame.f_code
        frame = frame.tb_next
    if found is None:
        return ""
    return f"lab/{os.path.basename(found.co_filename)}, {getattr(found, 'co_qualname', found.co_name)}"


def child_main(argv, env, cwd, setup, report_fd: int):
    """In the child, between fork and exec. Never returns: it execs or exits."""
    status, message = 125, "lab: child failed"
    try:
        # The parent's handlers mean nothing here, and Python ignores SIGPIPE and SIGXFSZ:
        # an ignored signal stays ignored across exec, so give the command the defaults.
        for sig in (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if setup is not None:
            setup()
        # The command gets stdin, stdout and stderr, and nothing else that lab (or whoever
        # started lab) had open; report_fd closes itself when exec succeeds (O_CLOEXEC).
        close_all_but(report_fd)
        try:
            exec_command(argv, env, cwd)
        except OSError as e:
            status, message = exec_failure(argv[0], cwd, e)
    except BaseException as e:              # a failed setup step: lab's own failure
        message = describe(e)
    try:
        os.write(report_fd, f"{status}:{message}".encode(errors="surrogateescape"))  # (argv may hold any bytes)
    finally:
        os._exit(status)


def close_all_but(*keep: int) -> None:
    """Close every descriptor above 2 except those in keep (close_range(2) underneath: cheap)."""
    low = 3
    for fd in sorted(fd for fd in set(keep) if fd >= low):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def keep_only(*keep: int, stderr: int | None = None) -> None:
    """In a process of lab's that a container can see before it execs (exec's helper and the
    command it forks, in the container's PID namespace): /dev/null as its stdin and stdout, as
    its stderr too unless given one (a pipe lab copies: a note of a skipped chapter goes there),
    and no other descriptor but keep. With --cap-add SYS_PTRACE the container can take any
    descriptor such a process holds (pidfd_getfd): lab's own output file, the supervisor's
    socket and logs were there for the taking."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(stderr if fd == 2 and stderr is not None else null, fd)
    close_all_but(*keep)


def parse_signal(name: str) -> int:
    """A signal by name (TERM, SIGTERM) or number, as `kill -s` and docker's API take it."""
    try:
        number = int(name) if name.isdigit() else signal.Signals["SIG" + name.upper().removeprefix("SIG")]
        return signal.Signals(number)
    except (KeyError, ValueError):
        from lab import LabError
        raise LabError(f"kill: invalid signal {name!r}: use a name such as TERM, KILL, HUP, or a number") from None


def exec_failure(command: str, cwd: str, error: OSError) -> tuple[int, str]:
    """Docker's status and message for a command that could not be executed."""
    reason = (error.strerror or str(error)).lower()
    if error.filename == cwd and os.getcwd() != cwd:
        return 126, f'working directory "{cwd}": {reason}'
    if error.errno == errno.ENOENT and "/" not in command:
        return 127, f'exec "{command}": executable file not found in $PATH'
    if error.errno == errno.ENOENT:
        return 127, f'exec "{command}": no such file or directory'
    return 126, f'exec "{command}": {reason}'


def check_started(read_end: int, pid: int) -> None:
    """Wait until the child has exec'd (EOF on the pipe), or raise what it reported."""
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    if report:
        os.waitpid(pid, 0)
        status, message = report.decode(errors="replace").split(":", 1)
        raise StartError(int(status), message)


def hold_signals() -> None:
    """Hold the signals lab forwards until wait_for() knows where to send them: none is lost."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)


def wait_for(pid: int, while_waiting=None, forward=True) -> int:
    """Wait for the child, passing on the signals lab receives (without forward, they stay
    lab's own: a build's step); return docker's status.

    while_waiting() runs first, with the signals already passed on (lab -t copies the
    container's terminal there until it closes).
    """
    def pass_on(sig, frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    # A signal lab was told to ignore (nohup lab run ...) stays ignored.
    previous = {sig: signal.signal(sig, pass_on) for sig in FORWARDED
                if forward and signal.getsignal(sig) != signal.SIG_IGN}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)   # held signals are forwarded now
    try:
        if while_waiting is not None:
            while_waiting()
        _, wait_status = os.waitpid(pid, 0)   # retried by Python when a signal interrupts it
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_status(wait_status)


def end(pid: int) -> int:
    """Kill the child pid (its PID namespace goes with it) unless it has ended, reap it, and
    return docker's status. (A child not reaped yet keeps its PID: the kill cannot reach
    another process that took it.)"""
    try:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if not done:
            os.kill(pid, signal.SIGKILL)
            _, wait_status = os.waitpid(pid, 0)
    except ChildProcessError:             # reaped already: its status went with it
        return 128 + signal.SIGKILL
    return exit_status(wait_status)


def relay_pipes(ours: dict[str, int], pid: int) -> None:
    """While pid runs (lab run or lab exec without -t): its stdout and stderr copied to lab's
    (one pipe for both when lab's are one file), and with -i lab's stdin to its stdin, as
    docker's client does (ours: the ends lab keeps of the pipes, container.Stdio; closed
    here). Until both outputs end, or pid has ended and what it left in them is copied (a
    process it started may live on and keep them open). Input is taken from lab's stdin only
    when the container has taken the last: one that reads none while it writes a lot would
    otherwise have both sides wait on a full pipe."""
    import select
    outputs = {ours["stdout"]: 1, **({ours["stderr"]: 2} if "stderr" in ours else {})}   # our end -> lab's
    stdin, pending = ours.get("stdin"), b""
    ended = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (*outputs, ended):
        poller.register(fd, select.POLLIN)
    if stdin is not None:
        os.set_blocking(stdin, False)
        poller.register(0, select.POLLIN)
    try:
        while outputs:
            ready = dict(poller.poll())
            if ended in ready:                   # what is left in the pipes, then done
                for fd in outputs:
                    drain(fd, outputs[fd])
                return
            for fd in [fd for fd in outputs if fd in ready]:
                if not copy_some(fd, outputs[fd]):       # its end, or lab's reader has gone
                    poller.unregister(fd)
                    del outputs[fd]
                    os.close(fd)
            if stdin is not None and 0 in ready:
                try:
                    pending = os.read(0, 1 << 16)
                except OSError:                  # (lab started with no stdin)
                    pending = b""
                poller.unregister(0)
                if pending:
                    poller.register(stdin, select.POLLOUT)
                else:                            # lab's stdin ended: so does the container's
                    os.close(stdin)
                    stdin = None
            elif stdin is not None and stdin in ready:
                try:
                    pending = pending[os.write(stdin, pending):]
                except BrokenPipeError:          # it closed its stdin: no more input for it
                    poller.unregister(stdin)
                    os.close(stdin)
                    stdin = None
                    continue
                if not pending:
                    poller.unregister(stdin)
                    poller.register(0, select.POLLIN)
    finally:
        os.close(ended)
        for fd in [*outputs, *([stdin] if stdin is not None else [])]:
            os.close(fd)


def drain(source: int, to: int) -> None:
    """What a pipe holds now, copied to to (its writer has ended, or failed to start)."""
    os.set_blocking(source, False)
    while copy_some(source, to):
        pass


def copy_some(source: int, to: int) -> bool:
    """One read of source, written whole to to; False at source's end (or nothing to read from
    a non-blocking one), or when to cannot be written any more (lab run ... | head)."""
    try:
        data = os.read(source, 1 << 16)
    except BlockingIOError:
        return False
    if not data:
        return False
    try:
        while data:
            try:
                data = data[os.write(to, data):]
            except BlockingIOError:           # (a stdout another program left non-blocking)
                import select
                select.select([], [to], [])
    except OSError:                           # its reader has gone (lab run ... | head), or its
        return False                          # terminal hung up: no more copies there
    return True
