"""Chapter 07, containers beyond `docker run`: what docker clients ask of a container they have.

engine.py walks `docker run` through the runtime. This module answers the other questions
clients ask of containers, each with a piece of the runtime the course has built:

  - looking into one: `docker ps` (with filters), `top` (its cgroup's processes, read from
    /proc), `stats` (its cgroup's counters), `diff` (its upper layer, chapter 04)
  - its files: `cp` both ways and `export`, from inside its own root
  - changing one: `rename`, `update`, `pause`/`unpause` (the cgroup freezer), `restart`,
    `commit`; tidying up: `container prune`

Each handler gets the request (daemon.Request) and returns (HTTP status, JSON body), or
answers itself (a stream).
"""
import errno
import json
import os
import re
import stat
import tarfile
import time
from pathlib import Path

from lab import LabError, NotFound, cgroups, container, folders, image_commands, images, layers, names, overlay, rootfs, store, syscalls, views, volumes
from lab.api import (CONFIG_KINDS, HOST_KINDS, ApiError, check_filters, check_kinds, container_sizes, container_summary,
                     filters, has_labels, restart_policy)
from lab.container_network import port_key
from lab.engine import start_container, stop_signal, stop_timeout

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")          # /proc's unit of CPU time


# --- docker ps


STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
COMMIT_CONFIG = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels", "ExposedPorts", "StopSignal")


def ancestor(ref: str) -> dict | None:
    """ps's ancestor=REF: the image it names (NAME[:TAG], an id or a prefix of it), if there is one."""
    try:
        return images.find(ref)
    except LabError:
        return None


def descends(config: dict, image: dict | None) -> bool:
    """The container's image is image, or was built on it (its layers come first), as docker's
    ancestor filter takes it."""
    if image is None:
        return False
    layers = image["Layers"]
    return config["ImageId"] == image["Id"] or bool(layers) and config["Layers"][:len(layers)] == layers


def list_containers(req):
    """GET /containers/json (docker ps): filters id, name (a regular expression, as docker's:
    name=^web$), label, status, ancestor, exited, before and since (another container: made
    before it, after it), network, volume (its name or where it is mounted), publish and expose
    (a port: 80, 80/tcp), health (starting, healthy, unhealthy, none)."""
    wanted = filters(req)
    check_filters(wanted, ("id", "name", "label", "status", "ancestor", "exited", "before", "since", "network",
                           "volume", "publish", "expose", "health"))
    if bad := [value for value in wanted.get("status", []) if value not in STATUSES]:
        raise ApiError(400, f"invalid filter 'status={bad[0]}': a status is one of {', '.join(STATUSES)}")
    if bad := [value for value in wanted.get("exited", []) if not value.lstrip("-").isdigit()]:
        raise ApiError(400, f"invalid filter 'exited={bad[0]}': an exit status is a number")
    if bad := [value for value in wanted.get("health", []) if value not in ("starting", "healthy", "unhealthy", "none")]:
        raise ApiError(400, f"invalid filter 'health={bad[0]}': starting, healthy, unhealthy or none")
    made = {ref: store.find_container(ref).config["Created"] for ref in wanted.get("before", []) + wanted.get("since", [])}
    ancestors = {ref: ancestor(ref) for ref in wanted.get("ancestor", [])}
    shown = []
    limit = req.number("limit", -1, integer=True)     # (ps -n N, ps -l: the last N made, whatever their state)
    for c in store.list_containers():
        row = container_summary(c)
        if not (req.flag("all") or limit > 0 or c.is_running() or wanted.get("status")):
            continue
        image = c.config["Image"]
        networks = row["NetworkSettings"]["Networks"] or {}
        published = set(c.config.get("PortBindings") or {})
        checks = {"id": lambda v: c.id.startswith(v),
                  "name": lambda v: name_matches(v, c.name),
                  "status": lambda v: v == row["State"],
                  "ancestor": lambda v: v in (image, image.split(":")[0]) or descends(c.config, ancestors[v]),
                  "exited": lambda v: row["State"] == "exited" and str(c.state.get("ExitCode")) == v,
                  "before": lambda v: c.config["Created"] < made[v], "since": lambda v: c.config["Created"] > made[v],
                  "network": lambda v: v in networks or any(n.get("NetworkID", "").startswith(v) for n in networks.values()),
                  "volume": lambda v: any(v in (m.get("Name"), m.get("Destination")) for m in row["Mounts"]),
                  "publish": lambda v: port_key(v) in published,
                  "expose": lambda v: port_key(v) in published | set(c.config.get("ExposedPorts") or {}),
                  "health": lambda v: (c.state.get("Health") or {}).get("Status", "none") == v}
        if all(any(checks[key](v) for v in values) for key, values in wanted.items() if key in checks) \
                and has_labels(c.config.get("Labels") or {}, wanted.get("label", [])):
            shown.append(row | (container_sizes(c) if req.flag("size") else {}))   # (walks its upper folder)
    return 200, shown[:limit] if limit > 0 else shown


