#!/usr/bin/env python3
"""`make bench`: how fast a container starts; lab against runc, crun and the bare kernel.

Each round starts /bin/true once per runtime, in turn (interleaved, so that a busy moment of
the machine hits them all alike), on the same busybox rootfs:

    lab run        the reference runtime: namespaces, a cgroup with limits, overlay, pivot_root,
                   chapter 08's confinement (capabilities, seccomp, masks, devices)
    lab run (no 08) the same with chapter 08 left blank, as a learner's runtime before it: the
                   difference is what chapter 08 costs
    engine API     `lab daemon`: create, wait (condition=removed), start, as `docker run --rm` calls them
    docker run     the docker CLI (Debian's docker.io client) on `lab daemon`
    runc, crun     `runc run` / `crun run` on an OCI bundle of busybox's layer
    unshare+chroot the same namespaces and a chroot, from util-linux: the kernel's floor
    fork/exec      /bin/true, no container

It prints the median and spread of each and its ratio to lab's, lab's time by phase
(LAB_TRACE=1), what `lab run` imports (python -X importtime), its peak memory, and how the
cost grows with running containers and image layers, and the daemon's memory, idle and with 20
containers running (each with its supervisor). Results (a markdown table and charts)
go to results/bench/. No timing is asserted anywhere: these are measurements.

runc and crun make cgroups. So that they make them below this process's own cgroup, as
everything here must, they run from a helper process in a mount namespace of its own, where
each cgroup v1 hierarchy's mount shows this process's cgroup as its root, and (for crun,
which would take the nearly empty v2 mount of a hybrid host for the real one) without
/sys/fs/cgroup/unified. On cgroup v2 they go below /sys/fs/cgroup/lab, lab's own.
"""
import argparse
import http.client
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import lab_impl  # noqa: E402

os.environ["LAB_IMPL"] = "solutions"
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)      # lab starts from cached bytecode, as it does for you
lab_impl.activate()
from lab import cgroups, images, store, syscalls  # noqa: E402

LAB = str(Path(sys.executable).with_name("lab"))
LIMITS = ["-m", "256m", "--pids-limit", "1000", "--network", "none"]    # (runc's bundle: lo only too)


def timed(argv: list[str], env=None) -> tuple[float, int, int]:
    """Start argv, wait for it: seconds, peak memory (kB, of it or its largest child), status."""
    null = os.open(os.devnull, os.O_RDWR)
    actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1)]
    start = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, env or os.environ, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    os.close(null)
    return elapsed, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def oci_bundle(folder: Path, rootfs: Path, cgroups_path: str) -> Path:
    """An OCI runtime bundle: busybox's files and a config.json like `runc spec`'s, running /bin/true."""
    shutil.copytree(rootfs, folder / "rootfs", symlinks=True)
    config = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
                    "env": [f"PATH={images.DEFAULT_PATH}"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "bench",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                   {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                    "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                   {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                    "options": ["nosuid", "noexec", "nodev", "ro"]}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network", "cgroup")],
                  "cgroupsPath": cgroups_path,
                  "resources": {"memory": {"limit": 256 << 20}, "pids": {"limit": 1000}}},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


