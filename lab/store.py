"""What the runtime keeps on disk, under LAB_ROOT (default /var/lib/lab). This module is the
one place that knows where each thing lives:

    images/      one JSON file per image, tags.json (name:tag -> image id), .lock (layers.py)
    layers/      image layers, one folder each, named by the sha256 of their tar; hidden
                 ones (.incoming-PID-*, .commit-PID.tar, .busybox.PID) are work in progress
    volumes/     NAME/_data: named volumes (chapter 05)
    networks/    NAME.json: a network (chapter 09); NAME/ADDRESS: an address leased to a
                 container (the file holds its id); .lock, which leasing holds
    seccomp/     compiled seccomp filters, a cache (chapter 08)
    events.jsonl what happened to containers, images, volumes and networks, a JSON line
                 each, as `docker events` reports it (events.jsonl.1: the one before, once
                 it grew past a megabyte)
    containers/  <id>/config.json (what to run), <id>/state.json (how it is going), and the
                 container's own layer: <id>/upper (its changes), <id>/work (overlay's
                 scratch space), <id>/merged (where the union is mounted, in its namespace);
                 <id>/hostname, hosts and resolv.conf (its /etc files), container.log and supervisor.log
                 (run -d), execs/<exec id>.json (the engine's exec records); a hidden
                 .creating-<id> is a create in progress, .removing-<id>-<pid> a removal by process <pid>

State on disk is the truth: `lab ps` reads it and checks it against the live processes.
Files are written whole or not at all: a temporary file in the same folder, flushed to the
disk (fsync), then renamed over the old one; a crash leaves the old file or the new one,
never half of one. A record that is damaged anyway (a disk that filled up under an older lab,
a hand edit) makes only its own container show as damaged: `lab rm -f` removes it. The
records of a container that goes when it ends (--rm) are not flushed: they are deleted when it
ends, and four flushes took about 2 ms of every `lab run --rm` (runc flushes none). A crash
can leave one behind, damaged at worst: `lab rm -f` removes it.
"""
import errno
import fcntl
import json
import os
import sys
import time
from pathlib import Path

from lab import Conflict, LabError, NotFound, names
from lab.folders import delete_folder, delete_quietly


SOCKET = "/run/lab/lab.sock"      # where `lab daemon` serves the Engine API by default (chapter 07)


def lab_root() -> Path:
    return Path(os.environ.get("LAB_ROOT") or "/var/lib/lab")


def private_root() -> None:
    """LAB_ROOT, made if missing, readable by root alone (0700; an older one is made so too):
    below it are the containers' files, a setuid program one made in its upper folder, the
    secrets of its -e in its config.json, no other user's business. (Docker's folders of
    containers and layers are 0710.) A shared folder such as /tmp (sticky) is left as it is."""
    root = lab_root()
    try:
        mode = root.stat().st_mode
        if mode & 0o077 and not mode & 0o1000:
            root.chmod(mode & 0o700)
    except FileNotFoundError:
        try:
            os.makedirs(root, 0o700, exist_ok=True)
        except PermissionError:          # (not root: lab doctor says so, the rest when it needs root)
            pass
    except PermissionError:
        pass


def images_dir() -> Path:
    return lab_root() / "images"


def layers_dir() -> Path:
    return lab_root() / "layers"


def layer_path(digest: str) -> Path:
    """A layer's folder: layers/<the hex of its sha256>. The digest is checked (a pulled image's
    config names its layers: "sha256:../../home" would make a host folder one of them)."""
    return layers_dir() / names.digest_hex(digest)


def layer_folders(digests: list[str]) -> list[str]:
    """An image's layer folders, bottom first, to stack: a layer listed twice is stacked once,
    at its upper place (overlayfs refuses a folder twice; the upper copy covers it all)."""
    folders = [layer_path(d) for d in reversed(dict.fromkeys(reversed(digests)))]
    for folder in folders:
        if not folder.is_dir():         # (overlay's mount would only say ENOENT)
            raise LabError(f"the image layer {folder.name[:12]} is missing from {folder.parent} (removed by hand?): "
                           "remove its containers and the image (lab rm, lab rmi), then import or pull the image again")
    return [str(folder) for folder in folders]


