"""Putting the layers together: create a container, start it, wait for it, clean up.

The story in the order the kernel needs it is two functions: `start`, what the runtime does
around the fork, and `init_container`, what the child does between fork and exec. Each
chapter adds its steps there, through `step` (ARCHITECTURE.md lists them).

A chapter you have not written yet is skipped (on a terminal, lab says so), so that your
runtime runs with the chapters you have (chapter 03 half written is not: see enter_rootfs).
The tests of chapter NN set LAB_CHAPTER=NN: then chapters up to NN are required, and a
missing one is an error that names what to write.
"""
import os
import re
import signal
import sys
import time
from pathlib import Path
# (shutil is imported in the functions that use it: it loads bz2 and lzma, 2 ms a command)

from lab import (Conflict, LabError, cgroups, container_network, folders, health, images, logs, names, namespaces,
                 network, overlay, process, rootfs, seccomp, security, store, syscalls, trace, volumes)
from lab import exec as enter

SKIPPED: set[str] = set()    # chapters skipped in this run (the child inherits it at fork)
NOTED = sys.stderr.isatty()  # lab's stderr is a terminal: a skipped chapter is noted there (by the
                             # child too, whose stderr is a pipe to lab's: container.Stdio)
TOPICS = {"01": "namespaces", "02": "cgroups", "03": "rootfs", "04": "overlay", "05": "volumes",
          "06": "exec", "07": "engine", "08": "security", "09": "network", "10": "images"}
NOT_WRITTEN = object()       # what step() returns for a skipped step
MAX_ID = 2**31 - 1             # the largest uid or gid docker takes (-u, --group-add)


def step(chapter: str, function, *args, **kwargs):
    """Run one chapter's step and return its result; NOT_WRITTEN if that chapter is skipped.
    With LAB_TRACE=1, the step's time is recorded under its name (trace.py)."""
    try:
        result = function(*args, **kwargs)
        if trace.ENABLED:                   # (the name is made only when someone looks)
            trace.mark(f"{function.__module__.split('.')[-1]}.{function.__name__} ({chapter})")
        return result
    except NotImplementedError:
        if chapter <= os.environ.get("LAB_CHAPTER", "00"):
            raise
        if NOTED and chapter not in SKIPPED:
            print(f"lab: note: chapter {chapter} ({TOPICS[chapter]}) is not written yet: running without it",
                  file=sys.stderr)
        SKIPPED.add(chapter)
        return NOT_WRITTEN


def check_new_namespaces(host: dict[str, str]) -> None:
    """Refuse to go on in the host's own namespaces: set_hostname would rename the host,
    a mount would land on the host, bringing lo up would touch the host's network."""
    for kind, inode in host.items():
        if os.readlink(f"/proc/self/ns/{kind}") == inode:
            raise LabError(f"enter_namespaces() did not give the container a new {kind} namespace "
                           "(see chapters/01_namespaces/README.md); stopped before changing the host")


def check_private_mounts() -> None:
    """Refuse to go on while a mount of the container's is still shared with the host's: a
    mount made in it (its /proc, its root) would appear on the host too."""
    if shared := namespaces.shared_mounts():
        raise LabError(f"make_mounts_private() left {len(shared)} mounts shared with the host (first: "
                       f"{shared[0]}); see chapters/01_namespaces/README.md; stopped before mounting anything")


def environment(base: dict[str, str], overrides: list[str]) -> dict[str, str]:
    """base with -e K=V (and -e NAME, which passes on the host's value, as docker does) applied."""
    env = dict(base)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise LabError(f"invalid environment variable {item!r}: use -e NAME=VALUE")
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


def check_user(user: str | None, group_add=()) -> None:
    """-u NAME|UID[:GROUP|GID] and --group-add's groups: names or numbers, checked before anything
    is made (names are looked up when it starts, in the container's own /etc/passwd and /etc/group)."""
    if user is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?", user):
        raise LabError(f"invalid user {user!r}: use NAME, UID, NAME:GROUP or UID:GID")
    if any(not re.fullmatch(r"[A-Za-z0-9_.-]+", g) for g in group_add):
        raise LabError(f"invalid --group-add {group_add}: use group names or numbers")
    for number in [*(user or "").split(":"), *group_add]:
        if number.isdigit() and int(number) > MAX_ID:
            raise LabError(f"invalid user or group {number}: uids and gids go from 0 to {MAX_ID}, as docker's")


def check_terminal(interactive: bool, tty: bool, supervised: bool = False) -> None:
    """-it in the foreground needs a terminal to read from (supervised, the supervisor holds one)."""
    if tty and interactive and not supervised and not os.isatty(0):
        raise LabError("the input device is not a TTY: drop -t, or run lab from a terminal")