def name_matches(pattern: str, name: str) -> bool:
    """docker ps -f name=PATTERN: the name, or a regular expression found in it (or in "/" and
    it, docker's own form: name=^/web$); one that is no regular expression matches only itself."""
    try:
        return pattern in (name, "/" + name) or bool(re.search(pattern, name) or re.search(pattern, "/" + name))
    except re.error:
        return False


# --- looking into a container

def running(ref: str) -> store.Container:
    c = store.find_container(ref)
    if not c.is_running():
        raise ApiError(409, f"container {c.name} is not running")
    return c


def cgroup_of(c: store.Container) -> cgroups.Cgroup:
    paths = c.cgroup_paths()
    if not paths:
        raise ApiError(409, f"container {c.name} has no cgroup (chapter 02 not written?)")
    return cgroups.Cgroup.from_paths(paths)


def get_top(req):
    """GET /containers/{id}/top (docker top): its processes, as `ps -ef` shows them on the host.
    They are the processes in its cgroup; their PIDs are the host's. With ps options (docker top
    NAME -o pid,args), the host's ps shows them, and its lines of those PIDs are kept."""
    c = running(req.params[0])
    pids = cgroup_of(c).processes()
    if req.query.get("ps_args"):
        answer = ps_lines(req.query["ps_args"], set(pids))
    else:
        answer = {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
                  "Processes": [row for pid in pids if (row := ps_row(pid))]}
    store.record_event(c, "top")
    return 200, answer


def ps_lines(options: str, pids: set[int]) -> dict:
    """The host's `ps OPTIONS`, cut into its columns (the last takes the rest of the line), only
    the rows of pids: docker's way, which needs a PID column to know them."""
    import shlex
    import subprocess
    shown = subprocess.run(["ps", *shlex.split(options)], capture_output=True, text=True, timeout=30)
    lines = shown.stdout.splitlines()
    if shown.returncode != 0 or not lines:
        raise ApiError(500, f"ps {options}: {shown.stderr.strip() or 'printed nothing'}")
    titles = lines[0].split()
    if "PID" not in titles:
        raise ApiError(500, f"Couldn't find PID field in ps output (ps {options}: add pid to its columns)")
    at = titles.index("PID")
    rows = [line.split(None, len(titles) - 1) for line in lines[1:]]
    return {"Titles": titles, "Processes": [row for row in rows if row[at].isdigit() and int(row[at]) in pids]}


def ps_row(pid: int) -> list[str] | None:
    """One line of ps -ef, from /proc/PID (man 5 proc); None if the process has gone."""
    import pwd
    try:
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines())
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:-1]
    except (FileNotFoundError, ProcessLookupError):
        return None
    uid = int(status["Uid"].split()[0])
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    tty, cpu = int(fields[4]), (int(fields[11]) + int(fields[12])) // CLOCK_TICKS
    major, minor = (tty >> 8) & 0xfff, (tty & 0xff) | ((tty >> 12) & 0xfff00)
    started = boot_time() + int(fields[19]) / CLOCK_TICKS
    command = " ".join(a.decode(errors="replace") for a in argv) or f"[{status['Name'].strip()}]"
    return [user, str(pid), status["PPid"].strip(), "0", time.strftime("%H:%M", time.localtime(started)),
            f"pts/{minor}" if major == 136 else "?", time.strftime("%H:%M:%S", time.gmtime(cpu)), command]