class Helper:
    """A child process, in a mount namespace of its own, that times runc and crun runs."""

    def __init__(self):
        read_requests, self.write_requests = os.pipe()
        self.read_results, write_results = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.write_requests)
            os.close(self.read_results)
            try:
                self.serve(os.fdopen(read_requests), os.fdopen(write_results, "w"))
            finally:
                os._exit(0)
        os.close(read_requests)
        os.close(write_results)
        self.results = os.fdopen(self.read_results)
        self.send = os.fdopen(self.write_requests, "w")

    @staticmethod
    def serve(requests, results):
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        if cgroups.version() == "v1":
            for mount, here in cgroups.own_folders().items():
                if here != mount:        # show our own cgroup as the hierarchy's root
                    syscalls.mount(str(here), str(mount), None, syscalls.MS_BIND)
            if Path("/sys/fs/cgroup/unified").is_mount():
                syscalls.umount2("/sys/fs/cgroup/unified", syscalls.MNT_DETACH)
        for line in requests:
            result = timed(json.loads(line))
            results.write(json.dumps(result) + "\n")
            results.flush()

    def run(self, argv: list[str]) -> tuple[float, int, int]:
        self.send.write(json.dumps(argv) + "\n")
        self.send.flush()
        return tuple(json.loads(self.results.readline()))

    def close(self):
        self.send.close()
        os.waitpid(self.pid, 0)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("lab", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


class Engine:
    """A `lab daemon` of the bench's own, and the calls `docker run --rm` makes to it."""

    def __init__(self, work: Path):
        self.socket = str(work / "lab.sock")
        self.process = subprocess.Popen([LAB, "daemon", "--socket", self.socket], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while self.call("GET", "/_ping", expect=None) != 200:
            assert time.monotonic() < deadline and self.process.poll() is None, "lab daemon did not start"
            time.sleep(0.05)
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(work)}

    def call(self, method: str, path: str, body=None, expect=(200, 201, 204)):
        conn = UnixHTTPConnection(self.socket)
        try:
            conn.request(method, "/v1.43" + path, body=json.dumps(body) if body is not None else None,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        except OSError:
            return None
        finally:
            conn.close()
        if expect and response.status not in expect:
            raise SystemExit(f"bench: {method} {path} -> {response.status}: {data[:200]!r}")
        return json.loads(data) if data and expect else response.status

    def create(self, command: list[str], remove: bool) -> str:
        return self.call("POST", "/containers/create", {
            "Image": "busybox", "Cmd": command,
            "HostConfig": {"Memory": 256 << 20, "PidsLimit": 1000, "AutoRemove": remove, "NetworkMode": "none"}})["Id"]

    def run_true(self) -> tuple[float, int, int]:
        """create, wait (its headers), start, then the wait's answer: like timed(), no memory."""
        start = time.perf_counter()
        cid = self.create(["true"], remove=True)
        waiting = UnixHTTPConnection(self.socket)
        waiting.request("POST", f"/v1.43/containers/{cid}/wait?condition=removed")
        response = waiting.getresponse()                     # the headers come at once
        self.call("POST", f"/containers/{cid}/start")
        status = json.loads(response.read())["StatusCode"]
        waiting.close()
        return time.perf_counter() - start, 0, status

    def memory(self, running: int, runs: int) -> dict[str, float]:
        """The daemon's resident memory idle, across `runs` more runs (it must not grow), with
        `running` containers; and their supervisors'."""
        found = {"daemon RSS idle (MB)": rss_mb(self.process.pid)}
        for _ in range(runs):
            self.run_true()
        found[f"daemon RSS after {runs} more runs (MB)"] = rss_mb(self.process.pid)
        ids = [self.create(["sleep", "600"], remove=False) for _ in range(running)]
        for cid in ids:
            self.call("POST", f"/containers/{cid}/start")
        found[f"daemon RSS with {running} running (MB)"] = rss_mb(self.process.pid)
        supervisors = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/comm")
                       if read(p) == "lab-supervisor\n" and self.ours(int(p.parent.name))]
        found["supervisors running"] = len(supervisors)
        found["one supervisor's RSS (MB, median)"] = statistics.median(rss_mb(pid) for pid in supervisors)
        found["one supervisor's PSS (MB, median; shared pages split)"] = statistics.median(
            pss_mb(pid) for pid in supervisors)
        zygote = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/comm")
                  if read(p) == "lab-zygote\n" and self.ours(int(p.parent.name))]
        found["the zygote's RSS (MB; it forks the supervisors)"] = rss_mb(zygote[0]) if zygote else "none"
        for cid in ids:
            self.call("DELETE", f"/containers/{cid}?force=1")
        return found

    def ours(self, pid: int) -> bool:
        return self.socket.split("/lab.sock")[0] in read(Path(f"/proc/{pid}/cmdline")).replace("\0", " ")

    def close(self):
        self.process.terminate()
        self.process.wait(30)


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def rss_mb(pid: int) -> float:
    return next(int(line.split()[1]) for line in read(Path(f"/proc/{pid}/status")).splitlines()
                if line.startswith("VmRSS:")) / 1024


def pss_mb(pid: int) -> float:
    return next(int(line.split()[1]) for line in read(Path(f"/proc/{pid}/smaps_rollup")).splitlines()
                if line.startswith("Pss:")) / 1024