def create(image_ref: str, command: list[str], *, name=None, env=(), entrypoint=None, workdir=None, user=None,
           tmpfs=(), read_only=False, interactive=False, tty=False, detach=False, hostname=None, memory=None, cpus=None, pids_limit=None, mounts=(),
           cap_add=(), cap_drop=(), privileged=False, security_opt=(), log_driver=None, log_opts=(),
           group_add=(), ulimits=(), shm_size=None, cpu_shares=None, memory_swap=None, memory_reservation=None,
           oom_kill_disable=False, memory_swappiness=None, init=False, healthcheck=None, network_mode=None,
           publish=(), mac_address=None, network_aliases=(), driver_opts=None, pid_mode=None,
           uts_mode=None, links=(), ip=None, extra_hosts=(), device_cgroup_rules=(), cpuset_cpus=None,
           link_local_ips=(), auto_remove=False, publish_all=False, dns=(), dns_search=(), dns_options=(),
           more=None) -> store.Container:
    """Check everything, then write the container's record. Bad input creates nothing.
    more: fields of the engine's own (Labels, RestartPolicy...), in the record from its first
    write: `docker events`' create has them (docker compose follows its project by a label).
    publish_all (-P): every port the image exposes, or more's ExposedPorts (--expose), each on a
    free port of the host.

    entrypoint: None for the image's; a list replaces it, and the image's Cmd with it (docker's
    rule: a new entrypoint would not know what to do with the old arguments); [""] clears it."""
    limits = cgroups.Limits.parse(memory, cpus, pids_limit).tune(cpu_shares, memory_swap, memory_reservation,
                                                                 oom_kill_disable, memory_swappiness, cpuset_cpus)
    confinement = security.options(cap_add, cap_drop, privileged, security_opt, device_cgroup_rules)  # chapter 08
    log_config = logs.config(log_driver, log_opts)
    ulimits = [security.parse_ulimit(spec) for spec in ulimits]
    group_add = [str(g) for g in group_add]
    check_user(user, group_add)
    init = find_init() if init else None
    network_mode = container_network.parse_mode(network_mode)                  # chapter 09
    ports = container_network.parse_publish(publish)
    endpoint = container_network.parse_endpoint(mac_address, network_aliases, driver_opts, ip, link_local_ips)
    links = container_network.parse_links(links)
    extra_hosts = container_network.parse_extra_hosts(extra_hosts)
    resolver = container_network.parse_dns(dns, dns_search, dns_options)
    if extra_hosts and network_mode.startswith("container:"):
        raise LabError("--add-host is for a container with its own network, not --network container:... (it has the other's)")
    for flag, mode in (("--pid", pid_mode), ("--uts", uts_mode)):
        if mode not in (None, "", "host"):
            raise LabError(f"invalid {flag} {mode!r}: lab shares only the host's ({flag} host)")
    if uts_mode == "host" and hostname:
        raise LabError("conflicting options: --hostname and --uts host (the host's hostname): give one of them")
    for flags, given in (("-p publishes a port of", ports),
                         ("--mac-address, --network-alias, --ip and --link-local-ip are for", endpoint),
                         ("--link is for", links), ("--dns, --dns-search and --dns-option are for", resolver)):
        if given and not container_network.bridged(network_mode):
            raise LabError(f"{flags} a container on a bridge network, not with --network {network_mode}")
    if ip is not None and network_mode == network.DEFAULT:
        raise LabError("--ip is for a network of yours (lab network create --subnet ...), not the default bridge")
    shm_size = cgroups.parse_bytes(shm_size, "--shm-size", "--shm-size 128m") if shm_size not in (None, "", 0) else None
    image = images.find(image_ref)            # (a name, or an image id: docker run sha256:...)
    default = image["Config"].get("Cmd") or []
    if entrypoint is None:
        entrypoint = image["Config"].get("Entrypoint") or []
    else:
        entrypoint, default = [] if list(entrypoint) == [""] else list(entrypoint), []
    argv = entrypoint + (list(command) or default)
    if not argv:
        raise LabError(f"no command given and the image {image_ref} has none: add one after the image name")
    if not argv[0]:
        raise process.StartError(127, 'exec "": executable file not found in $PATH')
    cwd = workdir or image["Config"].get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise LabError(f"the working directory {cwd!r} is not absolute: use -w /some/path")
    check_terminal(interactive, tty, supervised=detach)
    if name is not None:
        names.check_name(name, "container")
    if hostname is not None and not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?", hostname):
        raise LabError(f"invalid hostname {hostname!r}: up to 64 letters, digits, '.' and '-'")
    image_env = dict(item.split("=", 1) for item in image["Config"].get("Env", []))
    home = images.default_home(image, user or image["Config"].get("User"))
    environ = environment({"PATH": images.DEFAULT_PATH, "HOME": home, **image_env}, list(env))   # (the image's own win)
    mounts = [volumes.parse(spec) for spec in mounts]                 # -v: chapter 05
    tmpfs = dict(volumes.parse_tmpfs(spec) for spec in tmpfs)
    targets = mounts + [{"Type": "tmpfs", "Destination": path} for path in tmpfs]
    for i, mount in enumerate(targets):
        volumes.check_target(mount["Destination"], [m["Destination"] for m in targets[:i]])
        if mount["Type"] in ("bind", "tmpfs", "volume"):
            found = images.in_layers(image, mount["Destination"][1:])       # (through no symlink of the image's)
            volumes.check_against_image(mount, found[1] if found else None)
    if publish_all and container_network.bridged(network_mode):
        for port in {**(image["Config"].get("ExposedPorts") or {}), **((more or {}).get("ExposedPorts") or {})}:
            ports.setdefault(container_network.port_key(port), [{"HostIp": "", "HostPort": ""}])
    healthcheck = health.merged(healthcheck, image["Config"].get("Healthcheck"))   # (--no-healthcheck: NONE)
    if healthcheck and healthcheck["Test"][0] != "NONE" and not detach:
        raise LabError("a healthcheck runs in a container's supervisor: use lab run -d (or docker run)")
    cid = store.new_id()
    hostname = hostname or (os.uname().nodename if "host" in (network_mode, uts_mode) else cid[:12])   # (host: its name, as docker's)
    environ = {"HOSTNAME": hostname, **container_network.link_environment(name or cid[:12], links), **environ}
    config = {"Name": name, "Image": image_ref, "ImageId": image["Id"], "Layers": image["Layers"],
              "Cmd": argv, "Entrypoint": entrypoint, "User": user or image["Config"].get("User") or None,
              "Env": [f"{k}={v}" for k, v in environ.items()],
              "WorkingDir": cwd, "Interactive": interactive, "Tty": tty, "Detach": detach, "Hostname": hostname,
              "Limits": vars(limits), "Mounts": mounts, "Tmpfs": tmpfs, "ReadOnly": read_only,
              "Security": confinement, "LogConfig": log_config, "GroupAdd": group_add, "Ulimits": ulimits,
              "ShmSize": shm_size, "Init": init, "Healthcheck": healthcheck, "NetworkMode": network_mode,
              "PortBindings": ports, "Endpoint": endpoint, "PidMode": pid_mode or None, "UTSMode": uts_mode or None,
              "Links": links, "ExtraHosts": extra_hosts or None, "AutoRemove": auto_remove,
              **({"PublishAllPorts": True} if publish_all else {}), **resolver, **(more or {})}
    # The files a container gets as /etc/hostname and /etc/hosts (bind-mounted, as docker does).
    etc = {"hostname": f"{hostname}\n",
           "hosts": f"{network.LOCALHOST}{container_network.extra_hosts_lines(config)}127.0.1.1\t{hostname}\n"}
    container = store.create_container(cid, config, etc)   # (with its own layer's folders: chapter 04)
    try:
        for mount in mounts:
            if mount["Type"] == "volume":
                volumes.create(mount["Name"])             # made on first use
    except BaseException as e:
        store.remove_container(container)                # (a full disk, say): nothing half-created
        if isinstance(e, FileNotFoundError):
            raise LabError(f"container {container.name} was removed (lab rm -f) while it was being created") from None
        raise
    return container