def boot_time() -> float:
    with open("/proc/stat") as f:
        return float(next(line for line in f if line.startswith("btime ")).split()[1])


def get_stats(req):
    """GET /containers/{id}/stats (docker stats): its cgroup's counters, once or every second.
    CPU % needs two readings: the client divides the container's CPU time between them by the
    whole machine's (system_cpu_usage); without one-shot, a single answer waits a second for it."""
    c = store.find_container(req.params[0])
    if req.query.get("stream", "1").lower() in ("0", "false"):
        before = None if req.flag("one-shot") else reading(c, None)
        if before:
            time.sleep(1)
        return 200, reading(c, before)
    out = req.stream("application/json", chunked=True)
    before = None
    while True:
        now = reading(c, before)
        out.write(json.dumps(now).encode() + b"\n")
        out.flush()
        c.reload()
        if not c.is_running():
            return
        before = now
        time.sleep(1)


def reading(c: store.Container, before: dict | None) -> dict:
    """One answer of the stats endpoint, in docker's shape (zeros for a stopped container)."""
    cpu, memory, pids, networks = {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}, {}, {}, {}
    if c.is_running():
        networks = interfaces(c.state["Pid"])
        cgroup = cgroup_of(c)
        try:
            counters, now = cgroup.stats(), cgroup.usage()
        except OSError:                             # it ended meanwhile
            counters = None
        if counters:
            limits = c.config.get("Limits", {})
            cpu = {"cpu_usage": {"total_usage": counters["CpuUsageNs"]}, "system_cpu_usage": machine_cpu_ns(),
                   "online_cpus": os.cpu_count(),
                   "throttling_data": {"periods": counters["CpuPeriods"],
                                       "throttled_periods": counters["CpuThrottled"], "throttled_time": 0}}
            memory = {"usage": now["memory"], "max_usage": counters["MemoryPeak"], "stats": {},
                      "limit": limits.get("memory") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}
            pids = {"current": now["pids"], **({"limit": limits["pids"]} if limits.get("pids") else {})}
    return {"id": c.id, "name": "/" + c.name, "read": views.iso_ns(time.time_ns()),
            "preread": before["read"] if before else "0001-01-01T00:00:00Z",
            "cpu_stats": cpu, "precpu_stats": before["cpu_stats"] if before else {"cpu_usage": {"total_usage": 0},
                                                                                  "throttling_data": {}},
            "memory_stats": memory, "pids_stats": pids, "blkio_stats": {}, "num_procs": 0,
            "storage_stats": {}, "networks": networks}


NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", None, None, None, None,
              "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")


def interfaces(pid: int) -> dict:
    """The counters of the interfaces in the container's network namespace (lo; eth0... on a network),
    from /proc/PID/net/dev, which shows the namespace of that process."""
    found = {}
    try:
        lines = open(f"/proc/{pid}/net/dev").read().splitlines()[2:]
    except OSError:                                 # it ended meanwhile
        return {}
    for line in lines:
        name, _, numbers = line.partition(":")
        found[name.strip()] = {key: int(n) for key, n in zip(NET_FIELDS, numbers.split()) if key}
    return found


def machine_cpu_ns() -> int:
    """The whole machine's CPU time since boot (the first line of /proc/stat), in nanoseconds."""
    with open("/proc/stat") as f:
        ticks = sum(int(x) for x in f.readline().split()[1:8])
    return ticks * 1_000_000_000 // CLOCK_TICKS


