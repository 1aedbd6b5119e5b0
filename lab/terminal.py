"""`-t`: a terminal for the container, as `docker run -it` gives one.

A terminal is a pty pair: the container's side (the slave, /dev/pts/N) is its stdin, stdout
and stderr and its controlling terminal, so that job control and Ctrl-C work; lab holds the
other side (the master) and copies bytes between it and your terminal, which it puts in raw
mode: every key, Ctrl-C included, goes to the container's terminal, whose line discipline
turns Ctrl-C into a SIGINT for the container's foreground process group.

The pty is opened in the child, from the container's own /dev/ptmx (chapter 03 mounts a new
devpts there), so that it is /dev/pts/0 inside, and its master is sent back to lab over a
Unix socket (SCM_RIGHTS), as runc does. See man 7 pty, man 4 tty_ioctl, man 7 unix.
"""
import fcntl
import os
import signal
import socket
import struct
import sys
import termios

TIOCSPTLCK = 0x40045431       # unlock a pty's slave (unlockpt(3))
TIOCGPTN = 0x80045430         # the slave's number (ptsname(3))


def window_size() -> bytes | None:
    """The size of lab's terminal (rows, columns...), packed as TIOCGWINSZ gives it, or None."""
    try:
        return fcntl.ioctl(sys.stdin.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None


def packed_size(size) -> bytes | None:
    """A console size as the engine gets it, [rows, columns] (docker run -t sends its terminal's),
    packed for TIOCSWINSZ; None for none, or [0, 0]."""
    return struct.pack("HHHH", size[0], size[1], 0, 0) if size and all(size) else None


def attach_child(sock: socket.socket, size: bytes | None) -> None:
    """In the child: open a pty, make it the controlling terminal and stdio, send its master to lab."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number, = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))
    os.setsid()                                     # a session of its own: the terminal can be its own
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    socket.send_fds(sock, [b"pty"], [master])
    os.close(master)
    sock.close()


def receive_master(sock: socket.socket) -> int:
    _, fds, _, _ = socket.recv_fds(sock, 16, 1)
    sock.close()
    if not fds:
        raise OSError("the container did not send its terminal")
    os.set_inheritable(fds[0], False)             # received descriptors are: not into later children
    return fds[0]


def relay(master: int, forward_input: bool) -> None:
    """Copy the container's terminal to stdout, and stdin to it (with -i), until it closes."""
    import select
    import tty
    saved = termios.tcgetattr(0) if forward_input and os.isatty(0) else None
    if saved:
        tty.setraw(0)                              # every key to the container, Ctrl-C included

    def resize(signum, frame):
        if size := window_size():
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    previous = signal.signal(signal.SIGWINCH, resize)
    sources = [master, 0] if forward_input else [master]
    try:
        while True:
            ready, _, _ = select.select(sources, [], [])
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:                    # EIO: every copy of the container's side is closed
                    data = b""
                if not data:
                    return
                write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    write_all(master, data)
                else:
                    sources.remove(0)              # your stdin ended; the container's terminal stays
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if saved:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


# Detach keys: typed on an attached input (docker attach, run -it, exec -it), they let the
# client go and leave the container running. docker's default is ctrl-p,ctrl-q.
DETACH_KEYS = "ctrl-p,ctrl-q"
CONTROL = "@abcdefghijklmnopqrstuvwxyz[\\]^_"      # ctrl-@ is byte 0, ctrl-a 1, ... ctrl-_ 31


def detach_keys(text: str) -> bytes:
    """'ctrl-p,ctrl-q' -> b'\\x10\\x11' (--detach-keys: ctrl-X or a single character each)."""
    keys = b""
    for key in text.split(","):
        if len(key) == 6 and key.startswith("ctrl-") and key[5] in CONTROL:
            keys += bytes([CONTROL.index(key[5])])
        elif len(key) == 1 and key.isprintable():
            keys += key.encode()
        else:
            raise ValueError(f"invalid detach keys {text!r}: use ctrl-X or single characters, "
                             "separated by commas (e.g. ctrl-p,ctrl-q)")
    return keys


class Escape:
    """Watches an attached input for the detach keys. Bytes that may begin them are held back
    until it is clear whether they do (then they are dropped, or passed on after all)."""

    def __init__(self, keys: bytes):
        self.keys, self.held = keys, b""

    def scan(self, data: bytes) -> tuple[bytes, bool]:
        """(what to pass on, whether the keys were typed: then nothing after them counts)."""
        out = b""
        for byte in data:
            candidate = self.held + bytes([byte])
            if self.keys.startswith(candidate):
                self.held = candidate
                if candidate == self.keys:
                    return out, True
            else:
                out += self.held
                self.held = b""
                if self.keys.startswith(bytes([byte])):
                    self.held = bytes([byte])
                else:
                    out += bytes([byte])
        return out, False