INIT = "/sbin/docker-init"      # --init: where the init goes in the container (docker's path)


def find_init() -> str:
    """--init: a small init for PID 1 (it reaps orphans and passes signals on), as docker's
    docker-init, which is tini. Its static build runs in any image."""
    import shutil
    found = shutil.which("tini-static")
    if found is None:
        raise LabError("--init needs tini's static build, tini-static (apt install tini; make setup installs it)")
    return found


def make_etc_files(root: str, names: list[str]) -> None:
    """Empty files in root's /etc where the image lacks them, for the hostname, hosts and
    resolv.conf that lab writes to be mounted on: made in the container's own layer, as the
    proc, sys and dev folders. Never through a symlink: before pivot_root, an image's absolute
    symlink leads to the host's files."""
    etc = f"{root}/etc"
    if os.path.islink(etc) or (os.path.lexists(etc) and not os.path.isdir(etc)):
        return
    for name in names:
        if not os.path.lexists(f"{etc}/{name}"):
            os.makedirs(etc, 0o755, exist_ok=True)
            os.close(os.open(f"{etc}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))


def etc_files(container: store.Container) -> list[tuple[str, Path]]:
    """The /etc files lab has written for the container: (hostname, hosts or resolv.conf, its file)."""
    return [(name, source) for name, source in (("hostname", container.hostname_file), ("hosts", container.hosts_file),
                                                ("resolv.conf", container.resolv_conf_file)) if source.exists()]


def etc_binds(root: str, etc: list[tuple[str, Path]]) -> list[tuple[str, str]]:
    """(lab's file, where it goes in root) for each of etc that root has as a regular file, never
    through a symlink of the image's."""
    return [(str(source), f"/etc/{name}") for name, source in etc
            if os.path.isfile(f"{root}/etc/{name}") and not any(map(os.path.islink, (f"{root}/etc", f"{root}/etc/{name}")))]


def enter_rootfs(container: store.Container) -> None:
    """In the child: the image's layers become /, with its own /proc, /sys, /dev, hostname, hosts."""
    layers = store.layer_folders(container.config["Layers"])
    root, upper, work = str(container.merged), str(container.upper), str(container.work)
    etc = etc_files(container)
    # The layers stacked under a writable upper folder of its own: the image never changes.
    # The mount is made in the container's mount namespace, so it goes away with it.
    lower = overlay.fit_one_page(layers, upper, work, container.config["Image"])
    if step("04", overlay.mount_overlay, lower, upper, work, root) is NOT_WRITTEN:
        if len(layers) != 1:
            raise LabError(f"the image {container.config['Image']} has {len(layers)} layers: "
                           "stacking them needs chapter 04 (overlay)")
        root = layers[0]                  # until then: the image's only layer, read-only,
        rootfs.bind_readonly(root)        # so that it never changes (pivot_root's bind keeps the flag)
    else:                                 # mount points an image may lack (a pulled one, from scratch):
        for folder in ("proc", "sys", "dev"):            # made in its own layer, as docker does
            if not os.path.lexists(f"{root}/{folder}"):
                os.mkdir(f"{root}/{folder}", 0o755)
        make_etc_files(root, [name for name, _ in etc])
    init = container.config.get("Init") and {"Type": "bind", "Name": None, "Source": container.config["Init"],
                                             "Destination": INIT, "RW": False}   # --init: tini, as PID 1
    volumes.mount_all(root, container.config["Mounts"], container.config.get("Tmpfs") or {}, init)
    # Chapter 03 not written yet is skipped (step() catches the NotImplementedError), unless what
    # you wrote of it has made the image / already: the host's files are out of reach from there.
    host_root = os.stat("/")
    try:
        rootfs.enter(root, etc_binds(root, etc), container.config["WorkingDir"], bool(container.config.get("ReadOnly")))
    except NotImplementedError as unwritten:
        if os.path.samestat(os.stat("/"), host_root):
            raise
        raise LabError(f"{unwritten}; your rootfs.enter() has made the image / already: lab can no longer "
                       "run without the rest of chapter 03") from None
    if container.config.get("ShmSize"):                  # --shm-size (the default is 64m)
        rootfs.resize_tmpfs("/dev/shm", container.config["ShmSize"])


class Stdio:
    """The child's stdin, stdout and stderr.

    Each is a pipe whose other end lab keeps (stdin only with -i: else it is empty), as
    docker's: in the foreground, lab run and lab exec copy them to and from their own
    (process.relay_pipes), a supervisor (run -d, the engine) to its log and its clients. Never
    one of lab's own descriptors: through /proc/self/fd/1 the container could open again the
    file lab's output goes to (and truncate it), and on lab's terminal change its line
    discipline or its size, for after the container too. With -t, a terminal that the child
    makes for itself (from its own /dev/ptmx, see terminal.py) and whose master side it sends
    back: `master`, one end for input and output.
    """

    def __init__(self, interactive: bool, tty: bool, size=None, foreground: bool = False):
        self.tty, self.interactive, self.master = tty, interactive, None
        self.given: dict[int, int] = {}      # the child's fd -> what it gets there
        self.ours: dict[str, int] = {}       # "stdin", "stdout", "stderr" -> the end we keep
        if tty:
            import socket
            from lab import terminal
            self.lab_end, self.child_end = socket.socketpair()
            self.size = terminal.packed_size(size) or terminal.window_size()   # (size: the engine's client's)
            return
        if interactive:
            self.given[0], self.ours["stdin"] = os.pipe()
        else:
            self.given[0] = os.open(os.devnull, os.O_RDONLY)
        self.ours["stdout"], self.given[1] = os.pipe()
        if foreground and together():        # one pipe for both: what it writes keeps its order
            self.given[2] = os.dup(self.given[1])
        else:
            self.ours["stderr"], self.given[2] = os.pipe()

    def kept(self) -> list[int]:
        """The descriptors in_child() uses (lab exec's helper keeps these and no other)."""
        return [*self.given.values(), *([self.child_end.fileno()] if self.tty else [])]

    def in_child(self) -> None:
        """In the child: a session of its own, always. In lab's (or whoever started lab), its
        `kill 0` would reach them all, and lab's terminal would be its controlling terminal
        too, into whose input TIOCSTI can push a line for the shell to run (man 2 ioctl_tty)."""
        for fd, source in self.given.items():
            os.dup2(source, fd)
        if self.tty:
            from lab import terminal
            terminal.attach_child(self.child_end, self.size)     # setsid(), then its own terminal
        else:
            os.setsid()

    def close(self) -> None:
        """In lab, once the child has exec'd (or failed): lab's copies of the child's ends."""
        for source in self.given.values():
            os.close(source)
        if self.tty:
            self.child_end.close()

    def close_ours(self, copy: bool = False) -> None:
        """Our ends, when the child could not be started; copy: what it wrote before it failed
        goes to lab's own stdout and stderr first (in the foreground: a chapter's note)."""
        for name, fd in self.ours.items():
            if copy and name != "stdin":
                process.drain(fd, 1 if name == "stdout" else 2)
            os.close(fd)
        if self.tty:
            self.lab_end.close()

    def receive_master(self) -> None:
        """With -t: the terminal's master side, which the child sends once it has made it."""
        if self.tty:
            from lab import terminal
            self.master = terminal.receive_master(self.lab_end)


def together() -> bool:
    """Whether lab's stdout and stderr are one file (a terminal, 2>&1): in the foreground the
    container then writes both into one pipe, and its errors come among its output where it
    wrote them, as they would on the terminal (two pipes are read one after the other)."""
    try:
        out, err = os.fstat(1), os.fstat(2)
    except OSError:
        return False
    return (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino)


def start(container: store.Container, foreground: bool = False):
    """Start the container's process and record it as running: its pid, its cgroup, its stdio.

    The parent's side, in order: the cgroup (with its device rules), what the child will
    apply (security), a new PID namespace for the next child, the fork; then wait for the
    child's exec (init_container is the child's side).
    """
    config = container.whole("start").config
    me = os.getpid()              # lab run, or the supervisor: who will record its start and end
    watcher = {"Watcher": me, "WatcherStartTime": store.process_start_time(me)}
    cgroup = step("02", cgroups.create, f"lab-{container.id[:12]}", cgroups.Limits(**config["Limits"]))
    if cgroup is NOT_WRITTEN:
        cgroup = None
    else:               # so that `lab rm -f` can clean it up (and no one else records its start)
        container.save_state(Cgroup={"Version": cgroup.version, "Paths": cgroup.paths}, **watcher)
    stdio = Stdio(config["Interactive"], config.get("Tty", False), config.get("ConsoleSize"), foreground)
    trace.before_fork()
    plan = folder = None
    try:
        policy = security_policy(config, cgroup)
        plan = step("09", container_network.prepare, container)    # its bridge, address, ports
        plan = container_network.Plan() if plan is NOT_WRITTEN else plan
        trace.mark("network")
        command = ([INIT, "--"] if config.get("Init") else []) + config["Cmd"]
        folder = birthplace(cgroup)                       # v2: the child is born in its cgroup
        fork = os.fork if folder is None else lambda: syscalls.fork_into_cgroup(folder)
        to_join = cgroup if folder is None else None       # v1: it joins it
        try:
            if config.get("PidMode") != "host":           # (--pid host: the host's processes)
                step("01", namespaces.unshare_pid_namespace)  # the child we fork next is PID 1
            pid = process.spawn(command, env_of(config, stdio.tty), config["WorkingDir"], fork=fork,
                                setup=lambda: init_container(container, to_join, policy, stdio, plan))
        finally:
            own_pid_namespace()                           # our next child is born beside us again
    except BaseException:
        if cgroup is not None:
            cgroup.destroy()
        container_network.disconnect(container)
        if foreground:
            stdio.close_ours(copy=True)
        raise
    finally:
        trace.after_exec()
        stdio.close()
        if plan is not None:
            plan.close()
        if folder is not None:
            os.close(folder)
    trace.mark("fork and exec")
    stdio.receive_master()
    container.save_state(Status="running", Paused=False, Pid=pid, PidStartTime=store.process_start_time(pid),
                         StartedAt=time.time(), Error="", **watcher)     # (Error: a failed start's, before)
    return pid, cgroup, stdio


def birthplace(cgroup) -> int | None:
    """The cgroup's folder, open, when the child can be born in it (cgroup v2 on Linux 5.7 or
    later): then it never moves. None: the child joins its cgroup after the fork."""
    if cgroup is None or cgroup.version != "v2" or syscalls.KERNEL < (5, 7):
        return None
    folder = step("02", cgroup.birthplace)
    return None if folder is NOT_WRITTEN else folder


def own_pid_namespace() -> None:
    """The PID namespace our children get is our own again. unshare(CLONE_NEWPID) made it the
    container's, for its PID 1; left so, a second unshare(CLONE_NEWPID) fails (EINVAL), and
    once the container has ended any fork fails (ENOMEM): the iptables that takes its published
    ports back, a supervisor's restart, lab build's next RUN step, an exec's helper. (Until a
    child is forked into it, the new namespace has no process, and pid_for_children no link.)"""
    try:
        pending = os.readlink("/proc/self/ns/pid_for_children")
    except FileNotFoundError:                  # (unshared, then the fork failed)
        pending = None
    if pending != os.readlink("/proc/self/ns/pid"):
        with open("/proc/self/ns/pid") as ours:
            syscalls.setns(ours.fileno(), syscalls.CLONE_NEWPID)


def security_policy(config: dict, cgroup):
    """Chapter 08's part of the parent: the device rules on the cgroup, and what the child
    will apply (its seccomp filter compiled here, where libseccomp and the cache are in sight)."""
    security = config.get("Security") or {}
    privileged, rules = security.get("Privileged", False), security.get("DeviceCgroupRules") or []
    if cgroup is not None and step("08", cgroup.allow_devices, privileged, rules) is NOT_WRITTEN:
        return None
    policy = policy_of(config, cgroup.cgroupfs_mounts() if cgroup else [])
    trace.mark("security policy")
    return policy


def policy_of(config: dict, cgroupfs: list, user: str | None = None) -> "security.Policy":
    """What the child applies: the container's options with its seccomp filter (from the cache)."""
    options = config.get("Security") or {"Capabilities": security.DEFAULT_CAPABILITIES}
    program = None if options.get("Privileged") else seccomp.filter_for(
        options.get("Seccomp"), set(options["Capabilities"]), store.seccomp_cache())
    return security.Policy(options, program, cgroupfs, user or config.get("User"), config.get("GroupAdd") or (),
                           config.get("Ulimits") or ())


def init_container(container: store.Container, cgroup, policy, stdio: "Stdio", plan: "container_network.Plan") -> None:
    """The child's side, between fork and exec, in the order the kernel needs. cgroup is the
    one it joins (None: it was born in it, or has none)."""
    kinds, flags = ["uts", "mnt", "net"], namespaces.CHILD_NAMESPACES
    if not plan.new_namespace:                       # --network host or container:NAME
        kinds, flags = [k for k in kinds if k != "net"], flags & ~syscalls.CLONE_NEWNET
    if container.config.get("UTSMode") == "host":    # --uts host: the host's hostname
        kinds, flags = [k for k in kinds if k != "uts"], flags & ~syscalls.CLONE_NEWUTS
    host_namespaces = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in kinds}
    if cgroup is not None:
        step("02", cgroup.join)                      # first: all it does from now on counts
    own_mounts = step("01", namespaces.enter_namespaces, flags) is not NOT_WRITTEN
    if own_mounts:                                   # hostname, network, mounts...
        check_new_namespaces(host_namespaces)
        namespaces.make_mounts_private()             # never skipped: the host's mounts depend on it
        check_private_mounts()
        if "uts" in kinds:
            step("01", namespaces.set_hostname, container.config["Hostname"])
        if plan.join_fd is not None:
            syscalls.setns(plan.join_fd, syscalls.CLONE_NEWNET)       # another container's network
        elif plan.new_namespace:
            namespaces.bring_up_loopback()
        if plan.endpoint is not None:
            network.without_ipv6("default")          # (its eth0 and the interfaces it gets later)
            step("09", network.connect, plan.endpoint)                # eth0, on the network's bridge
            if plan.more or plan.endpoint.link_local:                  # eth1...: network connect's
                container_network.plug_here(plan.endpoint, plan.more)
        folders.seal_imports()                       # (from now on / may be the image's: folders.py)
        if step("03", enter_rootfs, container) is NOT_WRITTEN:         # the image's files as /
            step("01", namespaces.mount_proc)        # or at least a /proc of its own
    stdio.in_child()                                 # its terminal comes from its own /dev/ptmx
    if policy is not None:
        step("08", security.apply, policy, own_mounts)   # last: what root in it may no longer do


def env_of(config: dict, tty: bool = False) -> dict[str, str]:
    """The command's environment: the container's, after TERM=xterm when it has a terminal (as
    docker's: vi, top, clear and less ask TERM what the terminal can do)."""
    env = {"TERM": "xterm"} if tty else {}
    env.update(item.split("=", 1) for item in config["Env"] if "=" in item)   # (the API's bare NAME: unset)
    return env


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
    container_network.disconnect(container)                      # its veth, port rules, address (chapter 09)
    stats = None if stats is NOT_WRITTEN else stats
    limit = container.config["Limits"]["memory"]
    oom = status == 137 and limit is not None and bool(stats and stats["OOMKills"])
    if oom and not container.config.get("Detach"):
        print(f"lab: the container ran out of memory (limit {limit >> 20}m) and was killed: exit status 137",
              file=sys.stderr)
    container.save_state(Status="exited", ExitCode=status, OOMKilled=oom, FinishedAt=time.time(), Pid=0, Paused=False,
                         Cgroup={**container.state.get("Cgroup", {}), "Stats": stats})


def run(image_ref: str, command: list[str], *, remove=False, sig_proxy=True, **options) -> int:
    """`lab run` in the foreground: create, start, wait; return the exit status the way docker
    does. The signals lab gets go to the container (docker's --sig-proxy); without sig_proxy (a
    build's step) they are lab's, and one that stops lab stops the container first. (`lab run
    -d` hands the container to a supervisor instead: supervisor.launch.)"""
    container = create(image_ref, command, auto_remove=remove, **options)
    trace.mark("image and container record")
    process.hold_signals()                   # a signal sent to lab from now on reaches the container
    try:
        pid, cgroup, stdio = start(container, foreground=True)
    except BaseException:
        store.remove_container(container)    # it never ran: leave nothing behind
        signal.pthread_sigmask(signal.SIG_UNBLOCK, process.FORWARDED)
        raise
    try:
        try:
            status = process.wait_for(pid, relay(stdio, pid), sig_proxy)
        except BaseException:             # lab stops while it waits (a build's Ctrl-C): the container first
            finish(container, process.end(pid), cgroup)
            raise
        trace.mark("the command runs (wait)")
        finish(container, status, cgroup)
    finally:
        if remove:
            store.remove_container(container)
    trace.mark("cleanup")
    trace.report()
    return status


def relay(stdio: Stdio, pid: int):
    """What lab does while the container's process pid runs: with -t, copy its terminal (see
    terminal.py); else its pipes (process.relay_pipes)."""
    if stdio.master is not None:
        from lab import terminal
        return lambda: terminal.relay(stdio.master, stdio.interactive)
    return lambda: process.relay_pipes(stdio.ours, pid)


def exec_in(container: store.Container, command: list[str], *, env=(), workdir=None, user=None,
            interactive=False, tty=False) -> int:
    """`lab exec`: run command inside the running container (its namespaces, cgroup and root)."""
    check_terminal(interactive, tty)
    stdio = Stdio(interactive, tty, foreground=True)
    process.hold_signals()
    try:
        pid = exec_start(container, command, stdio, env=env, workdir=workdir, user=user)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, process.FORWARDED)
        stdio.close_ours(copy=True)
        raise
    exec_id = os.urandom(32).hex()                     # (what docker events shows of it)
    for verb in ("exec_create", "exec_start"):
        store.record_event(container, store.exec_action(verb, command), execID=exec_id)
    status = process.wait_for(pid, relay(stdio, pid))
    store.record_event(container, "exec_die", execID=exec_id, exitCode=str(status))
    return status


