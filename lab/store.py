"""What the runtime keeps on disk, under LAB_ROOT (default /var/lib/lab).

    images/      one JSON file per image, and tags.json (name:tag -> image id)
    layers/      image layers, one folder each, named by the sha256 of their tar
    containers/  <id>/config.json (what to run), <id>/state.json (how it is going), and the
                 container's own layer: <id>/upper (its changes), <id>/work (overlay's
                 scratch space), <id>/merged (where the union is mounted, in its namespace)

State on disk is the truth: `lab ps` reads it and checks it against the live processes.
Files are written whole or not at all (write a temporary file, then rename it).
"""
import json
import os
import time
from pathlib import Path

from lab import Conflict, LabError, NotFound


def lab_root() -> Path:
    return Path(os.environ.get("LAB_ROOT") or "/var/lib/lab")


def write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path):
    return json.loads(path.read_text())


class Container:
    def __init__(self, path: Path):
        self.path = path
        self.id = path.name
        self.config = read_json(path / "config.json")
        self.reload()

    def reload(self) -> None:
        """Read state.json again (another process may have changed it)."""
        try:
            self.state = read_json(self.path / "state.json")
        except FileNotFoundError:
            self.state = getattr(self, "state", None) or {"Status": "created"}

    @property
    def name(self) -> str:
        return self.config.get("Name") or self.id[:12]

    def save_state(self, **changes) -> None:
        self.state.update(changes)
        try:
            write_json(self.path / "state.json", self.state)
        except FileNotFoundError:
            pass                # removed meanwhile (lab rm -f): nothing left to record

    def is_running(self) -> bool:
        """Running on disk and its process still alive (the same process: same start time)."""
        pid = self.state.get("Pid")
        if self.state.get("Status") != "running" or not pid:
            return False
        return process_start_time(pid) == self.state.get("PidStartTime")

    def status_text(self) -> str:
        """What `lab ps` says in its STATUS column."""
        if self.is_running():
            return f"Up {ago(time.time() - self.state['StartedAt'])}"
        if self.state.get("Status") == "exited":
            return f"Exited ({self.state['ExitCode']}) {ago(time.time() - self.state['FinishedAt'])} ago"
        if self.state.get("Status") == "running":
            return "Exited (unknown): its process is gone"
        return "Created"

    def has_supervisor(self) -> bool:
        """Its supervisor (supervisor.py: run -d, the engine) is still there."""
        pid = self.state.get("Supervisor")
        return bool(pid) and process_start_time(pid) == self.state.get("SupervisorStartTime")

    def wait_for_supervisor(self, timeout: float) -> None:
        """Wait (up to timeout seconds) until its supervisor has exited."""
        deadline = time.monotonic() + timeout
        while self.has_supervisor() and time.monotonic() < deadline:
            time.sleep(0.01)

    def inspect(self) -> dict:
        """What `lab inspect` shows, in docker's shape where docker has one."""
        from lab.images import layer_path
        def iso(t):
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None
        config, state, limits = self.config, self.state, self.config.get("Limits", {})
        running = self.is_running()
        cgroup = state.get("Cgroup", {})
        stats = cgroup.get("Stats") or {}
        return {
            "Id": self.id, "Name": self.name, "Created": iso(config["Created"]),
            "Path": config["Cmd"][0], "Args": config["Cmd"][1:], "Image": config["ImageId"],
            "State": {"Status": "running" if running else ("exited" if state.get("Status") != "created" else "created"),
                      "Running": running, "Pid": state.get("Pid", 0) if running else 0,
                      "ExitCode": state.get("ExitCode"), "OOMKilled": state.get("OOMKilled", False),
                      "StartedAt": iso(state.get("StartedAt")), "FinishedAt": iso(state.get("FinishedAt"))},
            "Config": {"Hostname": config["Hostname"], "Env": config["Env"], "Cmd": config["Cmd"],
                       "Image": config["Image"], "WorkingDir": config["WorkingDir"]},
            "HostConfig": {"Memory": limits.get("memory") or 0,
                           "NanoCpus": round((limits.get("cpus") or 0) * 1e9),
                           "PidsLimit": limits.get("pids"), **security_fields(config.get("Security"))},
            "Mounts": [{"Type": m["Type"], **({"Name": m["Name"]} if m["Name"] else {}), "Source": m["Source"],
                        "Destination": m["Destination"], "Mode": "" if m["RW"] else "ro", "RW": m["RW"],
                        "Propagation": "rprivate"} for m in config.get("Mounts", [])],
            "GraphDriver": {"Name": "overlay", "Data": {
                "LowerDir": ":".join(str(layer_path(d)) for d in reversed(config.get("Layers", []))),
                "UpperDir": str(self.path / "upper"), "WorkDir": str(self.path / "work"),
                "MergedDir": str(self.path / "merged")}},
            "Cgroup": {"Version": cgroup.get("Version"), "Paths": cgroup.get("Paths", {}),
                       "MemoryPeak": stats.get("MemoryPeak"),
                       "CpuTimeSeconds": stats["CpuUsageNs"] / 1e9 if stats else None,
                       "CpuPeriods": stats.get("CpuPeriods"), "CpuThrottled": stats.get("CpuThrottled"),
                       "PidsRefused": stats.get("PidsRefused")},
        }


