"""Putting the layers together: create a container, start it, wait for it, clean up.

`start` is the whole story in the order the kernel needs it: what the runtime does around
the fork, and what the child does between fork and exec (`prepare_child`). Each chapter
adds its steps there.

A chapter you have not written yet is skipped (on a terminal, lab says so), so that your
runtime runs with the chapters you have. The tests of chapter NN set LAB_CHAPTER=NN: then
chapters up to NN are required, and a missing one is an error that names what to write.
"""
import os
import re
import signal
import sys
import time

from lab import LabError, cgroups, images, namespaces, overlay, process, rootfs, store

SKIPPED: set[str] = set()    # chapters skipped in this run (the child inherits it at fork)
NOT_WRITTEN = object()       # what step() returns for a skipped step


def step(chapter: str, function, *args):
    """Run one chapter's step and return its result; NOT_WRITTEN if that chapter is skipped."""
    try:
        return function(*args)
    except NotImplementedError:
        if chapter <= os.environ.get("LAB_CHAPTER", "00"):
            raise
        if sys.stderr.isatty() and chapter not in SKIPPED:
            print(f"lab: note: chapter {chapter} ({function.__module__.split('.')[-1]}) "
                  "is not written yet: running without it", file=sys.stderr)
        SKIPPED.add(chapter)
        return NOT_WRITTEN


def check_new_namespaces(host: dict[str, str]) -> None:
    """Refuse to go on in the host's own namespaces: set_hostname would rename the host,
    a mount would land on the host, bringing lo up would touch the host's network."""
    for kind, inode in host.items():
        if os.readlink(f"/proc/self/ns/{kind}") == inode:
            raise LabError(f"enter_namespaces() did not give the container a new {kind} namespace "
                           "(see chapters/01_namespaces/README.md); stopped before changing the host")


def environment(image: dict, overrides: list[str]) -> dict[str, str]:
    """The container's environment: the image's, then HOME, then -e K=V (HOSTNAME comes at create)."""
    env = dict(item.split("=", 1) for item in image["Config"].get("Env", []))
    env.setdefault("PATH", images.DEFAULT_PATH)
    env["HOME"] = "/root"
    for item in overrides:
        key, sep, value = item.partition("=")
        if not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise LabError(f"invalid environment variable {item!r}: use -e NAME=VALUE")
        if sep:
            env[key] = value
        elif key in os.environ:          # -e NAME passes the host's value on, as docker does
            env[key] = os.environ[key]
    return env


def create(image_ref: str, command: list[str], *, name=None, env=(), workdir=None,
           interactive=False, hostname=None, memory=None, cpus=None, pids_limit=None) -> store.Container:
    """Check everything, then write the container's record. Bad input creates nothing."""
    limits = cgroups.Limits.parse(memory, cpus, pids_limit)
    image = images.resolve(image_ref)
    entrypoint = image["Config"].get("Entrypoint") or []
    argv = entrypoint + (command or image["Config"].get("Cmd") or [])
    if not argv:
        raise LabError(f"no command given and the image {image_ref} has none: add one after the image name")
    if not argv[0]:
        raise process.StartError(127, 'exec "": executable file not found in $PATH')
    cwd = workdir or image["Config"].get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise LabError(f"the working directory {cwd!r} is not absolute: use -w /some/path")
    if name is not None and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name):
        raise LabError(f"invalid container name {name!r}: two or more letters, digits, '_', '.' "
                       "or '-', starting with a letter or digit")
    if hostname is not None and not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?", hostname):
        raise LabError(f"invalid hostname {hostname!r}: up to 64 letters, digits, '.' and '-'")
    environ = environment(image, list(env))
    config = {"Name": name, "Image": image_ref, "ImageId": image["Id"], "Layers": image["Layers"],
              "Cmd": argv, "Entrypoint": entrypoint,
              "WorkingDir": cwd, "Interactive": interactive, "Hostname": hostname,
              "Limits": vars(limits)}
    container = store.create_container(config)
    name = container.config["Hostname"] = hostname or container.id[:12]
    environ = {"HOSTNAME": name, **environ}
    container.config["Env"] = [f"{k}={v}" for k, v in environ.items()]
    store.write_json(container.path / "config.json", container.config)
    for folder in ("upper", "work", "merged"):           # the container's own layer (chapter 04)
        (container.path / folder).mkdir()
    # The files a container gets as /etc/hostname and /etc/hosts (bind-mounted, as docker does).
    (container.path / "hostname").write_text(f"{name}\n")
    (container.path / "hosts").write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                                          f"127.0.1.1\t{name}\n")
    return container