def image_path(image_id: str) -> Path:
    """An image's JSON file: images/<the hex of its id>.json."""
    return images_dir() / f"{names.digest_hex(image_id)}.json"


def image_files() -> list[Path]:
    """Every image's JSON file (not tags.json, not temporary files)."""
    return [p for p in images_dir().glob("*.json") if p.name != "tags.json"]


def tags_path() -> Path:
    return images_dir() / "tags.json"


def images_lock() -> Path:
    """The file whose lock imports, commits and rmi hold (layers.locked)."""
    return images_dir() / ".lock"


def volumes_dir() -> Path:
    return lab_root() / "volumes"


def networks_dir() -> Path:
    return lab_root() / "networks"


def seccomp_cache() -> Path:
    return lab_root() / "seccomp"


def containers_dir() -> Path:
    return lab_root() / "containers"


def write_json(path: Path, data, durable: bool = True) -> None:
    """Write data to path as JSON, whole or not at all; durable: flushed to the disk first."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(data, indent=2) + "\n")
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise LabError(no_space(f"to write {path.name} ({len(json.dumps(data, indent=2))} bytes)")) from None
        raise


def no_space(what: str = "") -> str:
    """The one line for a full disk: which filesystem, how much is free, what to do."""
    root = lab_root()
    while not root.exists():
        root = root.parent
    stat = os.statvfs(root)
    return (f"no space left on the filesystem of LAB_ROOT ({lab_root()}: {stat.f_bavail * stat.f_frsize} bytes "
            f"free){' ' + what if what else ''}: free some space (lab rm, lab rmi, lab volume rm) and try again")


class DamagedRecord(LabError, ValueError):
    """A record that is not JSON: a hand edit, or a disk that filled up under an older lab."""


def read_json(path: Path):
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError:
        raise DamagedRecord(f"{path} is damaged (not JSON: a hand edit?): remove it, then make what it "
                            "recorded again (lab image import or pull, lab network create)") from None


def records(items, read, listing: bool = False) -> list:
    """read(item) for each item. A damaged record (DamagedRecord) stops the caller, since what it
    recorded is unknown: rmi must not take a damaged image's layers for unused, nor a new network
    a damaged one's subnet. A listing (listing=True) leaves it out with a warning: the rest shows."""
    found = []
    for item in items:
        try:
            found.append(read(item))
        except DamagedRecord as damage:
            if not listing:
                raise
            print(f"lab: warning: not listed: {damage}", file=sys.stderr)
    return found


def tagged(ref: str) -> str | None:
    """The id of the image tagged ref (NAME:TAG), if its record is there: a tag left pointing
    at a record removed by hand counts as no tag."""
    image_id = tags().get(ref)
    return image_id if image_id and image_path(image_id).exists() else None


def tags() -> dict[str, str]:
    path = tags_path()
    try:
        return read_json(path)
    except FileNotFoundError:
        return {}
    except ValueError:                  # damaged: the images are still there, by id; their names are lost
        print(f"lab: warning: {path} is damaged: image names are lost (`lab images` lists the images "
              "by id; tag them again with lab commit or lab image import)", file=sys.stderr)
        return {}


class locked:
    """`with locked(FILE):` holds an exclusive lock on FILE (made, with its folder, if missing)
    until the block ends: what other lab processes change under the same file waits."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w")
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def __exit__(self, *error):
        self.file.close()


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files (.NAME.PID.tmp) whose writer is gone: a write it never finished."""
    for tmp in folder.glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            tmp.unlink(missing_ok=True)


# What a container whose config.json cannot be read shows instead: enough for ps and rm -f.
UNKNOWN_CONFIG = {"Name": None, "Image": "?", "ImageId": "", "Cmd": ["?"], "Entrypoint": [], "Env": [],
                  "Interactive": False, "WorkingDir": "/", "Hostname": "", "Limits": {}, "Mounts": [], "Layers": []}


