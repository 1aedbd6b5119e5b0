#!/usr/bin/env python3
"""Run a command on a new terminal, type lines into it, print what the terminal showed.

    python3 tools/transcript.py --type 'tty' --type 'exit' -- lab run -it busybox sh

How the README's interactive sessions (`lab run -it`, `lab exec -it`) were recorded: a real
pseudo-terminal of 24 x 80 (--cols to change), each typed line followed by Enter ("^C" types Ctrl-C), and the
output shown as a terminal would (no carriage returns, cursor queries or bracketed-paste switches).
"""
import argparse
import fcntl
import os
import pty
import re
import select
import struct
import termios
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--type", action="append", default=[], metavar="LINE", help='a line to type ("^C": Ctrl-C)')
    parser.add_argument("--wait", type=float, default=1.5, help="seconds to wait for output after each line")
    parser.add_argument("--cols", type=int, default=80, help="the terminal's width (80)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, args.cols, 0, 0))
        os.execvp(command[0], command)
    shown = b""

    def read(seconds: float) -> None:
        nonlocal shown
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:                  # the command ended: its terminal is closed
                    return
                if not chunk:
                    return
                shown += chunk
    read(args.wait + 1)
    for line in args.type:
        os.write(fd, b"\x03" if line == "^C" else line.encode() + b"\r")
        read(args.wait)
    _, status = os.waitpid(pid, 0)
    text = re.sub(r"\x1b\[(6n|\?2004[hl])", "", shown.decode(errors="replace").replace("\r", ""))
    print("$ " + " ".join(command))
    print(text.rstrip("\n"))
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    raise SystemExit(main())
