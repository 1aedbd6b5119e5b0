"""lab: a container runtime you write yourself, one kernel layer per chapter.

    process.py     00  a container is a process: fork, exec, wait
    namespaces.py  01  what it can see            (coming)
    cgroups.py     02  what it may use            (coming)
    rootfs.py      03  which files are its /      (coming)
    overlay.py     04  images as layers           (coming)
    volumes.py     05  data that outlives it      (coming)
    exec.py        06  entering a running one     (coming)
    engine.py      07  the daemon docker talks to (coming; and daemon.py, relay.py)
    security.py    08  what root in it may still do (coming)
    network.py     09  how it reaches others      (coming)
    pull.py        10  images from a registry     (coming)

container.py puts the layers together; supervisor.py stays with each container that runs in
the background, relay.py is its I/O; daemon.py serves engine.py's API over HTTP. store.py is where everything lives
under LAB_ROOT, images.py reads images, layers.py and image_commands.py change them; views.py
shows records in docker's shapes; names.py checks every name before it becomes a path;
folders.py walks and deletes the folders that came from outside, never through their symlinks;
syscalls.py wraps the kernel calls Python lacks; seccomp.py and devices.py are chapter 08's
filter of system calls and list of devices; cli.py is the `lab` command. ARCHITECTURE.md
draws who imports whom, and the start sequence.
"""


class LabError(Exception):
    """Something lab itself could not do: shown as one `lab: error:` line, exit status 125."""


class NotFound(LabError):
    """No such container, image or volume (the engine answers 404)."""


class Conflict(LabError):
    """Not now: the name is taken, it is running, it is in use (the engine answers 409)."""


class StartError(Exception):
    """The child could not get as far as the command: `status` is what `lab run` exits with.
    (process.py raises it; it lives here so that every command can tell it apart without
    importing process.py, and signal with it: 1 ms of `lab ps`.)"""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