def is_time(value) -> bool:
    """A Unix time as lab records them (a hand edit's 1e400 is inf, which no clock shows)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 2 ** 40


def is_kind(value, kind) -> bool:
    """Whether a JSON value is of kind: a type (int: not a bool), a tuple of them, "time"
    (is_time), "strings" (a list of strings), "command" (a string, or strings), "labels" (an
    object whose values are strings) or "objects" (a list of objects)."""
    if isinstance(kind, tuple):
        return any(is_kind(value, one) for one in kind)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(kind, type):
        return isinstance(value, kind)
    if kind == "time":
        return is_time(value)
    if kind == "command" and isinstance(value, str):
        return True
    if kind == "labels":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return isinstance(value, list) and all(isinstance(v, dict if kind == "objects" else str) for v in value)


def has_kinds(record: dict, kinds: dict) -> bool:
    """Each of kinds' keys that record has is of its kind (is_kind)."""
    return all(is_kind(record[key], kind) for key, kind in kinds.items() if key in record)


# What lab reads of a record, for each container it lists, by kind: one of another kind (a hand
# edit's "Name": 5) would stop `lab ps` for every container, not show this one as damaged.
CONFIG_RECORD_KINDS = {"Created": "time", "Image": str, "Cmd": list, "Name": (str, type(None)), "Entrypoint": list,
                       "Env": list, "Mounts": "objects", "Layers": list, "Labels": (dict, type(None)),
                       "Hostname": str, "Limits": dict, "PortBindings": (dict, type(None))}
STATE_RECORD_KINDS = {"Status": str, "Cgroup": dict, "Network": (dict, type(None)), "Pid": int,
                      "PidStartTime": (int, type(None)), "ExitCode": (int, type(None)), "StartedAt": "time",
                      "FinishedAt": "time", "Supervisor": int, "SupervisorStartTime": (int, type(None)),
                      "Watcher": int, "WatcherStartTime": (int, type(None))}


def is_container_config(config) -> bool:
    """The shape every container's config.json has (a hand edit may leave valid JSON of another)."""
    return (isinstance(config, dict) and all(key in config for key in ("Created", "Image", "Cmd"))
            and has_kinds(config, CONFIG_RECORD_KINDS)
            and all(isinstance(m.get("Type"), str) for m in config.get("Mounts", [])))


def is_container_state(state) -> bool:
    """The shape of a state.json: what lab reads of its status is there (an exited one's exit
    status and end, a running one's pid)."""
    if not (isinstance(state, dict) and has_kinds(state, STATE_RECORD_KINDS)):
        return False
    needs = {"exited": ("ExitCode", "FinishedAt"), "running": ("Pid",)}.get(state.get("Status"), ())
    return all(key in state for key in needs)


