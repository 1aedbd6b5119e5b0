"""Chapter 07, the rest of the API: what docker clients ask besides running a container.

engine.py walks `docker run` through the runtime. This module answers the other questions
clients ask, each with a piece of the runtime the course has built:

  - looking into a container: `docker ps` (with filters), `top` (its cgroup's processes, read
    from /proc), `stats` (its cgroup's counters), `diff` (its upper layer, chapter 04)
  - changing one: `rename`, `pause`/`unpause` (the cgroup freezer), `restart`, `commit`
  - images: `tag`, `history`; tidying up: `prune` of containers, images and volumes, `system df`

Each handler gets the request (daemon.Request) and returns (HTTP status, JSON body), or
answers itself (a stream).
"""
import io
import json
import os
import stat
import tarfile
import time
from pathlib import Path

from lab import (LabError, NotFound, cgroups, container, image_commands, images, layers, names, network, overlay, store,
                 syscalls, tarsplit, views, volumes)
from lab.engine import (ApiError, container_summary, post_pull, restart_policy, start_container, stop_timeout,
                        virtual_size)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")          # /proc's unit of CPU time


# --- docker ps, and the filters of the list and prune endpoints

def filters(req) -> dict[str, list[str]]:
    """?filters={"label": ["a=b"], "status": ["exited"]} (older clients send {"label": {"a=b": true}})."""
    try:
        given = json.loads(req.query.get("filters") or "{}")
    except ValueError:
        raise ApiError(400, "filters is not valid JSON: send {\"name\": [\"web\"]}") from None
    if not isinstance(given, dict):
        raise ApiError(400, "filters must be a JSON object: {\"name\": [\"web\"]}")
    return {key: list(values) for key, values in given.items()}


def check_filters(found: dict, known: tuple) -> None:
    if unknown := sorted(set(found) - set(known)):
        raise ApiError(400, f"invalid filter {unknown[0]!r}: lab filters by {', '.join(known)}")


def has_labels(labels: dict, wanted: list[str]) -> bool:
    """label=KEY or label=KEY=VALUE: every one given must match."""
    for item in wanted:
        key, _, value = item.partition("=")
        if key not in labels or ("=" in item and labels[key] != value):
            return False
    return True


def list_containers(req):
    """GET /containers/json (docker ps): filters id, name, label, status, ancestor, exited."""
    wanted = filters(req)
    check_filters(wanted, ("id", "name", "label", "status", "ancestor", "exited"))
    shown = []
    for c in store.list_containers():
        row = container_summary(c)
        if not (req.flag("all") or c.is_running() or wanted.get("status")):
            continue
        image = c.config["Image"]
        checks = {"id": lambda v: c.id.startswith(v), "name": lambda v: v.lstrip("/") in c.name,
                  "status": lambda v: v == row["State"],
                  "ancestor": lambda v: v in (image, image.split(":")[0], c.config["ImageId"]),
                  "exited": lambda v: row["State"] == "exited" and str(c.state.get("ExitCode")) == v}
        if all(any(checks[key](v) for v in values) for key, values in wanted.items() if key in checks) \
                and has_labels(c.config.get("Labels") or {}, wanted.get("label", [])):
            shown.append(row)
    limit = int(req.query.get("limit") or -1)
    return 200, shown[:limit] if limit > 0 else shown


# --- looking into a container

def running(ref: str) -> store.Container:
    c = store.find_container(ref)
    if not c.is_running():
        raise ApiError(409, f"container {c.name} is not running")
    return c


def cgroup_of(c: store.Container) -> cgroups.Cgroup:
    paths = c.state.get("Cgroup", {}).get("Paths")
    if not paths:
        raise ApiError(409, f"container {c.name} has no cgroup (chapter 02 not written?)")
    return cgroups.Cgroup.from_paths(paths)