def exec_start(container: store.Container, command: list[str], stdio: Stdio, *, env=(), workdir=None,
               user=None) -> int:
    """Start command in the container's namespaces, cgroup and root, with stdio; return its pid."""
    try:
        pid = spawn_inside(container, command, stdio, env, workdir, user)
    finally:
        stdio.close()                                  # the child's ends: it has them now
    stdio.receive_master()
    return pid


def spawn_inside(container: store.Container, command: list[str], stdio: Stdio, env, workdir, user=None) -> int:
    if not command:
        raise LabError("exec: requires a container and a command: lab exec CONTAINER CMD [ARG...]")
    if not command[0]:
        raise process.StartError(127, 'exec "": executable file not found in $PATH')     # (as run says it)
    container.whole("exec in")
    if container.state.get("Paused"):      # what joins its cgroup is frozen too, and would hang
        raise Conflict(f"container {container.name} is paused: unpause it before exec")
    cwd = workdir or container.config["WorkingDir"]
    if not cwd.startswith("/"):
        raise LabError(f"the working directory {cwd!r} is not absolute: use -w /some/path")
    environ = environment(env_of(container.config, stdio.tty), list(env))
    not_running = LabError(f"container {container.name} is not running (`lab ps -a` shows how it ended)")
    if not container.is_running():
        raise not_running
    check_user(user)
    policy = policy_of(container.config, [], user or None)
    try:
        namespaces = enter.open_namespaces(container.state["Pid"])
    except FileNotFoundError:                          # it ended just now
        raise not_running from None
    # The helper's stderr is the command's, which lab copies (a skipped chapter's note goes
    # there); with -t the command's is its terminal, not made yet: a pipe for the note alone.
    notes = os.pipe() if stdio.tty and NOTED else (None, None)
    try:
        return enter.spawn_inside(namespaces, container.cgroup_paths(), command, environ, cwd,
                                  setup=stdio.in_child,       # in its mounts: its own /dev/ptmx
                                  confine=lambda: step("08", security.apply, policy, False), keep=stdio.kept(),
                                  stderr=stdio.given.get(2, notes[1]))
    except process.StartError as e:        # a step in the container failed (-u's user not there...):
        if e.status != 125:                # docker's exec says 126, runc's "exec failed"
            raise
        raise process.StartError(126, str(e)) from None
    finally:
        for fd in namespaces.values():
            os.close(fd)
        if notes[0] is not None:           # (written before the helper forked the command)
            os.close(notes[1])
            process.drain(notes[0], 2)
            os.close(notes[0])