def get_changes(req):
    """GET /containers/{id}/changes (docker diff): what its upper layer holds (chapter 04).
    Kind 0: changed (it is in the image too), 1: added, 2: deleted (a whiteout, a 0/0 device)."""
    c = store.find_container(req.params[0])
    image = {"Layers": c.config.get("Layers", [])}
    found = []
    for path in folders.below(c.upper):
        inside = "/" + os.path.relpath(path, c.upper)
        info = os.lstat(path)
        if overlay.is_whiteout(info):
            kind = 2
        else:
            kind = 0 if images.in_layers(image, inside[1:]) else 1     # (through no symlink of the image's)
        found.append({"Path": inside, "Kind": kind})
    return 200, sorted(found, key=lambda change: change["Path"])


# --- files: docker cp (both ways), docker export

def in_root(c: store.Container, work, *args, files_only: bool = False):
    """work(*args) in a child process whose / is the container's, so that its symlinks and
    its `..` lead nowhere else; return what work returned (JSON, through a pipe). A running
    container's root is /proc/PID/root (its volumes and /proc included). A created or ended one's
    layers and upper folder are mounted as they are when it runs, and its volumes on them, in a
    mount namespace of the child's own: the mounts end with the child. files_only (docker export): its layers and upper
    folder, read-only (upper as the top lower layer), running or not."""
    c.whole("reach the files of")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            if c.is_running() and not files_only:
                folders.chroot_into(f"/proc/{c.state['Pid']}/root")
            else:
                syscalls.unshare(syscalls.CLONE_NEWNS)
                syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
                layers = overlay.fit_one_page(store.layer_folders(c.config["Layers"]),
                                              str(c.upper), str(c.work), c.config["Image"])
                if files_only:
                    syscalls.mount("overlay", str(c.merged), "overlay", syscalls.MS_RDONLY,
                                   f"lowerdir={c.upper}:{':'.join(reversed(layers))}")
                else:
                    overlay.mount_overlay(layers, str(c.upper), str(c.work), str(c.merged))
                    for mount in c.config.get("Mounts", []):     # (docker cp reaches volumes too)
                        if mount["Type"] == "volume":
                            volumes.create(mount["Name"])         # (made on first use)
                    volumes.mount_all(str(c.merged), [{**m, "CopyData": False} for m in c.config.get("Mounts", [])], {})
                    for source, target in container.etc_binds(str(c.merged), container.etc_files(c)):
                        rootfs.bind_file(source, str(c.merged) + target)      # lab's /etc files (docker's too)
                folders.chroot_into(str(c.merged))
            answer = {"ok": work(*args)}
            status = 0
        except FileNotFoundError as e:            # (docker's words)
            answer = {"error": f"Could not find the file {e.filename} in container {c.name}", "status": 404}
        except OSError as e:
            answer = {"error": f"{c.name}: {e.filename}: {e.strerror}" if e.filename else f"{c.name}: {e}", "status": 400}
        except Exception as e:
            answer = {"error": f"{c.name}: {e}", "status": 400}
        finally:
            with os.fdopen(write_end, "w") as pipe:
                json.dump(answer, pipe)
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        answer = json.loads(pipe.read() or '{"error": "the helper process died", "status": 500}')
    os.waitpid(pid, 0)
    if "error" in answer:
        raise ApiError(answer["status"], answer["error"])
    return answer["ok"]


def path_stat(path: str) -> dict:
    """What docker's X-Docker-Container-Path-Stat header says of a path (inside the root)."""
    info = os.lstat(path)
    mode = stat.S_IMODE(info.st_mode) | (0x80000000 if stat.S_ISDIR(info.st_mode) else 0) | \
        (0x08000000 if stat.S_ISLNK(info.st_mode) else 0)           # Go's os.ModeDir, os.ModeSymlink
    return {"name": os.path.basename(path.rstrip("/")) or "/", "size": info.st_size, "mode": mode,
            "mtime": views.iso_ns(info.st_mtime_ns), "linkTarget": os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""}


def write_tar(path: str, out, whole: bool = False) -> None:
    """A tar of path (its own name at the top; whole: the whole root, names relative to it) into
    out, the answer's body (chunked: should this fail half-way, the body lacks its last chunk,
    and the client reports the tar as cut short instead of taking it as whole)."""
    with tarfile.open(fileobj=out, mode="w|") as tar:
        if whole:
            for name in sorted(os.listdir("/")):
                add_tree(tar, "/" + name, name)
        else:
            add_tree(tar, path, os.path.basename(path.rstrip("/")) or ".")
    out.flush()


