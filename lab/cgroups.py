"""Chapter 02: cgroups, what the process may use.

A control group is a folder in a special filesystem. Its files are its limits and its
counters: write a number to memory.max and the processes listed in cgroup.procs may not use
more memory than that. The kernel has two versions. v2 (the course VM) is one tree with
every controller in it. v1 (older hosts, and hybrid ones like these CI machines) has one tree
per controller: memory, cpu, pids... The runtime has one manager per version behind one
interface: create with limits, join, read the counters, destroy.
See man 7 cgroups, and the kernel's Documentation/admin-guide/cgroup-v2.rst.
"""
import os
import re
import signal
import time
from pathlib import Path

from lab import LabError, devices

ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000            # the scheduler's period for --cpus: 100 ms
UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MAX_MEMORY = (1 << 63) - 1         # bytes: the kernel's largest (a signed 64-bit count); lab refuses more
MAX_PIDS = 1 << 22                 # the kernel's PID_MAX_LIMIT: pids.max refuses more


class Limits:
    def __init__(self, memory: int | None = None, cpus: float | None = None, pids: int | None = None,
                 cpu_shares=None, memory_swap=None, memory_reservation=None, oom_kill_disable=False,
                 memory_swappiness=None, cpuset_cpus=None):
        self.memory = memory       # bytes
        self.cpus = cpus           # CPUs' worth of time, e.g. 0.5
        self.pids = pids           # processes (and threads) at most
        # docker's other resource options (set_tuning writes them):
        self.cpu_shares = cpu_shares               # a weight when CPUs are busy: 1024 is the default
        self.memory_swap = memory_swap             # memory + swap, bytes (-1: no limit on swap)
        self.memory_reservation = memory_reservation   # a soft limit: reclaimed down to first
        self.oom_kill_disable = oom_kill_disable   # at the limit, wait for memory instead of a kill
        self.memory_swappiness = memory_swappiness     # 0-100: how readily its memory goes to swap (v1)
        self.cpuset_cpus = cpuset_cpus             # the CPUs it may run on, as "0-2,5" (a cpuset cgroup)

    @classmethod
    def parse(cls, memory=None, cpus=None, pids=None) -> "Limits":
        """Check the -m, --cpus and --pids-limit flags; bad values are a LabError."""
        limits = cls()
        if memory is not None:
            limits.memory = parse_bytes(memory, "memory limit", "-m 64m")
            if limits.memory < 6 << 20:
                raise LabError(f"memory limit {memory} is too small: the minimum is 6m")
            if limits.memory > MAX_MEMORY:
                raise LabError(f"memory limit {memory} is too large: the kernel takes at most "
                               f"{MAX_MEMORY >> 30}g (2**63-1 bytes); leave -m out for no limit")
        if cpus is not None:
            try:
                limits.cpus = float(cpus)
            except ValueError:
                raise LabError(f"invalid --cpus {cpus!r}: use a number of CPUs, e.g. --cpus 0.5") from None
            if not 0.01 <= limits.cpus <= os.cpu_count():
                raise LabError(f"--cpus {cpus} is out of range: use 0.01 to {os.cpu_count()} (this machine's CPUs)")
        if pids is not None:
            if not re.fullmatch(r"[0-9]+", str(pids)) or int(pids) < 1:
                raise LabError(f"invalid --pids-limit {pids!r}: use a whole number of processes, 1 or more")
            if int(pids) > MAX_PIDS:
                raise LabError(f"--pids-limit {pids} is too large: the kernel takes at most {MAX_PIDS}; "
                               "leave it out for no limit")
            limits.pids = int(pids)
        return limits

    def tune(self, cpu_shares=None, memory_swap=None, memory_reservation=None, oom_kill_disable=False,
             memory_swappiness=None, cpuset_cpus=None) -> "Limits":
        """Check --cpu-shares, --memory-swap, --memory-reservation, --oom-kill-disable,
        --memory-swappiness and --cpuset-cpus (docker's rules)."""
        if cpu_shares not in (None, 0, "0", ""):
            if not str(cpu_shares).isdigit() or not 2 <= int(cpu_shares) <= 262144:
                raise LabError(f"invalid --cpu-shares {cpu_shares!r}: use a weight from 2 to 262144 (1024 is the default)")
            self.cpu_shares = int(cpu_shares)
        if memory_swap not in (None, 0, "0", ""):
            if self.memory is None:
                raise LabError("--memory-swap needs -m: it is memory and swap together")
            self.memory_swap = -1 if str(memory_swap) == "-1" else parse_bytes(memory_swap, "--memory-swap", "--memory-swap 1g")
            if self.memory_swap != -1 and self.memory_swap < self.memory:
                raise LabError(f"--memory-swap {memory_swap} is below -m: it is memory and swap together, "
                               "so at least the memory limit (-1: no limit on swap)")
        if memory_reservation not in (None, 0, "0", ""):
            self.memory_reservation = parse_bytes(memory_reservation, "--memory-reservation", "--memory-reservation 32m")
            if self.memory is not None and self.memory_reservation > self.memory:
                raise LabError("--memory-reservation must be below -m: it is the soft limit under the hard one")
        if oom_kill_disable and version() == "v2":
            raise LabError("--oom-kill-disable: cgroup v2 has no way to turn the OOM killer off for a cgroup")
        self.oom_kill_disable = bool(oom_kill_disable)
        if memory_swappiness not in (None, -1, "-1", ""):
            if not str(memory_swappiness).isdigit() or int(memory_swappiness) > 100:
                raise LabError(f"invalid --memory-swappiness {memory_swappiness!r}: a number from 0 to 100")
            if version() == "v2":
                raise LabError("--memory-swappiness: cgroup v2 has no per-cgroup swappiness")
            self.memory_swappiness = int(memory_swappiness)
        if cpuset_cpus not in (None, ""):
            ranges = re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", str(cpuset_cpus)) and [
                [int(n) for n in part.split("-")] for part in str(cpuset_cpus).split(",")]
            if not ranges or any(r[0] > r[-1] for r in ranges):
                raise LabError(f"invalid --cpuset-cpus {cpuset_cpus!r}: use CPU numbers and ranges, e.g. 0-1,3")
            if max(r[-1] for r in ranges) >= os.cpu_count():
                raise LabError(f"--cpuset-cpus {cpuset_cpus}: requested CPUs are not available "
                               f"(this machine has 0-{os.cpu_count() - 1})")
            self.cpuset_cpus = str(cpuset_cpus)
        return self