class Container:
    def __init__(self, path: Path):
        self.path = path
        self.id = path.name
        self.damage = None           # what is wrong with its record, if anything
        try:
            self.config = read_json(path / "config.json")
            if not is_container_config(self.config):
                raise DamagedRecord(f"{path / 'config.json'} is not a container's config")
        except (FileNotFoundError, ValueError) as e:
            if not path.is_dir():
                raise FileNotFoundError(path) from None            # removed meanwhile
            self.damage = f"its config.json is {'missing' if isinstance(e, FileNotFoundError) else 'damaged'}"
            self.config = {**UNKNOWN_CONFIG, "Id": self.id, "Created": path.stat().st_mtime}
        self.reload()

    def reload(self) -> None:
        """Read state.json again (another process may have changed it)."""
        try:
            self.state = read_json(self.path / "state.json")
            if not is_container_state(self.state):
                raise DamagedRecord(f"{self.path / 'state.json'} is not a container's state")
        except FileNotFoundError:
            self.state = getattr(self, "state", None) or {"Status": "created"}
        except ValueError:
            self.state = {"Status": "damaged"}
            self.damage = self.damage or "its state.json is damaged"

    @property
    def name(self) -> str:
        return self.config.get("Name") or self.id[:12]

    # Its files (see the top of this module).
    upper = property(lambda self: self.path / "upper")
    work = property(lambda self: self.path / "work")
    merged = property(lambda self: self.path / "merged")
    hostname_file = property(lambda self: self.path / "hostname")
    hosts_file = property(lambda self: self.path / "hosts")
    resolv_conf_file = property(lambda self: self.path / "resolv.conf")
    log = property(lambda self: self.path / "container.log")
    supervisor_log = property(lambda self: self.path / "supervisor.log")
    ballast = property(lambda self: self.path / ".ballast")          # (supervisor.py: a full disk)
    execs = property(lambda self: self.path / "execs")

    def exec_record(self, exec_id: str) -> Path:
        return self.execs / f"{exec_id}.json"

    def whole(self, to: str) -> "Container":
        """The container, when its record is whole: to start, enter, mount or change it takes its
        config.json and its state.json. A damaged one only shows (ps, inspect, logs) and goes (rm -f)."""
        if self.damage:
            raise Conflict(f"cannot {to} container {self.name}: it is damaged ({self.damage}): "
                           f"remove it with `lab rm -f {self.name}`")
        return self

    @property
    def durable(self) -> bool:
        """Whether its records are flushed to the disk: not for one that goes when it ends (--rm)."""
        return not self.config.get("AutoRemove")

    def save_config(self) -> None:
        write_json(self.whole("change").path / "config.json", self.config, self.durable)

    def save_state(self, **changes) -> None:
        """Write changes into state.json, over what is on disk now: the container's supervisor
        and lab's commands both write it (a stop's "do not restart" must not be lost to a
        supervisor that read the state before it)."""
        try:
            on_disk = read_json(self.path / "state.json")
        except (FileNotFoundError, ValueError):
            on_disk = None
        before = on_disk if is_container_state(on_disk) else self.state
        self.state = {**before, **changes}
        try:
            write_json(self.path / "state.json", self.state, self.durable)
        except FileNotFoundError:
            return              # removed meanwhile (lab rm -f): nothing left to record
        for action, attributes in state_events(before, self.state):
            if action == "start":
                attachment_events(self, started=True)     # (docker's: mounted and connected, then started)
            record_event(self, action, **attributes)
            if action == "die":
                attachment_events(self, started=False)

    def is_running(self) -> bool:
        """Running on disk and its process still alive (the same process: same start time).

        A container whose lab was killed between the fork and writing "running" has no pid
        on disk, but its processes are in its cgroup: it is found there, and recorded. (While
        that lab lives, it is the one to record it: two writers would lose each other's fields.)"""
        pid, started = self.state.get("Pid"), self.state.get("PidStartTime")
        if self.state.get("Status") == "running" and pid:
            return started is not None and process_start_time(pid) == started     # (None: it was gone)
        if self.state.get("Status") == "created" and self.state.get("Cgroup") and not self.watched():
            return self.adopt()
        return False

    def adopt(self) -> bool:
        """Find the PID 1 of a container started by a lab that died before recording it."""
        for path in dict.fromkeys(self.cgroup_paths().values()):
            try:
                pids = (Path(path) / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in map(int, pids):
                try:
                    nspid = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                             if line.startswith("NSpid:")][0].split()
                except (OSError, IndexError):
                    continue
                if nspid[-1] == "1":             # PID 1 in its own PID namespace: the container's
                    self.save_state(Status="running", Pid=pid, PidStartTime=process_start_time(pid),
                                    StartedAt=self.path.stat().st_mtime)
                    return True
        return False

    def watched(self) -> bool:
        """Someone will record its end: its lab run (foreground) or its supervisor is alive."""
        return any(self.alive(key) for key in ("Watcher", "Supervisor"))

    def alive(self, key: str) -> bool:
        """Whether the process the state records under key (Supervisor, Watcher) is still the one
        it was: the same PID, started at the same time (a PID is used again)."""
        pid, started = self.state.get(key), self.state.get(f"{key}StartTime")
        return bool(pid) and started is not None and process_start_time(pid) == started

    def status_text(self) -> str:
        """What `lab ps` says in its STATUS column."""
        if self.damage:
            return f"Damaged: {self.damage} (lab rm -f removes it)"
        if self.is_running():
            up = f"Up {ago(time.time() - self.state['StartedAt'])}"
            if self.state.get("Paused"):
                up += " (Paused)"
            elif self.state.get("Health"):    # --health-cmd (health.py)
                status = self.state["Health"]["Status"]
                up += f" (health: {status})" if status == "starting" else f" ({status})"
            return up if self.watched() else f"{up} (unwatched: its lab was killed)"
        if self.state.get("Restarting") and self.watched():
            return f"Restarting ({self.state['ExitCode']}) {ago(time.time() - self.state['FinishedAt'])} ago"
        if self.state.get("Status") == "exited":
            return f"Exited ({self.state['ExitCode']}) {ago(time.time() - self.state['FinishedAt'])} ago"
        if self.state.get("Status") == "running":
            return "Exited (unknown): its lab stopped before recording the end (killed, or an error it printed)"
        return "Created"

    def cgroup_paths(self) -> dict[str, str]:
        """Its cgroup's folders, as its state records them ({}: none). Each must be a folder named
        lab-<its id>: a hand edit could name another cgroup, whose processes rm -f would kill."""
        paths = (self.state.get("Cgroup") or {}).get("Paths") or {}      # (a dict: is_container_state)
        mine = f"lab-{self.id[:12]}"
        if not isinstance(paths, dict) or not all(isinstance(p, str) and p.startswith("/") and
                                                  os.path.normpath(p) == p and os.path.basename(p) == mine
                                                  for p in paths.values()):
            return {}
        return paths

    def restarting(self) -> bool:
        """Between two runs of its restart policy (--restart): its supervisor waits to start it again."""
        return bool(self.state.get("Restarting")) and self.has_supervisor()

    def has_supervisor(self) -> bool:
        """Its supervisor (supervisor.py: run -d, the engine) is still there."""
        return self.alive("Supervisor")

    def waits_for_start(self) -> bool:
        """Its supervisor is there and waits to be told to start it (the engine's create)."""
        return self.has_supervisor() and self.state.get("WaitsForStart", self.state.get("Status") == "created")

    def wait_for_supervisor(self, timeout: float) -> None:
        """Wait (up to timeout seconds) until its supervisor has exited. (Its record is read
        again: one started after this object was made is only on disk.)"""
        deadline = time.monotonic() + timeout
        self.reload()
        while self.has_supervisor() and time.monotonic() < deadline:
            time.sleep(0.01)