def signal_container(container: store.Container, sig: int) -> bool:
    """Send sig to the container's PID 1; False if it had ended already. A paused container
    is thawed after the signal: a frozen process acts on its signals only once thawed (v2
    lets a fatal signal through; v1's freezer not even SIGKILL)."""
    try:
        os.kill(container.state["Pid"], sig)
    except ProcessLookupError:
        return False
    store.record_event(container, "kill", signal=str(sig))      # (docker stop's signals too, as docker's)
    if container.state.get("Paused"):
        try:
            pause(container, False)
        except (LabError, OSError):          # its cgroup went while it thawed: it ended, and its
            if container.is_running():       # supervisor removed it (a fatal signal, as asked)
                raise
    return True


def kill(container: store.Container, sig: int) -> None:
    """Send sig to the container's PID 1 (SIGKILL ends the whole PID namespace). After SIGKILL,
    return once its end is recorded: whoever killed it may look at it next (docker kill does).

    A kill with what `stop` sends (SIGKILL, or the stop signal: TERM unless --stop-signal) is a
    stop: --restart does not bring the container back. Other signals (HUP: read your
    configuration again) ask something of a process that goes on; if it dies of one, it comes
    back."""
    container.whole("kill")                        # (damaged: whether it runs is unknown)
    if sig in (signal.SIGKILL, stop_signal(container)):
        stopped_by_user(container)
    if not container.is_running() or not signal_container(container, sig):
        raise LabError(f"container {container.name} is not running")
    if sig == signal.SIGKILL:
        wait_ended(container, 10)
        record_unwatched_end(container, 128 + signal.SIGKILL)