def parse_bytes(text, what: str, example: str) -> int:
    """A size as docker's flags take it: bytes, or a number with b, k, m or g (64m)."""
    m = re.fullmatch(r"([0-9]+)([bkmg]?)", str(text).strip().lower())
    if not m:
        raise LabError(f"invalid {what} {text!r}: use a number with b, k, m or g, e.g. {example}")
    return int(m.group(1)) * UNITS[m.group(2)]


def mountinfo() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, super options) for each mount."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ")
        fstype, _, options = right.split()
        found.append((left.split()[4], fstype, options))
    return found


def version() -> str:
    """'v2' when /sys/fs/cgroup is the unified hierarchy, else 'v1' (v1 and hybrid hosts)."""
    return "v2" if any(m == str(ROOT) and t == "cgroup2" for m, t, _ in mountinfo()) else "v1"


def own_cgroups() -> dict[str, str]:
    """This process's cgroup in each hierarchy: {"memory": "/a/b", ..., "": "/"} (v2 is "")."""
    found = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def own_folders(mounts: list[tuple[str, str, str]] | None = None) -> dict[Path, Path]:
    """cgroup v1: each mounted hierarchy (its mount point) -> this process's cgroup folder in it
    (from mounts, mountinfo() read already, or read here)."""
    own, found = own_cgroups(), {}
    for mount, fstype, options in mounts or mountinfo():
        if fstype == "cgroup":
            here = next((own[c] for c in options.split(",") if c in own), "/")
            found[Path(mount)] = Path(mount) / here.lstrip("/")
    return found


def read(path: Path) -> str:
    return path.read_text().strip()


def write(path: Path, value) -> None:
    """Write value into a cgroup file; a refusal names the file and the value (the kernel's
    EINVAL alone says neither)."""
    try:
        path.write_text(f"{value}\n")
    except OSError as e:
        raise LabError(f"writing {value} to {path}: {e.strerror}") from None