def security_fields(options: dict | None) -> dict:
    """HostConfig's fields for chapter 08, as docker shows them."""
    if not options:
        return {}
    seccomp = options.get("Seccomp")
    opts = (["no-new-privileges"] if options.get("NoNewPrivileges") else []) + \
        (["seccomp=unconfined"] if seccomp == "unconfined" else ["seccomp=<profile>"] if seccomp else [])
    return {"Privileged": options.get("Privileged", False), "CapAdd": options.get("CapAdd") or None,
            "CapDrop": options.get("CapDrop") or None, "SecurityOpt": opts or None,
            "Capabilities": options.get("Capabilities")}


def ago(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} seconds"


def exit_of(container: Container) -> dict:
    """How the container ended, as the Engine API's wait answers it."""
    container.reload()
    error = container.state.get("Error")
    return {"StatusCode": container.state.get("ExitCode", 0), "Error": {"Message": error} if error else None}


def process_start_time(pid: int) -> int | None:
    """When pid started, in clock ticks since boot (field 22 of /proc/PID/stat); None when
    there is no such process, or it is a zombie (it has ended; only its status is left)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def containers_dir() -> Path:
    return lab_root() / "containers"


def create_container(config: dict) -> Container:
    name = config.get("Name")
    if name and any(c.config.get("Name") == name for c in list_containers()):
        raise Conflict(f'the container name "{name}" is already in use: '
                       f"remove it first (lab rm {name}) or choose another --name")
    cid = os.urandom(32).hex()
    path = containers_dir() / cid
    path.mkdir(parents=True)
    write_json(path / "config.json", {**config, "Id": cid, "Created": time.time()})
    return Container(path)


def list_containers() -> list[Container]:
    root = containers_dir()
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if not path.name.startswith(".") and (path / "config.json").exists():
            try:
                found.append(Container(path))
            except FileNotFoundError:
                pass                    # removed meanwhile
    return sorted(found, key=lambda c: c.config["Created"], reverse=True)


def find_container(ref: str) -> Container:
    """A container by name, full id or unambiguous id prefix."""
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
    final state (lab rm -f while it runs) finds no folder to write into, instead of racing rmtree."""
    import shutil
    doomed = container.path.with_name(f".removing-{container.id}")
    try:
        container.path.rename(doomed)
    except FileNotFoundError:
        return                          # removed already
    try:
        shutil.rmtree(doomed)
    except OSError as e:
        raise LabError(f"could not delete the container's folder {doomed}: {e}") from None