def get_top(req):
    """GET /containers/{id}/top (docker top): its processes, as `ps -ef` shows them on the host.
    They are the processes in its cgroup; their PIDs are the host's."""
    c = running(req.params[0])
    if req.query.get("ps_args"):
        raise ApiError(400, "lab's top shows ps -ef's columns only: leave out the ps options")
    rows = [row for pid in cgroup_of(c).processes() if (row := ps_row(pid))]
    return 200, {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": rows}


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
    """The counters of the interfaces in the container's network namespace (lab's: lo only),
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
    lower = [store.layer_path(digest) for digest in c.config.get("Layers", [])]
    found = []
    for folder, subfolders, files in os.walk(c.upper):
        for name in subfolders + files:
            path = os.path.join(folder, name)
            inside = "/" + os.path.relpath(path, c.upper)
            info = os.lstat(path)
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                kind = 2
            else:
                kind = 0 if any(os.path.lexists(f"{layer}{inside}") for layer in lower) else 1
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
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            if c.is_running() and not files_only:
                os.chroot(f"/proc/{c.state['Pid']}/root")
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
                        volumes.mount_volume(str(c.merged), mount)
                os.chroot(c.merged)
            os.chdir("/")
            answer = {"ok": work(*args)}
            status = 0
        except Exception as e:
            answer = {"error": str(e), "status": 404 if isinstance(e, FileNotFoundError) else 400}
        finally:
            with os.fdopen(write_end, "w") as pipe:
                json.dump(answer, pipe)
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        answer = json.loads(pipe.read() or '{"error": "the helper process died", "status": 500}')
    os.waitpid(pid, 0)
    if "error" in answer:
        raise ApiError(answer["status"], f"{c.name}: {answer['error']}")
    return answer["ok"]


def path_stat(path: str) -> dict:
    """What docker's X-Docker-Container-Path-Stat header says of a path (inside the root)."""
    info = os.lstat(path)
    mode = stat.S_IMODE(info.st_mode) | (0x80000000 if stat.S_ISDIR(info.st_mode) else 0) | \
        (0x08000000 if stat.S_ISLNK(info.st_mode) else 0)           # Go's os.ModeDir, os.ModeSymlink
    return {"name": os.path.basename(path.rstrip("/")) or "/", "size": info.st_size, "mode": mode,
            "mtime": views.iso_ns(info.st_mtime_ns), "linkTarget": os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""}


def write_tar(path: str, fd: int, whole: bool = False) -> None:
    """A tar of path (its own name at the top; whole: the whole root, names relative to it) to fd."""
    with os.fdopen(fd, "wb", closefd=False) as out, tarfile.open(fileobj=out, mode="w|") as tar:
        if whole:
            for name in sorted(os.listdir("/")):
                tar.add("/" + name, arcname=name)
        else:
            tar.add(path, arcname=os.path.basename(path.rstrip("/")) or ".")


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
    out = req.stream("application/x-tar", headers=stat_header(c, path))
    out.flush()
    in_root(c, write_tar, path, out.fileno())


def head_archive(req):
    """HEAD /containers/{id}/archive?path=P: only the stat header (docker cp asks first)."""
    c, path = store.find_container(req.params[0]), archive_path(req)
    return 200, None, stat_header(c, path)


def put_archive(req):
    """PUT /containers/{id}/archive?path=DIR (docker cp SRC CONTAINER:DIR): unpack the tar in
    DIR, with tarfile's "data" filter: no member may land outside DIR, nor be a device node.
    (The daemon reads bodies of at most 16 MB: a bigger copy is refused.)"""
    c, path = store.find_container(req.params[0]), archive_path(req)
    in_root(c, unpack, path, req.body)
    return 200, None


def unpack(folder: str, data: bytes) -> None:
    """Every member checked first (Python before 3.11.4, as Debian 12's, has no tarfile filter):
    no absolute name, no `..` out of folder, no hard link to outside it, no device node."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a folder in the container")
    base = os.path.normpath(folder)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        for member in members:
            names_in_it = [member.name] + ([member.linkname] if member.islnk() else [])
            for name in names_in_it:
                target = os.path.normpath(os.path.join(base, name))
                if name.startswith("/") or os.path.commonpath([base, target]) != base:
                    raise ValueError(f"the archive's {name!r} would land outside {folder}")
            if member.isdev():
                raise ValueError(f"the archive's {member.name!r} is a device node: lab does not copy those")
        tar.extractall(base, members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def get_export(req):
    """GET /containers/{id}/export (docker export): its whole filesystem, one tar."""
    c = store.find_container(req.params[0])
    out = req.stream("application/x-tar")
    out.flush()
    in_root(c, write_tar, "/", out.fileno(), True, files_only=True)


# --- changing a container

def post_rename(req):
    c = store.find_container(req.params[0])
    store.rename_container(c, names.check_name(req.query.get("name", "").removeprefix("/"), "container"))
    return 204, None


UPDATABLE = {"Memory", "NanoCpus", "PidsLimit", "CpuShares", "MemorySwap", "MemoryReservation", "RestartPolicy"}


def post_update(req):
    """POST /containers/{id}/update (docker update): new limits, written into the cgroup at once
    if it runs (and kept for its next start), and a new restart policy."""
    c = store.find_container(req.params[0])
    body = req.json()
    for key, value in body.items():
        if key not in UPDATABLE and value not in (None, "", 0, False, [], {}):
            raise ApiError(400, f"lab does not support docker update of {key}: only -m, --cpus, --pids-limit, "
                           "--cpu-shares, --memory-swap, --memory-reservation and --restart")
    old = c.config.get("Limits", {})
    given = lambda key, was: body.get(key) or was                               # noqa: E731
    memory = given("Memory", old.get("memory"))
    limits = cgroups.Limits.parse(f"{memory}b" if memory else None,
                                  body["NanoCpus"] / 1e9 if body.get("NanoCpus") else old.get("cpus"),
                                  body["PidsLimit"] if (body.get("PidsLimit") or 0) > 0 else old.get("pids"))
    limits.tune(given("CpuShares", old.get("cpu_shares")), given("MemorySwap", old.get("memory_swap")),
                given("MemoryReservation", old.get("memory_reservation")), old.get("oom_kill_disable", False))
    policy = restart_policy({"RestartPolicy": body["RestartPolicy"], "AutoRemove": c.config.get("AutoRemove")}) \
        if (body.get("RestartPolicy") or {}).get("Name") else c.config.get("RestartPolicy")
    if c.is_running():
        cgroup = cgroup_of(c)
        memsw = cgroup.dirs.get("memory", Path("/nonexistent")) / "memory.memsw.limit_in_bytes"
        if memory and memsw.exists():     # v1 keeps memory+swap >= memory: lift it first, set_limits sets both
            cgroups.write(memsw, -1)
        cgroup.set_limits(limits)
        cgroup.set_tuning(limits)
    c.config.update(Limits=vars(limits), RestartPolicy=policy)
    c.save_config()
    return 200, {"Warnings": []}


def post_pause(req):
    container.pause(store.find_container(req.params[0]), True)
    return 204, None


def post_unpause(req):
    container.pause(store.find_container(req.params[0]), False)
    return 204, None


def post_restart(req):
    """POST /containers/{id}/restart: stop (TERM, then KILL after t seconds) and start again."""
    c = store.find_container(req.params[0])
    container.stop(c, stop_timeout(req, c))
    start_container(c.id)
    return 204, None


def post_commit(req):
    """POST /commit (docker commit): the container's upper layer becomes an image's top layer."""
    c = store.find_container(req.query.get("container", ""))
    body = req.json() or {}                   # (the SDK's conf: a container config to run the image with)
    changes = req.values("changes") + [f"{key.upper()} {json.dumps(body[key])}" for key in ("Cmd", "Entrypoint")
                                       if body.get(key)]
    ref = f"{req.query['repo']}:{req.query.get('tag') or 'latest'}" if req.query.get("repo") else None
    return 201, {"Id": image_commands.commit(c, ref, changes)}


# --- images

def post_tag(req):
    """POST /images/{name}/tag?repo=R&tag=T (docker tag)."""
    if not req.query.get("repo"):
        raise ApiError(400, "docker tag needs a new name: docker tag IMAGE NAME[:TAG]")
    image_commands.tag(req.params[0], f"{req.query['repo']}:{req.query.get('tag') or 'latest'}")
    return 201, None


def get_history(req):
    """GET /images/{name}/history (docker history): its layers, the top one first."""
    image = images.find(req.params[0])
    rows = []
    for n, digest in enumerate(reversed(image["Layers"])):
        rows.append({"Id": image["Id"] if n == 0 else "<missing>", "Created": int(image["Created"]),
                     "CreatedBy": "", "Tags": image["RepoTags"] if n == 0 else None,
                     "Size": layers.layer_size(digest), "Comment": f"layer {digest}"})
    return 200, rows


def post_images_create(req):
    """POST /images/create: docker pull (engine.py), or docker import (?fromSrc=- and a tar)."""
    if "fromSrc" not in req.query:
        return post_pull(req)
    if req.query["fromSrc"] != "-":
        raise ApiError(400, "lab imports from the request's body only (docker import FILE), not from a URL")
    ref = None                                  # (no repo: an untagged image, as docker's)
    if req.query.get("repo"):
        name, tag = names.parse_reference(req.query["repo"])     # (the CLI sends repo=NAME:TAG)
        ref = f"{name}:{req.query.get('tag') or tag}"
    changes = req.values("changes")
    image_id = with_body_in_a_file(req, lambda path: image_commands.import_image(path, ref, changes))
    return 200, {"status": image_id}


def post_images_load(req):
    """POST /images/load (docker load): a `docker save` archive, under the names it carries."""
    def load(path):
        with tarfile.open(path) as archive:
            try:
                manifest = json.load(archive.extractfile("manifest.json"))
                tags = manifest[0].get("RepoTags") or []
            except (KeyError, ValueError, IndexError, AttributeError, TypeError):
                raise ApiError(400, "not a docker save archive (no usable manifest.json): "
                               "docker import takes a plain rootfs tar") from None
        image_id = image_commands.import_image(path, tags[0] if tags else None)
        for ref in tags[1:]:
            image_commands.tag(image_id, ref)
        return tags or [image_id]
    try:
        loaded, error = with_body_in_a_file(req, load), None
    except (tarfile.TarError, LabError, ApiError) as e:      # docker answers 200, and says it in the stream
        loaded, error = [], f"not a docker save archive: {e}"
    out = req.stream("application/json", chunked=True)         # a JSON object a chunk, as docker's
    if error:
        out.write(json.dumps({"errorDetail": {"message": error}, "error": error}).encode() + b"\n")
    for name in loaded:
        out.write(json.dumps({"stream": f"Loaded image{' ID' if name.startswith('sha256:') else ''}: {name}\n"})
                  .encode() + b"\n")


def with_body_in_a_file(req, use):
    """use(path of a file that holds the request's body) (image_commands reads files). Named
    as an unfinished import, so that one killed half-way is cleaned up (layers.py)."""
    import tempfile
    store.layers_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=store.layers_dir(), prefix=f".incoming-{os.getpid()}-upload-") as f:
        f.write(req.body)
        f.flush()
        return use(f.name)


def get_image_save(req):
    """GET /images/{name}/get, or /images/get?names=NAME (docker save): a `docker save`
    archive of one image: manifest.json, its config, a tar per layer (whiteouts as OCI's)."""
    import hashlib
    import tempfile
    ref = req.params[0] if req.params else req.query.get("names", "")
    image = images.find(ref)
    try:                                      # saved by name: under that name only; by id: none
        named = ["%s:%s" % names.parse_reference(ref)]
    except LabError:
        named = []
    repo_tags = [tag for tag in image["RepoTags"] if tag in named]
    store.layers_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.layers_dir(), prefix=f".incoming-{os.getpid()}-save-") as work:
        diff_ids, members = [], []
        for n, digest in enumerate(image["Layers"]):
            path = Path(work, f"{n}.tar")
            diff_ids.append(tarsplit.write_tar(digest, path, compress=False)[0])
            members.append((f"{diff_ids[-1][7:]}/layer.tar", path))
        config = layers.sent_config(image, diff_ids)       # docker load gives it the same id again
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        manifest = json.dumps([{"Config": config_name, "RepoTags": repo_tags,
                                "Layers": [name for name, _ in members]}]).encode()
        out = req.stream("application/x-tar")
        with tarfile.open(fileobj=out, mode="w|") as tar:
            for name, data in (("manifest.json", manifest), (config_name, config)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            for name, path in members:
                tar.add(path, arcname=name)


# --- docker events

def get_events(req):
    """GET /events (docker events): what happens to containers, as it happens: create, start,
    die, pause, unpause, rename, destroy. lab keeps no journal of events: this handler compares
    the containers' records every 0.1 s and reports what changed, so `since` replays nothing
    and a container that starts and ends between two looks shows only as `create` or `destroy`.
    Filters: type, container (name or id), event; `until` ends the stream."""
    wanted = filters(req)
    check_filters(wanted, ("type", "container", "event"))
    until = float(req.query.get("until") or 0)
    out = req.stream("application/json", chunked=True)
    before = snapshot()
    while not until or time.time() < until:
        time.sleep(0.1)
        now = snapshot()
        for event in changes_between(before, now):
            actor = event["Actor"]
            if all(any(v in (event["Type"] if key == "type" else event["Action"] if key == "event" else
                             (actor["ID"], actor["Attributes"]["name"])) for v in values)
                   for key, values in wanted.items()):
                out.write(json.dumps(event).encode() + b"\n")
                out.flush()
        before = now


def snapshot() -> dict[str, dict]:
    """What events are made of, for every container: its name, image, whether it runs, since
    when, whether it is paused, its exit status."""
    found = {}
    for c in store.list_containers():
        # Running from the moment its start is recorded until its end is (not is_running(),
        # which would adopt a container caught half-way through its start: see store.py).
        running = c.state.get("Status") == "running" and (c.is_running() or c.watched())
        found[c.id] = {"name": c.name, "image": c.config["Image"], "running": running,
                       "started": (c.state.get("Pid"), c.state.get("PidStartTime")),
                       "paused": running and c.state.get("Paused", False),
                       "exitCode": c.state.get("ExitCode")}
    return found


def changes_between(before: dict, now: dict) -> list[dict]:
    events = []
    def event(cid, action, seen, **more):
        t = time.time_ns()
        events.append({"status": action, "id": cid, "from": seen["image"], "Type": "container", "Action": action,
                       "Actor": {"ID": cid, "Attributes": {"image": seen["image"], "name": seen["name"], **more}},
                       "scope": "local", "time": t // 10**9, "timeNano": t})
    for cid, seen in now.items():
        old = before.get(cid)
        if old is None:
            event(cid, "create", seen)
            old = {**seen, "running": False, "started": None, "paused": False}
        if old["name"] != seen["name"]:
            event(cid, "rename", seen, oldName="/" + old["name"])
        if old["running"] and (not seen["running"] or seen["started"] != old["started"]):
            event(cid, "die", seen, exitCode=str(seen["exitCode"]))
        if seen["running"] and (not old["running"] or seen["started"] != old["started"]):
            event(cid, "start", seen)
        if seen["paused"] != old["paused"] and seen["running"]:
            event(cid, "pause" if seen["paused"] else "unpause", seen)
    for cid, seen in before.items():
        if cid not in now:
            if seen["running"]:
                event(cid, "die", seen, exitCode=str(seen["exitCode"]))
            event(cid, "destroy", seen)
    return events


# --- tidying up

def post_prune_containers(req):
    """POST /containers/prune: remove every container that is not running."""
    wanted = filters(req)
    check_filters(wanted, ("label",))
    deleted, space = [], 0
    for c in store.list_containers():
        if c.is_running() or not has_labels(c.config.get("Labels") or {}, wanted.get("label", [])):
            continue
        size = layers.folder_size(c.upper)
        try:
            container.remove(c, force=True)
        except NotFound:
            continue                                   # removed meanwhile
        deleted.append(c.id)
        space += size
    return 200, {"ContainersDeleted": deleted or None, "SpaceReclaimed": space}


def post_prune_images(req):
    """POST /images/prune: images with no tag (dangling=false: every image no container uses)."""
    wanted = filters(req)
    check_filters(wanted, ("dangling",))
    every = wanted.get("dangling", ["true"])[0].lower() in ("false", "0")
    used = {c.config["ImageId"] for c in store.list_containers()}
    done, space = [], 0
    for image in images.list_images():
        if image["Id"] in used or (image["RepoTags"] and not every):
            continue
        before = disk_use()
        for line in image_commands.remove_image(image["Id"]):
            kind, _, what = line.partition(": ")
            done.append({kind: what})
        space += before - disk_use()
    return 200, {"ImagesDeleted": done or None, "SpaceReclaimed": max(space, 0)}


def disk_use() -> int:
    return layers.folder_size(store.layers_dir())


def post_prune_volumes(req):
    """POST /volumes/prune: volumes no container uses; only anonymous ones (named by a random
    id) unless all=true, as docker since API 1.42."""
    wanted = filters(req)
    check_filters(wanted, ("all", "label"))
    every = wanted.get("all", ["false"])[0].lower() in ("true", "1")
    deleted, space = [], 0
    for name in volumes.list_volumes():
        if volumes.users(name) or not (every or volumes.is_anonymous(name)):
            continue
        size = layers.folder_size(volumes.volume_path(name))
        volumes.remove(name)
        deleted.append(name)
        space += size
    return 200, {"VolumesDeleted": deleted or None, "SpaceReclaimed": space}


def system_df(req):
    """GET /system/df (docker system df): what the images, containers and volumes take."""
    everything = store.list_containers()
    users = {}
    for c in everything:
        users[c.config["ImageId"]] = users.get(c.config["ImageId"], 0) + 1
    found = [{"Id": i["Id"], "ParentId": "", "RepoTags": i["RepoTags"] or None, "RepoDigests": [],
              "Created": int(i["Created"]), "Size": i["Size"], "SharedSize": -1, **virtual_size(req, i["Size"]),
              "Labels": {}, "Containers": users.get(i["Id"], 0)} for i in images.list_images()]
    shelf = [{**container_summary(c), "SizeRw": layers.folder_size(c.upper), "SizeRootFs": 0} for c in everything]
    kept = [{**volumes.inspect(name), "UsageData": {"Size": layers.folder_size(volumes.volume_path(name)),
                                                    "RefCount": len(volumes.users(name))}}
            for name in volumes.list_volumes()]
    return 200, {"LayersSize": disk_use(), "Images": found, "Containers": shelf, "Volumes": kept,
                 "BuildCache": []}


ID = r"([^/]+)"
def list_networks(req):
    """GET /networks (docker network ls): filters name, id, label, driver."""
    wanted = filters(req)
    check_filters(wanted, ("name", "id", "label", "driver", "type"))
    shown = []
    for record in network.list_networks():
        checks = {"name": lambda v: v in record["Name"], "id": lambda v: record["Id"].startswith(v),
                  "driver": lambda v: v == record["Driver"],
                  "type": lambda v: v == ("builtin" if record["Name"] in network.PREDEFINED else "custom")}
        if all(any(checks[key](v) for v in values) for key, values in wanted.items() if key in checks) \
                and has_labels(record.get("Labels") or {}, wanted.get("label", [])):
            shown.append(views.network(record))
    return 200, shown


def get_network(req):
    return 200, views.network(network.find(req.params[0]))


def post_network(req):
    """POST /networks/create: a bridge network (docker network create [--subnet])."""
    body = req.json() or {}
    if (body.get("Driver") or "bridge") != "bridge":
        raise ApiError(400, f"lab has the bridge network driver only, not {body['Driver']!r}")
    for key in ("Internal", "Attachable", "Ingress", "EnableIPv6", "ConfigOnly", "ConfigFrom", "Options"):
        if body.get(key):
            raise ApiError(400, f"lab's networks do not take {key}: leave it out")
    subnets = [c for c in (body.get("IPAM") or {}).get("Config") or [] if c]
    if len(subnets) > 1 or any(set(c) - {"Subnet"} for c in subnets):
        raise ApiError(400, "lab's networks take one --subnet, and no gateway or address range: leave them out")
    record = network.create(body.get("Name") or "", subnets[0]["Subnet"] if subnets else None, body.get("Labels") or {})
    return 201, {"Id": record["Id"], "Warning": ""}


def delete_network(req):
    network.remove(req.params[0])
    return 204, None


def post_prune_networks(req):
    """POST /networks/prune: the user networks no running container is on."""
    removed = []
    for record in network.list_networks():
        if record["Name"] not in network.PREDEFINED and not views.network(record)["Containers"]:
            try:
                network.remove(record["Id"])
                removed.append(record["Name"])
            except LabError:
                pass                                   # (a container is on it after all)
    return 200, {"NetworksDeleted": removed}


def swarm_leave(req):
    """Swarm mode answers as a node outside any swarm does (lab has none): clients that clean up
    with `docker swarm leave --force` go on."""
    raise ApiError(503, "This node is not part of a swarm")


def get_swarm(req):
    raise ApiError(503, 'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
                   "to connect this node to swarm and try again.")


ROUTES = [
    ("POST", r"/swarm/leave", swarm_leave), ("GET", r"/swarm", get_swarm),
    ("GET", r"/networks", list_networks), ("POST", r"/networks/create", post_network),
    ("POST", r"/networks/prune", post_prune_networks), ("GET", rf"/networks/{ID}", get_network),
    ("DELETE", rf"/networks/{ID}", delete_network),
    ("GET", r"/containers/json", list_containers), ("GET", rf"/containers/{ID}/top", get_top),
    ("GET", rf"/containers/{ID}/stats", get_stats), ("GET", rf"/containers/{ID}/changes", get_changes),
    ("POST", rf"/containers/{ID}/rename", post_rename), ("POST", rf"/containers/{ID}/update", post_update), ("POST", rf"/containers/{ID}/pause", post_pause),
    ("POST", rf"/containers/{ID}/unpause", post_unpause), ("POST", rf"/containers/{ID}/restart", post_restart),
    ("POST", r"/commit", post_commit), ("POST", r"/containers/prune", post_prune_containers),
    ("POST", r"/images/(.+)/tag", post_tag), ("GET", r"/images/(.+)/history", get_history),
    ("POST", r"/images/prune", post_prune_images), ("POST", r"/volumes/prune", post_prune_volumes),
    ("GET", r"/system/df", system_df), ("GET", rf"/containers/{ID}/archive", get_archive),
    ("HEAD", rf"/containers/{ID}/archive", head_archive), ("PUT", rf"/containers/{ID}/archive", put_archive),
    ("GET", rf"/containers/{ID}/export", get_export), ("POST", r"/images/create", post_images_create),
    ("POST", r"/images/load", post_images_load), ("GET", r"/images/get", get_image_save),
    ("GET", r"/images/(.+)/get", get_image_save), ("GET", r"/events", get_events),
]