def enter_rootfs(container: store.Container, layers: list[str]) -> None:
    """In the child: the image's layers become /, with its own /proc, /sys, /dev, hostname, hosts."""
    root = str(container.path / "merged")
    upper, work = str(container.path / "upper"), str(container.path / "work")
    # The layers stacked under a writable upper folder of its own: the image never changes.
    # The mount is made in the container's mount namespace, so it goes away with it.
    if len(":".join(layers)) + len(upper) + len(work) > 4000:      # mount(2) takes one page of options
        raise LabError(f"the image {container.config['Image']} has too many layers ({len(layers)}) "
                       "for one overlay mount's options (4096 bytes): squash some of them")
    if step("04", overlay.mount_overlay, layers, upper, work, root) is NOT_WRITTEN:
        if len(layers) != 1:
            raise LabError(f"the image {container.config['Image']} has {len(layers)} layers: "
                           "stacking them needs chapter 04 (overlay)")
        root = layers[0]                  # until then: the image's only layer, read-only,
        rootfs.bind_readonly(root)        # so that it never changes (pivot_root's bind keeps the flag)
    for name in ("hostname", "hosts"):
        if os.path.isfile(f"{root}/etc/{name}"):          # the mount point must exist in the image
            rootfs.bind_file(str(container.path / name), f"{root}/etc/{name}")
    rootfs.pivot_root(root)
    rootfs.mount_kernel_filesystems()


def start(container: store.Container):
    """Start the container's process and record it as running; return its pid and cgroup."""
    config = container.config
    env = dict(item.split("=", 1) for item in config["Env"])
    stdin = None if config["Interactive"] else os.open(os.devnull, os.O_RDONLY)
    host_namespaces = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in ("uts", "mnt", "net")}
    layers = [str(images.layer_path(d)) for d in config["Layers"]]

    cgroup = step("02", cgroups.create, f"lab-{container.id[:12]}", cgroups.Limits(**config["Limits"]))
    if cgroup is NOT_WRITTEN:
        cgroup = None
    else:                                               # so that `lab rm -f` can clean it up
        container.save_state(Cgroup={"Version": cgroup.version, "Paths": cgroup.paths})

    def prepare_child():
        # In the child, after fork and before exec, in the order the kernel needs.
        if cgroup is not None:
            step("02", cgroup.join)                      # first: all it does from now on counts
        if step("01", namespaces.enter_namespaces) is not NOT_WRITTEN:   # hostname, network, mounts...
            check_new_namespaces(host_namespaces)
            namespaces.make_mounts_private()
            step("01", namespaces.set_hostname, config["Hostname"])
            namespaces.bring_up_loopback()
            if step("03", enter_rootfs, container, layers) is NOT_WRITTEN:   # the image's files as /
                step("01", namespaces.mount_proc)        # or at least a /proc of its own
        if stdin is not None:
            os.dup2(stdin, 0)                # without -i, the command reads an empty stdin

    try:
        step("01", namespaces.unshare_pid_namespace)     # the child we fork next is PID 1
        pid = process.spawn(config["Cmd"], env, config["WorkingDir"], setup=prepare_child)
    except BaseException:
        if cgroup is not None:
            cgroup.destroy()
        raise
    finally:
        if stdin is not None:
            os.close(stdin)
    container.save_state(Status="running", Pid=pid, PidStartTime=store.process_start_time(pid),
                         StartedAt=time.time())
    return pid, cgroup


def finish(container: store.Container, status: int, cgroup) -> None:
    """Record how the container ended (and what it used), and remove its cgroup."""
    stats = None
    if cgroup is not None:
        try:
            stats = step("02", cgroup.stats)
        except OSError:
            pass                       # gone already (lab rm -f): no counters to keep
        finally:
            cgroup.destroy()
    stats = None if stats is NOT_WRITTEN else stats
    limit = container.config["Limits"]["memory"]
    oom = status == 137 and limit is not None and bool(stats and stats["OOMKills"])
    if oom:
        print(f"lab: the container ran out of memory (limit {limit >> 20}m) and was killed: exit status 137",
              file=sys.stderr)
    container.save_state(Status="exited", ExitCode=status, OOMKilled=oom, FinishedAt=time.time(), Pid=0,
                         Cgroup={**container.state.get("Cgroup", {}), "Stats": stats})


def run(image_ref: str, command: list[str], *, remove=False, **options) -> int:
    """`lab run`: create, start, wait; return the exit status the way docker does."""
    container = create(image_ref, command, **options)
    process.hold_signals()                   # a signal sent to lab from now on reaches the container
    try:
        pid, cgroup = start(container)
    except BaseException:
        store.remove_container(container)    # it never ran: leave nothing behind
        signal.pthread_sigmask(signal.SIG_UNBLOCK, process.FORWARDED)
        raise
    try:
        status = process.wait_for(pid)
        finish(container, status, cgroup)
    finally:
        if remove:
            store.remove_container(container)
    return status