def runtimes(work: Path, layer: Path, helper: Helper, engine: Engine) -> dict:
    """name -> a function that starts /bin/true once and returns timed()'s answer (or why it cannot)."""
    counter = iter(range(10 ** 6))
    found = {}
    found["lab run"] = lambda: timed([LAB, "run", "--rm", *LIMITS, "busybox", "true"])
    sys.path.insert(0, str(ROOT / "tools"))
    import make_skeleton
    make_skeleton.make_skeleton(work / "no-08" / "lab", chapters={"08"})
    without_08 = {**os.environ, "LAB_IMPL": str(work / "no-08")}
    found["lab run (no 08)"] = lambda: timed([LAB, "run", "--rm", *LIMITS, "busybox", "true"], env=without_08)
    found["engine API (create, wait, start)"] = engine.run_true
    docker = Path(sys.executable).with_name("docker")
    found["docker run (CLI on lab daemon)"] = (
        (lambda: timed([str(docker), "run", "--rm", *LIMITS, "busybox", "true"], env=engine.env))
        if docker.exists() else "not installed (make setup)")
    for name in ("runc", "crun"):
        binary = shutil.which(name)
        if binary is None:
            found[name] = f"not installed (apt-get install {name})"
            continue
        parent = "/lab" if cgroups.version() == "v2" else ""
        bundle = oci_bundle(work / name, layer, f"{parent}/lab-bench-{name}-{os.getpid()}")
        state = work / f"{name}-state"

        def one(binary=binary, bundle=bundle, state=state, name=name):
            return helper.run([binary, "--root", str(state), "run", "--bundle", str(bundle),
                               f"bench-{name}-{next(counter)}"])
        seconds, _, status = one()
        found[name] = one if status == 0 else f"could not run here (exit status {status})"
    floor = ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "--cgroup",
             "chroot", str(layer), "/bin/true"]
    found["unshare+chroot"] = lambda: timed(floor)
    found["fork/exec"] = lambda: timed(["/bin/true"])
    return found


def trace_phases(runs: int) -> dict[str, float]:
    """lab run's phases (LAB_TRACE=1), the median of each in ms."""
    phases: dict[str, list[float]] = {}
    with tempfile.NamedTemporaryFile(suffix=".json") as data:
        for _ in range(runs):
            env = {**os.environ, "LAB_TRACE": "1", "LAB_TRACE_T0": str(time.monotonic()), "LAB_TRACE_FILE": data.name}
            subprocess.run([LAB, "run", "--rm", *LIMITS, "busybox", "true"], capture_output=True, env=env, check=True)
            trace = json.loads(Path(data.name).read_text())
            for name, ms in trace["phases_ms"]:
                phases.setdefault(name, []).append(ms)
            phases.setdefault(PEAK, []).append(trace["peak_mb"])
    return {name: statistics.median(values) for name, values in phases.items()}


PEAK = "peak memory of lab (MB)"      # trace's last line: lab's own VmHWM, not a phase


def imports() -> tuple[float, list[str]]:
    """What `lab run` imports beyond the interpreter's own start: total ms, and the modules."""
    result = subprocess.run([sys.executable, "-S", "-X", "importtime", LAB, "run", "--rm", *LIMITS, "busybox", "true"],
                            capture_output=True, text=True)          # -S: as the `lab` command starts
    bare = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c", "pass"], capture_output=True, text=True)

    def modules(text):       # "import time: self | cumulative | name", nesting shown by indentation
        return {line.split("|")[2][1:].rstrip(): int(line.split("|")[1]) for line in text.splitlines()
                if line.startswith("import time:") and line.split("|")[1].strip().isdigit()}
    base = {name.strip() for name in modules(bare.stderr)}
    extra = {name: us for name, us in modules(result.stderr).items() if name.strip() not in base}
    top = {name: us for name, us in extra.items() if not name.startswith(" ")}   # cumulative includes nested
    return sum(top.values()) / 1000, sorted(name.strip() for name in extra)