def add_tree(tar: tarfile.TarFile, path: str, arcname: str) -> None:
    """tar.add(path, arcname), and all below it, without recursing (tarfile.add recurses), each
    file as what was opened (overlay.add_entry: the container may swap a file for a device node)."""
    overlay.add_entry(tar, path, arcname)
    if os.path.isdir(path) and not os.path.islink(path):
        for inside in folders.below(path):
            overlay.add_entry(tar, inside, os.path.join(arcname, os.path.relpath(inside, path)))


def archive_path(req) -> str:
    path = req.query.get("path", "")
    if not path.startswith("/"):
        raise ApiError(400, "path must be absolute (inside the container): docker cp CONTAINER:/PATH DEST")
    return path


def stat_header(c: store.Container, path: str) -> dict:
    """docker cp asks what path is first: base64 of path_stat's JSON, in a header."""
    import base64
    return {"X-Docker-Container-Path-Stat": base64.b64encode(json.dumps(in_root(c, path_stat, path)).encode()).decode()}


def get_archive(req):
    """GET /containers/{id}/archive?path=P (docker cp CONTAINER:P DEST): a tar of P."""
    c, path = store.find_container(req.params[0]), archive_path(req)
    out = req.stream("application/x-tar", chunked=True, headers=stat_header(c, path))
    out.flush()
    in_root(c, write_tar, path, out)
    store.record_event(c, "archive-path")


def head_archive(req):
    """HEAD /containers/{id}/archive?path=P: only the stat header (docker cp asks first)."""
    c, path = store.find_container(req.params[0]), archive_path(req)
    return 200, None, stat_header(c, path)


def put_archive(req):
    """PUT /containers/{id}/archive?path=DIR (docker cp SRC CONTAINER:DIR): unpack the tar in
    DIR, with tarfile's "data" filter: no member may land outside DIR, nor be a device node.
    (The tar is an upload, daemon.py: in a file, whatever its size.)"""
    c, path = store.find_container(req.params[0]), archive_path(req)
    if req.flag("copyUIDGID"):
        raise ApiError(400, "lab does not support docker cp -a: copy without it (files keep the owners in the tar)")
    in_root(c, unpack, path, req.upload)
    store.record_event(c, "extract-to-dir")
    return 200, None


class Unpacker(tarfile.TarFile):
    """tarfile's extraction, but each file is written as a new one: what the container has at
    its path (a device node it made, of the host's disk say) is replaced, never written into."""

    def makefile(self, tarinfo, targetpath):
        with open(folders.new_file(targetpath), "wb") as target:     # (a folder there: one line)
            self.fileobj.seek(tarinfo.offset_data)
            tarfile.copyfileobj(self.fileobj, target, tarinfo.size, tarfile.ReadError, self.copybufsize)


