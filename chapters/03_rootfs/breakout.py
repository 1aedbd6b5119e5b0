"""The chroot breakout, live.

    python3 chapters/03_rootfs/breakout.py chroot ROOT        # enter ROOT with chroot(2)
    python3 chapters/03_rootfs/breakout.py pivot_root ROOT    # ... with your lab/rootfs.py

A child process enters ROOT, shows what it sees, then tries the classic escape: chroot into
a subfolder while its working directory stays outside, climb with "..", chroot to ".".
ROOT must hold a tmp/ folder. Set LAB_IMPL=solutions to use the reference's pivot_root.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # (the course's
import lab_impl  # noqa: E402                              # root, for lab_impl: any python3 runs this file)

lab_impl.activate()
from lab import rootfs, syscalls  # noqa: E402


def what_is_here() -> str:
    try:
        with open("/etc/os-release") as f:
            return f.readline().strip()
    except FileNotFoundError:
        return "no /etc/os-release (the busybox image has none)"


def main(how: str, root: str) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            if how == "chroot":
                os.chroot(root)
                os.chdir("/")
            else:
                syscalls.unshare(syscalls.CLONE_NEWNS)      # a mount namespace to pivot in,
                syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)   # cut off from the host
                rootfs.pivot_root(root)
            print(f"{how}: inside, {what_is_here()}")
            os.chroot("tmp")
            for _ in range(64):
                os.chdir("..")
            os.chroot(".")
            print(f"{how}: after the escape, {what_is_here()}")
        except Exception as e:
            print(f"{how}: {type(e).__name__}: {e}")
        finally:
            sys.stdout.flush()
            os._exit(0)
    os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("chroot", "pivot_root"):
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