def pull_throughput(work: Path, quick: bool) -> list[tuple[str, float]]:
    """lab pull against skopeo copy of the same image from a registry on 127.0.0.1 (Debian's
    docker-registry), interleaved: MB/s of compressed layers, medians. skopeo only stores the
    blobs (oci: layout); lab pull also unpacks each layer into the store."""
    sys.path.insert(0, str(ROOT / "chapters" / "10_images"))
    import gzip
    import registries
    size = (16 if quick else 64) << 20
    layers = [registries.archives.tar([("data", os.urandom(size // 2))]),
              registries.archives.tar([("more", os.urandom(size // 2))])]
    server = registries.RegistryServer(work / "registry")
    try:
        image = registries.oci_index(work / "image", {registries.archives.ARCH: (layers, ["sh"])})
        registries.skopeo_copy(f"oci:{image}", f"docker://{server.host}/bench/pull:1")
        ref = f"{server.host}/bench/pull:1"
        compressed = sum(len(gzip.compress(layer, compresslevel=6, mtime=0)) for layer in layers) / 1e6
        times: dict[str, list[float]] = {"lab pull": [], "skopeo copy": []}
        for n in range(3 if quick else 7):
            root = work / f"pull-root-{n}"
            runs = [("lab pull", [LAB, "pull", ref], {**os.environ, "LAB_ROOT": str(root)}),
                    ("skopeo copy", ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                                     f"docker://{ref}", f"oci:{work / f'skopeo-{n}'}"], None)]
            random.shuffle(runs)
            for name, argv, env in runs:
                seconds, _, status = timed(argv, env)
                if status != 0:
                    raise SystemExit(f"bench: {name} failed with exit status {status}")
                times[name].append(seconds)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(work / f"skopeo-{n}", ignore_errors=True)
    finally:
        server.stop()
    medians = {name: statistics.median(values) for name, values in times.items()}
    return [(f"{name}: {compressed / seconds:.0f} MB/s ({compressed:.0f} MB in {seconds * 1000:.0f} ms)", seconds)
            for name, seconds in medians.items()] + \
        [("lab pull time / skopeo copy time", medians["lab pull"] / medians["skopeo copy"])]


def summary(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    low, high = ordered[len(ordered) // 10], ordered[-1 - len(ordered) // 10]
    return statistics.median(ordered), low, high


def scaling(quick: bool) -> list[tuple[str, float]]:
    """Per-container start cost with N containers started one after another, 10 at once, and
    with images of 1, 10 and 40 layers."""
    rows = []
    counts = (1, 10) if quick else (1, 10, 50)
    for count in counts:
        names = [f"bench-seq-{count}-{i}" for i in range(count)]
        start = time.perf_counter()
        for name in names:
            subprocess.run([LAB, "run", "-d", "--name", name, "busybox", "sleep", "600"], check=True,
                           capture_output=True)
        rows.append((f"{count} started one after another (run -d), per container",
                     (time.perf_counter() - start) / count * 1000))
        subprocess.run([LAB, "rm", "-f", *names], check=True, capture_output=True)
    names = [f"bench-par-{i}" for i in range(10)]
    start = time.perf_counter()
    runs = [subprocess.Popen([LAB, "run", "-d", "--name", n, "busybox", "sleep", "600"],
                             stdout=subprocess.DEVNULL) for n in names]
    assert all(run.wait() == 0 for run in runs)
    rows.append(("10 started at once, wall time per container", (time.perf_counter() - start) / 10 * 1000))
    subprocess.run([LAB, "rm", "-f", *names], check=True, capture_output=True)
    image, built = "busybox", 1
    for layers in ((1, 10) if quick else (1, 10, 40)):
        while built < layers:            # one more layer: a container adds a file, and is committed
            subprocess.run([LAB, "run", "--name", "bench-layer", image, "touch", f"/layer-{built}"],
                           check=True, capture_output=True)
            image = f"bench-layers:{built + 1}"
            subprocess.run([LAB, "commit", "bench-layer", image], check=True, capture_output=True)
            subprocess.run([LAB, "rm", "bench-layer"], check=True, capture_output=True)
            built += 1
        times = [timed([LAB, "run", "--rm", image, "true"])[0] for _ in range(5 if quick else 15)]
        rows.append((f"lab run of an image of {layers} layers", statistics.median(times) * 1000))
    return rows


def chart(out: Path, stats: dict, phases: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [3, 2]})
    names = list(stats)
    medians = [stats[n][0] * 1000 for n in names]
    errors = [[(stats[n][0] - stats[n][1]) * 1000 for n in names], [(stats[n][2] - stats[n][0]) * 1000 for n in names]]
    left.barh(names, medians, xerr=errors, color="tab:blue", capsize=3)
    left.invert_yaxis()
    left.set_xlabel("ms to start /bin/true and see it end (median, 10th-90th percentile)")
    left.set_title("container start, side by side")
    bottom = 0.0
    for name, ms in phases.items():
        right.bar(["lab run"], [ms], bottom=[bottom], label=f"{name} ({ms:.1f} ms)")
        bottom += ms
    right.set_ylabel("ms")
    right.set_title("lab run by phase (LAB_TRACE=1)")
    right.legend(fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    plt.tight_layout()
    fig.savefig(out / "startup.png", dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description="how fast a container starts: lab, runc, crun, the kernel")
    parser.add_argument("--runs", type=int, default=30, help="rounds (each starts every runtime once)")
    parser.add_argument("--quick", action="store_true", help="smaller scaling runs (the smoke test)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: containers need root: sudo make bench")
    args.out.mkdir(parents=True, exist_ok=True)
    # A network namespace of the benchmark's own: the containers started without --network
    # none (the scaling runs: run -d, the layered images) get lab's bridge and rules there,
    # never on this machine's network (chapter 09).
    syscalls.unshare(syscalls.CLONE_NEWNET)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    os.environ["LAB_ROOT"] = str(work / "lab-root")       # never your /var/lib/lab
    helper = Helper()
    engine = None
    try:
        layer = store.layer_path(images.resolve("busybox")["Layers"][0])
        engine = Engine(work)
        found = runtimes(work, layer, helper, engine)
        runnable = {name: f for name, f in found.items() if callable(f)}
        samples: dict[str, list[float]] = {name: [] for name in runnable}
        memory: dict[str, int] = {}
        for name, start in runnable.items():          # one warm-up each: caches, first-use work
            start()
        order = list(runnable.items())
        for _ in range(args.runs):
            random.shuffle(order)        # a fixed order would favour whoever follows a similar run
            for name, start in order:
                seconds, peak_kb, status = start()
                if status != 0:
                    raise SystemExit(f"bench: {name} failed with exit status {status}")
                samples[name].append(seconds)
                memory[name] = max(memory.get(name, 0), peak_kb)
        stats = {name: summary(values) for name, values in samples.items()}
        phases = trace_phases(max(3, min(args.runs, 15)))
        lab_peak_mb = phases.pop(PEAK)
        import_ms, modules = imports()
        grows = scaling(args.quick)
        engine_memory = engine.memory(20, 50 if args.quick else 500)
        pulls = pull_throughput(work, args.quick)
    finally:                             # also after a failure: no container, cgroup or process left
        helper.close()
        if engine is not None:
            engine.close()
        left = subprocess.run([LAB, "ps", "-aq"], capture_output=True, text=True).stdout.split()
        if left:
            subprocess.run([LAB, "rm", "-f", *left], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    lab_median = stats["lab run"][0]
    python = f"Python {platform.python_version()} ({os.path.realpath(sys.executable)})"   # lab's interpreter
    lines = [f"Machine: {os.uname().release}, {os.cpu_count()} CPUs, cgroup {cgroups.version()}, {python}, "
             f"{args.runs} rounds, {time.strftime('%Y-%m-%d')}", "",
             "| runtime | median ms | 10th-90th percentile ms | ratio to lab run | peak memory MB |",
             "|---|---|---|---|---|"]
    for name, what in found.items():
        if name in stats:
            median, low, high = stats[name]
            peak = (f"{lab_peak_mb:.1f} (VmHWM)" if name == "lab run" else
                    f"≤ {memory[name] / 1024:.1f}" if memory[name] else "(in the daemon)")
            lines.append(f"| {name} | {median * 1000:.1f} | {low * 1000:.1f}-{high * 1000:.1f} | "
                         f"{median / lab_median:.2f} | {peak} |")
        else:
            lines.append(f"| {name} | {what} | | | |")
    lines += ["", "Peak memory: lab's own high-water mark (VmHWM, printed by LAB_TRACE=1). For the others, "
              "wait4's ru_maxrss, an upper bound: a process started with posix_spawn shares the benchmark's "
              f"memory until it execs, so {memory['fork/exec'] / 1024:.1f} MB (fork/exec's) is the floor of that column."]
    lines += ["", "lab run by phase (LAB_TRACE=1, medians):", ""]
    lines += [f"- {name}: {ms:.1f} ms" for name, ms in phases.items()]
    lines += ["", f"What `lab run` imports beyond a bare interpreter ({import_ms:.1f} ms, python -X importtime, "
              "which lists the imports tried too: nt and _winapi are Windows' own): " + ", ".join(modules), "", "Scaling:", ""]
    lines += [f"- {what}: {ms:.1f} ms" for what, ms in grows]
    lines += ["", "Pulling from a registry on 127.0.0.1 (medians; skopeo stores the blobs, lab pull also "
              "unpacks them):", ""]
    lines += [f"- {what}" if what.endswith(")") else f"- {what}: {value:.2f}" for what, value in pulls]
    lines += ["", "The engine's memory:", ""] + [f"- {what}: {value:.1f}" if isinstance(value, float) else
                                                 f"- {what}: {value}" for what, value in engine_memory.items()]
    verdicts = []
    if "runc" in stats:
        verdicts.append(f"lab run median / runc run median = {lab_median / stats['runc'][0]:.2f} "
                        f"({'at or below' if lab_median <= stats['runc'][0] else 'above'} runc's)")
    verdicts.append(f"lab run peak memory {lab_peak_mb:.1f} MB "
                    f"({'under' if lab_peak_mb < 30 else 'over'} the 30 MB target)")
    lines += ["", "Targets:", ""] + [f"- {v}" for v in verdicts]
    text = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(text)
    chart(args.out, stats, phases)
    print(text)
    print(f"bench: wrote {args.out / 'results.md'} and {args.out / 'startup.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