def stopped_by_user(container: store.Container) -> None:
    """Recorded before the signal: its supervisor must not restart it (--restart)."""
    if (container.config.get("RestartPolicy") or {}).get("Name", "no") != "no":
        container.save_state(StoppedByUser=True)      # (over the state on disk: see save_state)


def pause(container: store.Container, frozen: bool) -> None:
    """`docker pause` / `unpause`: freeze every process of the container in its cgroup."""
    if not container.is_running():
        raise Conflict(f"container {container.name} is not running")
    if bool(container.state.get("Paused")) == frozen:
        raise Conflict(f"container {container.name} is {'already' if frozen else 'not'} paused")
    paths = container.cgroup_paths()
    if not paths:
        raise LabError(f"container {container.name} has no cgroup (chapter 02): it cannot be paused")
    cgroups.Cgroup.from_paths(paths).freeze(frozen)
    container.save_state(Paused=frozen)


def stop(container: store.Container, timeout: float, sig: int | None = None) -> None:
    """`lab stop`: SIGTERM (or sig, or its --stop-signal), and SIGKILL if it has not ended after
    timeout seconds, as docker does.

    PID 1 of a PID namespace gets only the signals it has a handler for: a shell or a sleep
    as PID 1 ignores SIGTERM, and is killed when the timeout runs out.
    """
    container.whole("stop")                        # (damaged: whether it runs is unknown)
    stopped_by_user(container)
    if not container.is_running() and container.restarting():   # its supervisor waits to restart
        container.wait_for_supervisor(5)                         # it: it sees the stop, and ends
        container.reload()                             # (unless it had just started it again: below)
    if not container.is_running():
        return
    killed = False
    sig = sig or stop_signal(container)
    if signal_container(container, sig) and not wait_ended(container, timeout):
        killed = signal_container(container, signal.SIGKILL)
        wait_ended(container, 10)
    record_unwatched_end(container, 128 + signal.SIGKILL if killed else None)
    store.record_event(container, "stop")