def ago(seconds: float) -> str:
    """A duration in docker's words (go-units' HumanDuration): "Up 1 second", "About an hour ago"."""
    if seconds < 60:
        return "Less than a second" if seconds < 1 else "1 second" if seconds < 2 else f"{int(seconds)} seconds"
    if seconds < 3600:
        return "About a minute" if seconds < 120 else f"{int(seconds // 60)} minutes"
    hours = int(seconds / 3600 + 0.5)                  # (rounded, from here on)
    if hours < 48:
        return "About an hour" if hours == 1 else f"{hours} hours"
    for unit, size, below in (("days", 24, 24 * 14), ("weeks", 24 * 7, 24 * 60), ("months", 24 * 30, 24 * 730)):
        if hours < below:
            return f"{hours // size} {unit}"
    return f"{int(seconds // 3600) // (24 * 365)} years"


def mount_mode(mount: dict) -> str:
    """A mount's -v MODE, as docker's inspect shows it: "", "ro", "nocopy" or "ro,nocopy"."""
    return ",".join(["ro"] * (not mount["RW"]) + ["nocopy"] * (mount.get("CopyData") is False))


def process_start_time(pid: int) -> int | None:
    """When pid started, in clock ticks since boot (field 22 of /proc/PID/stat); None when
    there is no such process, or it is a zombie (it has ended; only its status is left)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


class UniqueName:
    """`with UniqueName(name):` holds the containers' lock, and raises a Conflict if a container
    (other than `by`) is called name. Names stay unique, also when several lab commands create
    or rename containers at once."""

    def __init__(self, name: str | None, by: str | None = None):
        self.name, self.by = name, by

    def __enter__(self):
        containers_dir().mkdir(parents=True, exist_ok=True)
        self.lock = open(containers_dir() / ".lock", "w")
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        if self.name and any(c.config.get("Name") == self.name and c.id != self.by for c in list_containers()):
            self.lock.close()
            raise Conflict(f'the container name "{self.name}" is already in use: '
                           f"remove it first (lab rm {self.name}) or choose another name")

    def __exit__(self, *error):
        self.lock.close()


# The events journal. Whoever changes a container's record appends what happened (the engine,
# a supervisor, `lab run`, `lab rm`), so that `docker events` misses nothing, however quick: a
# container that starts and ends within a millisecond has its start and its die. So does
# whoever changes an image, a volume or a network (the functions that do it). One write()
# with O_APPEND adds a whole line at the end, whoever else appends at the same time.
EVENTS_KEPT = 1 << 20         # bytes: past this, events.jsonl becomes events.jsonl.1 (the older goes)


def events_path() -> Path:
    return lab_root() / "events.jsonl"


def record_event(container: Container, action: str, **attributes) -> None:
    """Append a container's event to the journal, in the shape docker's daemon reports it (its
    labels among the attributes: docker compose follows its project by one)."""
    image = container.config.get("Image")
    journal("container", container.id, action, {**(container.config.get("Labels") or {}), "image": image,
                                                "name": container.name, **attributes})


def exec_action(verb: str, command: list[str]) -> str:
    """An exec's event: "exec_create: sh -c date", as docker words it (the command, then its
    arguments after a space, even when there are none)."""
    return f"{verb}: {command[0]} {' '.join(command[1:])}"


def record_image_event(action: str, actor: str, name: str | None = None, labels: dict | None = None) -> None:
    """An image's event, as docker's: actor its id (pull's and push's: the name pulled or
    pushed), name the name it got (tag's) or the actor, its labels among the attributes."""
    journal("image", actor, action, {**(labels or {}), "name": name or actor})


def journal(kind: str, actor: str, action: str, attributes: dict) -> None:
    """Append an event of an object of kind container, image, volume or network to the journal
    (containers' and images' with the fields of docker's first API, status, id and from, as
    docker's). An event that cannot be written (a full disk) is lost; the command goes on."""
    now = time.time_ns()
    event = {"Type": kind, "Action": action, "Actor": {"ID": actor, "Attributes": attributes},
             "scope": "local", "time": now // 10**9, "timeNano": now}
    if kind in ("container", "image"):
        event.update(status=action, id=actor, **({"from": attributes["image"]} if kind == "container" else {}))
    path = events_path()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, json.dumps(event).encode() + b"\n")
        if os.fstat(fd).st_size > EVENTS_KEPT:
            fcntl.flock(fd, fcntl.LOCK_EX)            # (two appenders past the size: one rotates)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.replace(path, path.with_name(path.name + ".1"))
    except OSError:
        pass
    finally:
        os.close(fd)


def attachment_events(container: Container, started: bool) -> None:
    """A start mounts the container's volumes and connects it to its networks, its end unmounts
    and disconnects: those volumes' and networks' events, as docker's (a bind mount has none,
    nor does a container in another's network namespace)."""
    for mount in container.config.get("Mounts") or []:
        if mount.get("Name"):                                     # (a volume's; a bind's has none)
            attributes = {"driver": "local", "container": container.id}
            if started:
                attributes.update({"destination": mount["Destination"], "read/write": str(mount["RW"]).lower(),
                                   "propagation": ""})
            journal("volume", mount["Name"], "mount" if started else "unmount", attributes)
    mode = container.config.get("NetworkMode") or "bridge"
    first = [] if (container.config.get("Endpoint") or {}).get("Disconnected") else [mode]
    for name in [] if mode.startswith("container:") else [*first, *(container.config.get("Networks") or {})]:
        try:
            record = read_json(networks_dir() / f"{name}.json")   # (network.find's: store is below it)
        except (OSError, ValueError):
            record = {"Id": name, "Name": name, "Driver": name}   # host and none have none
        record_network_event("connect" if started else "disconnect", record, container=container.id)


def record_network_event(action: str, record: dict, **attributes) -> None:
    """A network's event (record: the network's), as docker's: its name and type among the attributes."""
    journal("network", record["Id"], action, {**attributes, "name": record["Name"], "type": record["Driver"]})


def state_events(before: dict, after: dict) -> list[tuple[str, dict]]:
    """The events of a container's state going from before to after: start, oom (its memory
    limit killed it), die (with its exit code), pause, unpause."""
    was, now = before.get("Status") == "running", after.get("Status") == "running"
    again = was and now and (before.get("Pid"), before.get("PidStartTime")) != (after.get("Pid"), after.get("PidStartTime"))
    events = []
    if was and not now and after.get("OOMKilled"):
        events.append(("oom", {}))
    if was and (not now or again):
        events.append(("die", {"exitCode": str(after.get("ExitCode") if not now else before.get("ExitCode"))}))
    if now and (not was or again):
        events.append(("start", {}))
    if was and now and not again and bool(before.get("Paused")) != bool(after.get("Paused")):
        events.append(("pause" if after.get("Paused") else "unpause", {}))
    return events


def read_events(since: float | None = None, until: float | None = None):
    """The journal's events from the time since (None: from this call on), then each as it is
    appended, until the time until (None: for as long as the caller reads): a generator."""
    path = events_path()
    if since is None and until is not None:         # (docker's: until alone replays what came before)
        since = 0
    older = whole_lines(open_quietly(path.with_name(path.name + ".1"))) if since is not None else []
    journal = open_quietly(path)
    if journal is not None and since is None:
        journal.seek(0, os.SEEK_END)
    return follow_events(path, journal, older, since, until)


def follow_events(path: Path, journal, older: list[dict], since: float | None, until: float | None):
    for event in older:                             # the rotated file's first
        if since <= event["timeNano"] / 1e9 and not (until and event["timeNano"] / 1e9 > until):
            yield event
    pending = b""
    while True:
        chunk = journal.read() if journal is not None else b""
        if chunk:
            *lines, pending = (pending + chunk).split(b"\n")
            for event in map(parsed, lines):
                if event is None:
                    continue
                if until and event["timeNano"] / 1e9 > until:
                    return
                if since is None or since <= event["timeNano"] / 1e9:
                    yield event
            continue
        if until and time.time() > until:
            return
        if journal is None or rotated_since(journal, path):    # (all the old one had is read: on to the new)
            if journal is not None:
                journal.close()
            journal, pending = open_quietly(path), b""
            if journal is not None:
                continue
        time.sleep(0.05)


def rotated_since(f, path: Path) -> bool:
    """Whether the file f was opened as has been rotated (a container's log, the events
    journal): a new file at path, or, with a log's max-file 1, the same file started again."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(f.fileno())
    return (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino) or opened.st_size < f.tell()


def open_quietly(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def whole_lines(journal) -> list[dict]:
    if journal is None:
        return []
    with journal:
        return [event for event in map(parsed, journal.read().split(b"\n")) if event is not None]


def parsed(line: bytes) -> dict | None:
    """An event of the journal; None for a line damaged (by a hand edit: appends are whole)."""
    try:
        event = json.loads(line)
        return event if isinstance(event, dict) and isinstance(event.get("timeNano"), int) else None
    except ValueError:
        return None


def new_id() -> str:
    return os.urandom(32).hex()


def create_container(cid: str, config: dict, files: dict[str, str]) -> Container:
    """A new container's folder: its config.json, its own layer's folders and the files given
    (its /etc/hostname and hosts: name -> text), its name checked under the lock. The folder is
    made under a hidden name and renamed into place once complete: no one sees a container
    half-created (a crash leaves the hidden folder: see below)."""
    with UniqueName(config.get("Name")):
        path = containers_dir() / cid
        making = path.with_name(f".creating-{cid}")
        making.mkdir()
        try:
            write_json(making / "config.json", {**config, "Id": cid, "Created": time.time()},
                       durable=not config.get("AutoRemove"))
            for folder in ("upper", "work", "merged"):
                (making / folder).mkdir()
            for name, text in files.items():
                (making / name).write_text(text)
            making.rename(path)
        except BaseException:
            delete_quietly(making)                          # nothing half-created
            raise
    container = Container(path)
    record_event(container, "create")
    return container


def remove_interrupted(root: Path) -> None:
    """The hidden folders of creates and removals that a crash cut short. A create holds the
    containers' lock from its mkdir to its rename: while no one holds it, none is under way. A
    removal's folder ends with its process's pid: once that process is gone, no one deletes it."""
    for folder in root.glob(".removing-*"):          # (.removing-<id>, an older lab's: no pid, no owner)
        owner = folder.name.rsplit("-", 1)[1]        # (a volume's name may have a '-' too)
        if not (owner.isdigit() and os.path.exists(f"/proc/{owner}")):
            delete_quietly(folder)
    with open(root / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return                      # (a create is under way: the next listing looks again)
        for folder in root.glob(".creating-*"):
            delete_quietly(folder)


def rename_container(container: Container, name: str) -> None:
    """docker rename: the same container, another name."""
    if name == container.name:
        raise LabError("Renaming a container with the same name as its current name")   # (docker's words)
    with UniqueName(name, by=container.whole("rename").id):
        old = container.name
        container.config["Name"] = name
        container.save_config()
    record_event(container, "rename", oldName="/" + old)


def list_containers() -> list[Container]:
    root = containers_dir()
    if not root.is_dir():
        return []
    remove_interrupted(root)
    found = []
    for path in root.iterdir():
        if names.ID.fullmatch(path.name) and path.is_dir() and not path.is_symlink():  # (not .lock, .creating-*...)
            try:
                remove_stale_temporaries(path)
                found.append(Container(path))
            except FileNotFoundError:
                pass                    # removed meanwhile
    return sorted(found, key=lambda c: c.config["Created"], reverse=True)


def find_container(ref: str) -> Container:
    """A container by name, full id or unambiguous id prefix."""
    if not names.is_name(ref):      # a NotFound: docker inspect goes on to images after a 404
        raise NotFound(f"no such container: {names.shown(ref)} is not a container's name or id")
    everything = list_containers()
    for c in everything:
        if ref in (c.id, c.config.get("Name")):
            return c
    matches = [c for c in everything if c.id.startswith(ref)] if len(ref) >= 3 else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise LabError(f"{ref!r} matches {len(matches)} containers: give more of the id")
    raise NotFound(f"no such container: {ref} (see `lab ps -a`)")


def remove_container(container: Container) -> None:
    """Rename the folder first (atomic), then delete it: a `lab run` that is still writing its
    final state (lab rm -f while it runs) finds no folder to write into, instead of racing the deletion.
    The hidden name says who deletes it: if that process is gone before it is done (Ctrl-C, a
    kill), the next listing finishes (remove_interrupted)."""
    doomed = container.path.with_name(f".removing-{container.id}-{os.getpid()}")
    try:
        container.path.rename(doomed)
    except FileNotFoundError:
        return                          # removed already
    try:                                # its end unrecorded (rm -f): no one can record it now
        ended_unrecorded = read_json(doomed / "state.json").get("Status") == "running"
    except (OSError, ValueError, AttributeError):
        ended_unrecorded = False
    if ended_unrecorded:
        record_event(container, "die", exitCode="137")
        attachment_events(container, started=False)
    record_event(container, "destroy")
    try:
        delete_folder(doomed)
    except OSError as e:
        raise LabError(f"could not delete the container's folder {doomed}: {e}") from None