class Cgroup:
    """A container's cgroup: its folder in each hierarchy it needs (v2 has one hierarchy).

    What both versions do the same way is here: make the folders, move a process in, list and
    kill what is in it, remove it. Each version's manager (below) says where its folders go and
    which files hold the limits and the counters. `from_paths` rebuilds a manager from the paths
    recorded in a container's state: `lab exec` joins it, `lab rm -f` and the tests destroy it.
    """
    version = ""
    MOVE_FILE = "cgroup.procs"     # write a pid here to move it in ("0": the process that writes)

    def __init__(self, dirs: dict[str, Path]):
        self.dirs = dirs           # controller ("unified" on v2) -> the container's folder

    @classmethod
    def from_paths(cls, paths: dict[str, str]) -> "Cgroup":
        manager = CgroupV2 if set(paths) == {"unified"} else CgroupV1
        return manager({key: Path(path) for key, path in paths.items()})

    @property
    def paths(self) -> dict[str, str]:
        """What the container's state records (`lab inspect` shows it under Cgroup.Paths)."""
        return {key: str(path) for key, path in self.dirs.items()}

    def folders(self) -> list[Path]:
        """Each folder once (v1 mounts cpu and cpuacct together: one folder serves both)."""
        return list(dict.fromkeys(self.dirs.values()))

    def create(self, limits: Limits) -> None:
        made = []
        try:
            for path in self.folders():
                try:
                    path.mkdir()
                except FileExistsError:          # left by this container's last run, whose supervisor
                    try:                         # was killed: empty, it goes
                        path.rmdir()
                    except OSError as e:
                        raise LabError(f"{path}, left by this container's last run, is still in use ({e.strerror}): "
                                       "remove the container (lab rm -f) or end what runs there") from None
                    path.mkdir()
                made.append(path)
            self.set_limits(limits)
            self.set_tuning(limits)
        except BaseException:
            for path in made:
                path.rmdir()
            raise

    def set_limits(self, limits: Limits) -> None:
        raise NotImplementedError          # each version's files: see CgroupV2 and CgroupV1

    def set_tuning(self, limits: Limits) -> None:
        raise NotImplementedError          # docker's other resource options

    def stats(self) -> dict:
        raise NotImplementedError

    def join(self) -> None:
        """Move the calling process into this cgroup (in each of its folders). Called right
        after a fork, by a process that has a single thread."""
        # HINT: a process enters a cgroup by writing a pid into a file of the cgroup's folder, in
        # HINT: every folder this cgroup has (one per hierarchy on v1).
        raise NotImplementedError("chapter 02: write join() in lab/cgroups.py: Move the calling process into this cgroup (in each of its folders) (see chapters/02_cgroups/README.md, 'Your turn')")

    def freeze(self, frozen: bool) -> None:
        """Stop every process in it where it stands, or let them all go on (docker pause and
        unpause): the freezer. No signal is involved, so no process can catch or ignore it."""
        raise NotImplementedError

    def usage(self) -> dict:
        """What it uses now: {"memory": bytes, "pids": processes} (docker stats shows them)."""
        return {what: int(read(self.dirs[tree] / name)) for what, (tree, name) in self.CURRENT.items()}

    def processes(self) -> list[int]:
        """The processes in it (none when it is gone)."""
        return sorted({pid for path in self.folders() for pid in pids_in(path / "cgroup.procs")})

    def destroy(self, timeout: float = 5.0) -> None:
        """Kill what is left in it, wait until it is empty, and remove its folders.

        A cgroup folder can only be removed once no process is in it (rmdir fails with EBUSY).
        """
        deadline = time.monotonic() + timeout
        while (left := self.processes()) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        for folder in self.folders():
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass


