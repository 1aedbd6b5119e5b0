"""`lab doctor`: can this machine run the course? Each check says how to fix what fails."""
import os
import platform
import sys
import tempfile
from pathlib import Path

from lab import cgroups, layers, namespaces, syscalls

NAMESPACES = {"uts": syscalls.CLONE_NEWUTS, "pid": syscalls.CLONE_NEWPID, "mnt": syscalls.CLONE_NEWNS,
              "ipc": syscalls.CLONE_NEWIPC, "net": syscalls.CLONE_NEWNET,
              "cgroup": syscalls.CLONE_NEWCGROUP, "user": syscalls.CLONE_NEWUSER}
VM_HINT = "use the course VM (see README, 'The course VM')"


def in_child(work) -> bool:
    """Run work() in a forked child (so nothing it changes touches us); True if it succeeded."""
    pid = os.fork()
    if pid == 0:
        try:
            work()
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def cgroup_mode() -> tuple[str, str]:
    """('v2'|'hybrid'|'v1', the usable controllers)."""
    if cgroups.version() == "v2":
        controllers = cgroups.ROOT / cgroups.own_cgroups()[""].lstrip("/") / "cgroup.controllers"
        return "v2", controllers.read_text().strip() if controllers.exists() else ""
    # /proc/cgroups: name, hierarchy id (0 = not bound to a v1 hierarchy), cgroups, enabled
    rows = [line.split() for line in Path("/proc/cgroups").read_text().splitlines()[1:]]
    v1 = [name for name, hierarchy, _, enabled in rows if hierarchy != "0" and enabled == "1"]
    hybrid = any(m == f"{cgroups.ROOT}/unified" and t == "cgroup2" for m, t, _ in cgroups.mountinfo())
    return "hybrid" if hybrid else "v1", " ".join(v1)


def try_overlay():
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    with tempfile.TemporaryDirectory() as tmp:
        for d in ("lower", "upper", "work", "merged"):
            os.mkdir(f"{tmp}/{d}")
        syscalls.mount("overlay", f"{tmp}/merged", "overlay", 0,
                       f"lowerdir={tmp}/lower,upperdir={tmp}/upper,workdir={tmp}/work")
        syscalls.umount2(f"{tmp}/merged")


def checks():
    """Yield (ok, what, how to fix) for each check; ok is True, False, or None (just a note)."""
    yield os.geteuid() == 0, "running as root", "run it as root: sudo -E $(which lab) doctor"
    linux = platform.system() == "Linux"
    yield linux, f"{platform.system()} {platform.release()}", VM_HINT
    if not linux:
        return
    release = tuple(int(x) for x in platform.release().split(".")[:2] if x.isdigit())
    yield release >= (5, 4), f"kernel {platform.release()} (needs 5.4 or newer)", VM_HINT
    yield sys.version_info >= (3, 10), f"Python {platform.python_version()} (needs 3.10 or newer)", \
        "install python3.10+ and run `make setup` again"
    if os.geteuid() == 0:
        missing = [n for n, flag in NAMESPACES.items() if not in_child(lambda f=flag: syscalls.unshare(f))]
        yield not missing, "namespaces: " + (f"cannot create {', '.join(missing)}" if missing else ", ".join(NAMESPACES)), \
            "the kernel or its sandbox forbids them: " + VM_HINT
        yield in_child(try_overlay), "overlayfs mounts", "load it: modprobe overlay"
    mode, controllers = cgroup_mode()
    needed = [c for c in ("memory", "cpu", "pids") if c not in controllers.split()]
    yield not needed, f"cgroups {mode}, controllers: {controllers or 'none'}", \
        f"{', '.join(needed)} missing: enable them in the kernel command line, or " + VM_HINT
    propagation = "shared" if "/" in namespaces.shared_mounts() else "private"
    yield None, f"mount propagation of /: {propagation} (each container makes its own copy private: chapter 01)", ""
    binary = layers.busybox_binary()
    yield binary.is_file() and layers.is_static(binary), f"static busybox at {binary}", \
        "apt-get install busybox-static"


def main() -> int:
    print("lab doctor: can this machine run the course?")
    blocked = 0
    for ok, what, fix in checks():
        label = {True: "ok", False: "FAIL", None: "note"}[ok]
        print(f"  {label:<5} {what}" + (f"\n        -> {fix}" if ok is False else ""))
        blocked += ok is False
    print("Everything the course needs is here." if not blocked else f"{blocked} problem(s) block the course.")
    return 1 if blocked else 0
