"""LAB_TRACE=1: where the time of a `lab run` goes, phase by phase.

mark(name) notes the moment the phase `name` ended (container.step marks each step). Marks
made in the child, between fork and exec, travel to lab through a pipe; at the end lab prints
each phase's share on stderr, and with LAB_TRACE_FILE=PATH also writes them there as JSON
(tools/bench.py reads that). Off (the default), mark() does nothing.
"""
import json
import os
import sys
import time

ENABLED = os.environ.get("LAB_TRACE") == "1"
marks: list[tuple[str, float]] = []
_pipe: tuple[int, int] | None = None        # the child's marks travel back through it
_owner = os.getpid()                         # the process that forks (lab)


def started() -> float:
    """When this process started, on the monotonic clock: LAB_TRACE_T0 when whoever started lab
    gives it (tools/bench.py does), else from /proc (to 10 ms: the kernel counts clock ticks)."""
    if "LAB_TRACE_T0" in os.environ:
        return float(os.environ["LAB_TRACE_T0"])
    ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
    since_boot = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    return time.monotonic() - since_boot


def mark(name: str) -> None:
    if not ENABLED:
        return
    if _pipe is not None and os.getpid() != _owner:       # in the child: send it to lab
        os.write(_pipe[1], f"{name}\t{time.monotonic()}\n".encode())
    else:
        marks.append((name, time.monotonic()))


def before_fork() -> None:
    """A pipe for the child's marks (close-on-exec: exec closes the child's copy)."""
    global _pipe, _owner
    if ENABLED:
        _pipe, _owner = os.pipe(), os.getpid()


def after_exec() -> None:
    """In lab, once the child has exec'd: collect its marks."""
    global _pipe
    if _pipe is None:
        return
    os.close(_pipe[1])
    with os.fdopen(_pipe[0]) as pipe:
        for line in pipe:
            name, moment = line.rstrip("\n").split("\t")
            marks.append((name, float(moment)))
    _pipe = None


def report() -> None:
    if not ENABLED or not marks:
        return
    begin = started()
    moments = [begin] + [moment for _, moment in marks]
    phases = [[name, (moment - before) * 1000] for (name, moment), before in zip(marks, moments)]
    total_ms = (moments[-1] - begin) * 1000
    peak_mb = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))) / 1024
    print(f"lab-trace: {'phase':<40} {'ms':>8}", file=sys.stderr)
    for name, ms in phases + [["total", total_ms]]:
        print(f"lab-trace: {name:<40} {ms:8.1f}", file=sys.stderr)
    print(f"lab-trace: {'peak memory of lab (MB)':<40} {peak_mb:8.1f}", file=sys.stderr)
    if os.environ.get("LAB_TRACE_FILE"):
        with open(os.environ["LAB_TRACE_FILE"], "w") as f:
            json.dump({"phases_ms": phases, "total_ms": total_ms, "peak_mb": peak_mb}, f)