class CgroupV2(Cgroup):
    """cgroup v2: one folder for all controllers.

    The kernel's "no internal processes" rule: a cgroup (other than the root) that holds
    processes cannot give its children controllers. The runtime's own cgroup holds the
    runtime, so containers go under /sys/fs/cgroup/lab, a cgroup lab creates and owns, as
    docker's cgroupfs driver uses /sys/fs/cgroup/docker: /sys/fs/cgroup/lab/lab-<id>.
    LAB_CGROUP_PARENT names another (docker's --cgroup-parent): the tests give each of their
    sessions its own.
    """
    version = "v2"
    PARENT = ROOT / (os.environ.get("LAB_CGROUP_PARENT") or "lab")
    CURRENT = {"memory": ("unified", "memory.current"), "pids": ("unified", "pids.current")}

    @classmethod
    def named(cls, name: str) -> "CgroupV2":
        return cls({"unified": cls.PARENT / name})

    @classmethod
    def parents(cls) -> list[Path]:
        """Where containers' cgroups go."""
        return [cls.PARENT]

    def create(self, limits: Limits) -> None:
        self.PARENT.mkdir(exist_ok=True)           # two first runs at once may both try
        wanted = {"memory", "cpu", "pids"} | ({"cpuset"} if limits.cpuset_cpus else set())
        missing = wanted - set(read(ROOT / "cgroup.subtree_control").split())
        if missing:        # (often cpuset) the root hands them out to lab's folder, as runc does for docker's
            absent = missing - set(read(ROOT / "cgroup.controllers").split())
            if absent:
                raise LabError(f"cgroup v2: this kernel has no {', '.join(sorted(absent))} controller ({ROOT}/"
                               "cgroup.controllers lists those it has)" + (": leave --cpuset-cpus out" if absent == {"cpuset"} else ""))
            write(ROOT / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(missing)))
        write(self.PARENT / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(wanted)))
        super().create(limits)

    @property
    def path(self) -> Path:
        return self.dirs["unified"]

    def birthplace(self) -> int:
        """The folder, opened, for clone3() to create the container's process right in it.

        With CLONE_INTO_CGROUP nothing moves, so the write side of the kernel's
        cgroup_threadgroup_rwsem (and its wait for RCU) is never taken (the lesson's "Joining
        costs"). The caller closes it."""
        # HINT: the kernel takes the cgroup as a file descriptor of its folder, opened for
        # HINT: reading; the runtime closes it once the child has started, and the container's
        # HINT: command must not inherit it (close-on-exec).
        raise NotImplementedError("chapter 02: write birthplace() in lab/cgroups.py: The folder, opened, for clone3() to create the container's process right in it (see chapters/02_cgroups/README.md, 'Your turn')")

    def set_limits(self, limits: Limits) -> None:
        """Write the limits into the cgroup's files (memory.max, memory.swap.max, cpu.max, pids.max)."""
        # HINT: each limit is one file of the cgroup's folder, written as text; on v2 their names
        # HINT: end in .max, and 'max' means no limit.
        raise NotImplementedError("chapter 02: write set_limits() in lab/cgroups.py: Write the limits into the cgroup's files (memory.max, memory.swap.max, cpu.max, pids.max) (see chapters/02_cgroups/README.md, 'Your turn')")

    def set_tuning(self, limits: Limits) -> None:
        """cpu.weight (1 to 10000; docker's shares mapped as runc maps them), memory.swap.max
        (the swap alone: v2 counts it apart from memory), memory.low, cpuset.cpus."""
        if limits.cpu_shares is not None:
            write(self.path / "cpu.weight", 1 + (limits.cpu_shares - 2) * 9999 // 262142)
        if limits.memory_swap is not None:
            write(self.path / "memory.swap.max",
                  "max" if limits.memory_swap == -1 else limits.memory_swap - limits.memory)
        if limits.memory_reservation is not None:
            write(self.path / "memory.low", limits.memory_reservation)
        if limits.cpuset_cpus is not None:
            write(self.path / "cpuset.cpus", limits.cpuset_cpus)

    def stats(self) -> dict:
        """The counters: MemoryPeak (bytes), CpuUsageNs, CpuPeriods, CpuThrottled, OOMKills, PidsRefused."""
        # HINT: what the kernel counted is in the same folder: read the files and pick the numbers
        # HINT: from their 'key value' lines.
        raise NotImplementedError("chapter 02: write stats() in lab/cgroups.py: The counters: MemoryPeak (bytes), CpuUsageNs, CpuPeriods, CpuThrottled, OOMKills, PidsRefused (see chapters/02_cgroups/README.md, 'Your turn')")

    def freeze(self, frozen: bool) -> None:
        """cgroup.freeze; the kernel says in cgroup.events when every process has stopped."""
        write(self.path / "cgroup.freeze", int(frozen))
        settle(lambda: f"frozen {int(frozen)}" in read(self.path / "cgroup.events").splitlines())

    def allow_devices(self, privileged: bool, more=()) -> None:
        """Which device nodes its processes may open (chapter 08): a BPF program on v2. more:
        --device-cgroup-rule's rules, allowed too."""
        devices.allow_v2(self.path, devices.rules(more), privileged)

    def cgroupfs_mounts(self) -> list[tuple[str, str, str]]:
        """What the container sees at /sys/fs/cgroup (security.mount_cgroupfs): one cgroup2."""
        return [("", "cgroup2", "")]


class CgroupV1(Cgroup):
    """cgroup v1: one tree per controller. The container gets a folder in each tree it
    needs (memory, cpu, cpuacct, pids, devices), right below this process's own cgroup there:
    MOUNT/<this process's cgroup>/lab-<id>, e.g. /sys/fs/cgroup/memory/user.slice/lab-<id>."""
    version = "v1"
    CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "devices")
    OPTIONAL = ("freezer",)            # used when mounted: docker pause needs it
    CURRENT = {"memory": ("memory", "memory.usage_in_bytes"), "pids": ("pids", "pids.current")}
    # v1 can move one thread: "0" written to `tasks` moves the writing thread only, and for
    # that the kernel skips the global lock that moving a whole process takes (its writer
    # waits for an RCU grace period: ~10 ms here). Right after a fork the child has one
    # thread, so this moves all of it. (See chapters/02_cgroups/README.md, "Joining costs".)
    MOVE_FILE = "tasks"

    @classmethod
    def hierarchies(cls, table: list[tuple[str, str, str]] | None = None) -> dict[str, tuple[Path, str]]:
        """Each controller lab needs -> (its hierarchy's mount point, the mount's options)."""
        mounts = {c: (Path(m), options) for m, t, options in table or mountinfo() if t == "cgroup"
                  for c in options.split(",") if c in cls.CONTROLLERS + cls.OPTIONAL}
        missing = [c for c in cls.CONTROLLERS if c not in mounts]
        if missing:
            raise LabError(f"cgroup v1: no hierarchy for {', '.join(missing)} is mounted (see `lab doctor`)")
        return mounts

    @classmethod
    def parents(cls) -> list[Path]:
        """Where this process's containers' cgroups go: its own cgroup, in each hierarchy (and
        in cpuset's, which --cpuset-cpus uses)."""
        table = mountinfo()
        own = own_folders(table)
        cpuset = [own[mount] for mount in [cls.cpuset_mount(table)] if mount is not None]
        return list(dict.fromkeys([own[mount] for mount, _ in cls.hierarchies(table).values()] + cpuset))

    @staticmethod
    def cpuset_mount(table: list[tuple[str, str, str]]) -> Path | None:
        """Where the cpuset hierarchy is mounted, if it is (--cpuset-cpus uses it)."""
        return next((Path(m) for m, t, options in table if t == "cgroup" and "cpuset" in options.split(",")), None)

    @classmethod
    def named(cls, name: str) -> "CgroupV1":
        table = mountinfo()
        own = own_folders(table)
        return cls({c: own[mount] / name for c, (mount, _) in cls.hierarchies(table).items()})

    def set_limits(self, limits: Limits) -> None:
        """Write the limits: memory.limit_in_bytes (and memsw), cpu.cfs_quota_us, pids.max."""
        # HINT: on v1 each controller has a tree of its own: each limit is a file in the folder of
        # HINT: its controller's tree.
        raise NotImplementedError("chapter 02: write set_limits() in lab/cgroups.py: Write the limits: memory.limit_in_bytes (and memsw), cpu.cfs_quota_us, pids.max (see chapters/02_cgroups/README.md, 'Your turn')")

    def create(self, limits: Limits) -> None:
        """With --cpuset-cpus, a folder in the cpuset tree too (only then: a new cpuset folder
        starts with no CPUs and no memory nodes, and a process cannot join it before both are set)."""
        if limits.cpuset_cpus is not None and "cpuset" not in self.dirs:
            table = mountinfo()
            mount = self.cpuset_mount(table)
            if mount is None:
                raise LabError("--cpuset-cpus: no cgroup v1 hierarchy for cpuset is mounted")
            self.dirs["cpuset"] = own_folders(table)[mount] / self.dirs["memory"].name
        super().create(limits)

    def set_tuning(self, limits: Limits) -> None:
        """cpu.shares, memory.memsw.limit_in_bytes (memory and swap together), memory's
        soft_limit_in_bytes, memory.oom_control (1: no OOM kill, the process waits), and the
        cpuset's CPUs (and its memory nodes: its parent's)."""
        memory = self.dirs["memory"]
        if limits.cpu_shares is not None:
            write(self.dirs["cpu"] / "cpu.shares", limits.cpu_shares)
        if limits.memory_swap is not None:
            if not (memory / "memory.memsw.limit_in_bytes").exists():
                raise LabError("--memory-swap: this kernel does not account swap (no memory.memsw files)")
            write(memory / "memory.memsw.limit_in_bytes", limits.memory_swap)
        if limits.memory_reservation is not None:
            write(memory / "memory.soft_limit_in_bytes", limits.memory_reservation)
        if limits.oom_kill_disable:
            write(memory / "memory.oom_control", 1)
        if limits.memory_swappiness is not None:
            write(memory / "memory.swappiness", limits.memory_swappiness)
        if limits.cpuset_cpus is not None and "cpuset" in self.dirs:
            cpuset = self.dirs["cpuset"]
            if not read(cpuset / "cpuset.mems"):
                write(cpuset / "cpuset.mems", read(cpuset.parent / "cpuset.mems"))
            write(cpuset / "cpuset.cpus", limits.cpuset_cpus)

    def stats(self) -> dict:
        """The counters: MemoryPeak (bytes), CpuUsageNs, CpuPeriods, CpuThrottled, OOMKills, PidsRefused."""
        # HINT: on v1 the counters are spread over the controllers' trees: read each one in its own
        # HINT: tree's folder.
        raise NotImplementedError("chapter 02: write stats() in lab/cgroups.py: The counters: MemoryPeak (bytes), CpuUsageNs, CpuPeriods, CpuThrottled, OOMKills, PidsRefused (see chapters/02_cgroups/README.md, 'Your turn')")

    def freeze(self, frozen: bool) -> None:
        """The freezer tree's freezer.state: FROZEN once every process has stopped."""
        if "freezer" not in self.dirs:
            raise LabError("cgroup v1: this container has no freezer cgroup (no freezer hierarchy is mounted, "
                           "or it was started before lab used one): lab cannot pause it")
        state = "FROZEN" if frozen else "THAWED"
        write(self.dirs["freezer"] / "freezer.state", state)
        settle(lambda: read(self.dirs["freezer"] / "freezer.state") == state)

    def allow_devices(self, privileged: bool, more=()) -> None:
        """Which device nodes its processes may open (chapter 08): the devices controller. more:
        --device-cgroup-rule's rules, allowed too."""
        devices.allow_v1(self.dirs["devices"], devices.rules(more), privileged)

    def cgroupfs_mounts(self) -> list[tuple[str, str, str]]:
        """What the container sees at /sys/fs/cgroup (security.mount_cgroupfs): each of its
        hierarchies, named as the host names them (cpu,cpuacct), with the host's options."""
        found = {}
        for mount, options in self.hierarchies().values():
            found[mount.name] = ",".join(o for o in options.split(",") if o not in ("rw", "ro"))
        return [(folder, "cgroup", options) for folder, options in found.items()]


def settle(done, timeout: float = 5.0) -> None:
    """Wait until done() (the kernel freezes a cgroup's processes one by one, not at once)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise LabError(f"the cgroup's processes did not all stop or go on within {timeout:.0f} s")
        time.sleep(0.001)


def pids_in(procs: Path) -> list[int]:
    """The processes listed in a cgroup.procs file; none when the cgroup is gone (lab rm -f)."""
    try:
        return [int(p) for p in read(procs).split()]
    except OSError:
        return []


def manager() -> type[Cgroup]:
    """The cgroup manager for this machine: CgroupV2 or CgroupV1."""
    return CgroupV2 if version() == "v2" else CgroupV1


def create(name: str, limits: Limits) -> Cgroup:
    """A new cgroup called name, with the given limits: on v1 below this process's own cgroup
    in each hierarchy, on v2 in CgroupV2.PARENT (/sys/fs/cgroup/lab)."""
    cgroup = manager().named(name)
    cgroup.create(limits)
    return cgroup