def stop_signal(container: store.Container) -> int:
    """What `stop` sends first: the container's --stop-signal, or SIGTERM."""
    return process.parse_signal(container.config.get("StopSignal") or "TERM")


def record_unwatched_end(container: store.Container, status: int | None) -> None:
    """A container whose lab was killed: nobody else will record its end. Its exit status went
    to whoever inherited its PID 1 (the host's init); we know it only when we killed it."""
    container.reload()
    if container.state.get("Status") == "running" and not container.is_running() and not container.watched():
        container.save_state(Status="exited", ExitCode=status, FinishedAt=time.time(), Pid=0)
        destroy_cgroup(container)                      # (its supervisor would have: a start makes it again)


def destroy_cgroup(container: store.Container) -> None:
    """The container's cgroup, if it has one left: the one its state records, or the one lab
    names after it (its lab killed before recording it)."""
    paths = container.cgroup_paths() or cgroups.manager().named(f"lab-{container.id[:12]}").paths
    if paths:
        cgroups.Cgroup.from_paths(paths).destroy()


def remove(container: store.Container, force: bool = False) -> None:
    """`lab rm`: a running container only with force (killed first); then nothing of it is left."""
    if not force:
        container.whole("remove")
    if container.is_running() and not force:
        raise Conflict(f"container {container.name} is running: stop the container before removing "
                       "or force remove (lab rm -f)")
    if container.restarting() and not force:                                  # (--restart)
        raise Conflict(f"container {container.name} is restarting: stop the container before removing "
                       "or force remove (lab rm -f)")
    if not container.is_running() and container.has_supervisor():
        # Created: its supervisor waits for a start. End it (a start under way ends first: then
        # it is running, see below); it may also have ended just now.
        try:
            os.kill(container.state["Supervisor"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while container.has_supervisor() and not container.is_running() and time.monotonic() < deadline:
            time.sleep(0.01)
            container.reload()
    if container.is_running():
        if not force:
            raise Conflict(f"container {container.name} is running: stop the container before removing "
                       "or force remove (lab rm -f)")
        stopped_by_user(container)
        signal_container(container, signal.SIGKILL)
        container.wait_for_supervisor(10)              # the supervisor records the end: let it
        container.reload()
    destroy_cgroup(container)                          # its lab died before cleaning up: we do
    container_network.disconnect(container)
    store.remove_container(container)
    if container.config["ImageId"] and not store.image_path(container.config["ImageId"]).exists():
        # its image went first (rmi -f): its layers go with it
        from lab import layers
        with layers.locked():
            layers.delete_layers(images.layers_to_delete())


def wait_ended(container: store.Container, timeout: float) -> bool:
    """Wait until the container has ended and its end is recorded (or nobody is left to record it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.state.get("Status") != "running":
            return True
        if not container.is_running() and not container.watched():
            return True                                # its lab is gone: nobody will record it
        time.sleep(0.02)
    return False