def unpack(folder: str, upload) -> None:
    """Every member checked first (Python before 3.11.4, as Debian 12's, has no tarfile filter):
    no absolute name, no `..` out of folder, no hard link to outside it, no device node."""
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise ValueError(f"extraction point is not a directory: {folder}")        # (docker's words)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", folder)
    base = os.path.normpath(folder)
    with Unpacker.open(fileobj=upload) as tar:
        members = tar.getmembers()
        for member in members:
            names_in_it = [member.name] + ([member.linkname] if member.islnk() else [])
            for name in names_in_it:
                target = os.path.normpath(os.path.join(base, name))
                if name.startswith("/") or os.path.commonpath([base, target]) != base:
                    raise ValueError(f"the archive's {name!r} would land outside {folder}")
            if member.isdev():
                raise ValueError(f"the archive's {member.name!r} is a device node: lab does not copy those")
        tar.extractall(base, members, numeric_owner=True,          # (the owners' numbers: docker's)
                       **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def get_export(req):
    """GET /containers/{id}/export (docker export): its whole filesystem, one tar."""
    c = store.find_container(req.params[0]).whole("export")         # (before the answer's headers)
    out = req.stream("application/x-tar", chunked=True)
    out.flush()
    in_root(c, write_tar, "/", out, True, files_only=True)
    store.record_event(c, "export")


# --- changing a container

def post_rename(req):
    c = store.find_container(req.params[0])
    store.rename_container(c, names.check_name(req.query.get("name", "").removeprefix("/"), "container"))
    return 204, None


UPDATABLE = {"Memory", "NanoCpus", "PidsLimit", "CpuShares", "MemorySwap", "MemoryReservation", "RestartPolicy"}


def post_update(req):
    """POST /containers/{id}/update (docker update): new limits, written into the cgroup at once
    if it runs (and kept for its next start), and a new restart policy."""
    c = store.find_container(req.params[0]).whole("update")
    body = req.json()
    check_kinds(body, {key: kind for key, kind in HOST_KINDS.items() if key in UPDATABLE})
    for key, value in body.items():
        if key not in UPDATABLE and value not in (None, "", 0, False, [], {}):
            raise ApiError(400, f"lab does not support docker update of {key}: only -m, --cpus, --pids-limit, "
                           "--cpu-shares, --memory-swap, --memory-reservation and --restart")
    old = c.config.get("Limits", {})
    given = lambda key, was: body.get(key) or was                               # noqa: E731
    memory = given("Memory", old.get("memory"))
    lifted = body.get("PidsLimit") is not None and body["PidsLimit"] <= 0      # (-1 or 0: no limit, as docker's)
    limits = cgroups.Limits.parse(f"{memory}b" if memory else None,
                                  body["NanoCpus"] / 1e9 if body.get("NanoCpus") else old.get("cpus"),
                                  None if lifted else body.get("PidsLimit") or old.get("pids"))
    limits.tune(given("CpuShares", old.get("cpu_shares")), given("MemorySwap", old.get("memory_swap")),
                given("MemoryReservation", old.get("memory_reservation")), old.get("oom_kill_disable", False),
                old.get("memory_swappiness"), old.get("cpuset_cpus"))
    policy = restart_policy({"RestartPolicy": body["RestartPolicy"], "AutoRemove": c.config.get("AutoRemove")}) \
        if (body.get("RestartPolicy") or {}).get("Name") else c.config.get("RestartPolicy")
    if c.is_running():
        cgroup = cgroup_of(c)
        memsw = cgroup.dirs.get("memory", Path("/nonexistent")) / "memory.memsw.limit_in_bytes"
        if memory and memsw.exists():     # v1 keeps memory+swap >= memory: lift it first, set_limits sets both
            cgroups.write(memsw, -1)
        cgroup.set_limits(limits)
        cgroup.set_tuning(limits)
        if lifted:                                # (set_limits writes only a limit that is set)
            cgroups.write(cgroup.dirs.get("pids", cgroup.dirs.get("unified")) / "pids.max", "max")
    c.config.update(Limits=vars(limits), RestartPolicy=policy)
    c.save_config()
    store.record_event(c, "update")
    return 200, {"Warnings": []}


def post_pause(req):
    container.pause(store.find_container(req.params[0]), True)
    return 204, None


def post_unpause(req):
    container.pause(store.find_container(req.params[0]), False)
    return 204, None


def post_restart(req):
    """POST /containers/{id}/restart: stop (TERM, then KILL after t seconds) and start again."""
    c = store.find_container(req.params[0]).whole("restart")
    container.stop(c, stop_timeout(req, c), stop_signal(req))
    start_container(c.id)
    store.record_event(c, "restart")
    return 204, None


def post_commit(req):
    """POST /commit (docker commit): the container's upper layer becomes an image's top layer."""
    c = store.find_container(req.query.get("container", ""))
    body = req.json() or {}                   # (the SDK's conf: a container config to run the image with)
    check_kinds(body, CONFIG_KINDS)
    if unknown := sorted(key for key, value in body.items() if value and key not in COMMIT_CONFIG):
        raise ApiError(400, f"lab's commit does not take {unknown[0]} in its config: only {', '.join(COMMIT_CONFIG)}")
    changes = [f"{key.upper()} {json.dumps(body[key])}" for key in ("Cmd", "Entrypoint") if body.get(key)]
    changes += [f"ENV {item}" for item in body.get("Env") or []] + [f"EXPOSE {port}" for port in body.get("ExposedPorts") or {}]
    changes += [f"LABEL {key}={value}" for key, value in (body.get("Labels") or {}).items()]
    changes += [f"{instruction} {body[key]}" for key, instruction in
                (("WorkingDir", "WORKDIR"), ("User", "USER"), ("StopSignal", "STOPSIGNAL")) if body.get(key)]
    changes += req.values("changes")                     # (--change last: over the config, as docker's)
    ref = f"{req.query['repo']}:{req.query.get('tag') or 'latest'}" if req.query.get("repo") else None
    paused = False
    if req.query.get("pause", "true").lower() in ("1", "true"):     # (as docker's: its files stand still
        try:                                                          # while they are read)
            container.pause(c, True)
            paused = True
        except LabError:                      # (not running, paused already, or no cgroup: read it as it is)
            pass
    try:
        return 201, {"Id": image_commands.commit(c, ref, changes, author=req.query.get("author", ""),
                                                 comment=req.query.get("comment", ""))}
    finally:
        if paused:
            try:
                container.pause(c, False)
            except LabError:                  # (it ended, or was unpaused, meanwhile: nothing to undo)
                pass


# --- tidying up

def post_prune_containers(req):
    """POST /containers/prune: remove every container that is not running; filters label, and
    until (made before then: a time, or a duration ago such as 24h)."""
    wanted = filters(req)
    check_filters(wanted, ("label", "until"))
    before = min((until_time(value) for value in wanted.get("until", [])), default=None)
    deleted, space = [], 0
    for c in store.list_containers():
        if c.is_running() or not has_labels(c.config.get("Labels") or {}, wanted.get("label", [])):
            continue
        if before is not None and c.config["Created"] >= before:
            continue
        size = layers.folder_size(c.upper)
        try:
            container.remove(c, force=True)
        except NotFound:
            continue                                   # removed meanwhile
        deleted.append(c.id)
        space += size
    return 200, {"ContainersDeleted": deleted or None, "SpaceReclaimed": space}


def until_time(value: str) -> float:
    """A prune's until: seconds since 1970, a date (2026-12-01, 2026-12-01T10:00:00), or a
    duration ago (10m, 24h, 1h30m), as docker takes it."""
    import datetime
    from lab import health
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (when if when.tzinfo else when.astimezone()).timestamp()
    except ValueError:
        pass
    try:
        return time.time() - health.duration(value, "until") / 1e9
    except LabError:
        raise ApiError(400, f"invalid filter 'until={value}': give a time (2026-12-01T10:00:00, seconds since "
                       "1970) or a duration ago (24h, 10m)") from None


ID = r"([^/]+)"
ROUTES = [
    ("GET", r"/containers/json", list_containers), ("GET", rf"/containers/{ID}/top", get_top),
    ("GET", rf"/containers/{ID}/stats", get_stats), ("GET", rf"/containers/{ID}/changes", get_changes),
    ("GET", rf"/containers/{ID}/archive", get_archive), ("HEAD", rf"/containers/{ID}/archive", head_archive),
    ("PUT", rf"/containers/{ID}/archive", put_archive), ("GET", rf"/containers/{ID}/export", get_export),
    ("POST", rf"/containers/{ID}/rename", post_rename), ("POST", rf"/containers/{ID}/update", post_update),
    ("POST", rf"/containers/{ID}/pause", post_pause), ("POST", rf"/containers/{ID}/unpause", post_unpause),
    ("POST", rf"/containers/{ID}/restart", post_restart), ("POST", r"/commit", post_commit),
    ("POST", r"/containers/prune", post_prune_containers),
]
