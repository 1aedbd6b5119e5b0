"""The runtime never loses track of a container: damaged records, killed commands, races.

State on disk is the truth, so each test damages it or kills a `lab` at a bad moment, then
checks that `lab ps -a` still tells the truth and `lab rm -f` still removes everything (the
harness checks that no process, cgroup or mount is left after each test).
"""
import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

from chapters import harness
from chapters.harness import LAB, ended, lab_processes, supervisor_of, wait_running, wait_until


def root() -> Path:
    return Path(os.environ["LAB_ROOT"])


def folder(lab, name) -> Path:
    return root() / "containers" / json.loads(lab("inspect", name).stdout)[0]["Id"]


def test_a_damaged_record_affects_only_its_own_container(lab):
    """Damage of every kind a hand edit or a crash leaves: not JSON, missing, JSON of another
    shape; a stray file; the hidden folders of a create and of a removal that were cut short."""
    damages = {"empty-state": ("state.json", ""), "null-state": ("state.json", "null"),
               "exited-without-code": ("state.json", '{"Status": "exited", "FinishedAt": 1}'),
               "cgroup-not-a-record": ("state.json", '{"Status": "created", "Cgroup": "x"}'),
               "other-config": ("config.json", "{}")}
    # A field of another kind than lab writes (which stopped `lab ps` for every container), or
    # a supervisor that is gone and whose start time is not recorded (which stopped rm -f).
    edits = {"name-a-number": ("config.json", {"Name": 5}), "created-at-infinity": ("config.json", {"Created": 1e400}),
             "mounts-a-word": ("config.json", {"Mounts": "x"}), "mount-untyped": ("config.json", {"Mounts": [{"Name": "x"}]}),
             "finished-at-infinity": ("state.json", {"FinishedAt": 1e400}),
             "supervisor-a-word": ("state.json", {"Supervisor": "abc"}),
             "supervisor-gone": ("state.json", {"Status": "created", "Supervisor": 999999999})}
    for name in (*damages, *edits, "half-config", "no-config"):
        assert lab("run", "--name", name, "busybox", "true").returncode == 0
    for name in ("healthy", "running-damaged"):
        assert lab("run", "-d", "--name", name, "busybox", "sleep", "600").returncode == 0
    running, half, lost = folder(lab, "running-damaged"), folder(lab, "half-config"), folder(lab, "no-config")
    folders = {name: folder(lab, name) for name in (*damages, *edits)}
    for name, (file, text) in damages.items():
        (folders[name] / file).write_text(text)
    for name, (file, fields) in edits.items():
        (folders[name] / file).write_text(json.dumps({**json.loads((folders[name] / file).read_text()), **fields}))
    pid = json.loads((running / "state.json").read_text())["Pid"]
    (running / "state.json").write_text("[]")
    (half / "config.json").write_text((half / "config.json").read_text()[:40])
    (lost / "config.json").unlink()
    interrupted = root() / "containers" / f".creating-{'ab' * 32}"        # a create a crash cut short
    interrupted.mkdir()
    (interrupted / ".config.json.999999999.tmp").write_text("{")
    gone = subprocess.Popen(["true"])
    gone.wait()
    cut_short = root() / "containers" / f".removing-{'cd' * 32}-{gone.pid}"   # a removal whose lab was killed
    (cut_short / "upper").mkdir(parents=True)
    (cut_short / "upper" / "file").write_text("left\n")
    stray = root() / "containers" / ("ef" * 32)                          # a file, not a folder
    stray.write_text("")
    listed = lab("ps", "-a")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("Damaged") == 8 + len(edits) - 1 and "healthy" in listed.stdout, listed.stdout
    assert [line.split()[-2] for line in listed.stdout.splitlines() if line.endswith(" supervisor-gone")] == ["Created"]
    assert not interrupted.exists() and not cut_short.exists()       # their writers are gone: ps finished them
    for command in (["inspect", "healthy"], ["logs", "healthy"], ["exec", "healthy", "true"], ["ps"]):
        assert lab(*command).returncode == 0, command
    assert "is damaged" in lab("rm", "empty-state").stderr             # rm without -f says how
    for command in (["stop", "-t", "1"], ["kill"]):                    # whether it runs is unknown: refused
        refused = lab(*command, "running-damaged")
        assert refused.returncode == 1 and "it is damaged" in refused.stderr, (command, refused.stderr)
    assert not ended(pid)                                               # (and it runs still)
    removed = lab("rm", "-f", *[f.name for f in folders.values()], half.name, lost.name, "healthy", running.name)
    assert removed.returncode == 0 and removed.stderr == "", removed.stderr
    assert removed.returncode == 0, removed.stderr
    assert lab("ps", "-a", "-q").stdout == ""
    stray.unlink()                                                      # (not lab's: left alone)
    assert list((root() / "containers").iterdir()) == [root() / "containers" / ".lock"]


def test_rm_f_never_kills_in_a_cgroup_a_hand_edited_record_names(lab):
    """A state.json of the right shape that names another cgroup (a hand edit): rm -f removes
    the container's own cgroup, and leaves that one and its processes alone."""
    from lab import cgroups
    manager = cgroups.manager()
    victim = manager.parents()[0] / f"victim-{os.getpid()}"
    victim.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (victim / "cgroup.procs").write_text(str(sleeper.pid))
        assert lab("run", "--name", "edited", "busybox", "true").returncode == 0
        state = folder(lab, "edited") / "state.json"
        record = json.loads(state.read_text())
        key = "unified" if manager is cgroups.CgroupV2 else "pids"
        state.write_text(json.dumps({**record, "Cgroup": {"Version": record["Cgroup"]["Version"], "Paths": {key: str(victim)}}}))
        assert lab("rm", "-f", "edited").returncode == 0
        assert sleeper.poll() is None and victim.is_dir()              # not killed, not removed
    finally:
        sleeper.kill()
        sleeper.wait()
        deadline = time.monotonic() + 5
        while victim.exists():
            try:
                victim.rmdir()
            except OSError:
                assert time.monotonic() < deadline, f"{victim} stays busy"
                time.sleep(0.01)


def test_a_container_whose_supervisor_was_killed_gives_its_cgroup_back_and_starts_again(daemon):
    """Its supervisor would have removed its cgroup when it ended: the stop that records its end
    does, and a start makes it again (it found the folder there: "File exists")."""
    from lab import cgroups
    assert daemon.docker("run", "-d", "--name", "orphaned", "busybox", "sleep", "600").returncode == 0
    name = "lab-" + harness.inspect("orphaned")["Id"][:12]
    supervisor = supervisor_of("orphaned")
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: ended(supervisor), what="the supervisor's end")
    assert daemon.docker("stop", "-t", "1", "orphaned").returncode == 0
    assert not [p for parent in cgroups.manager().parents() for p in parent.glob(name)]
    start = daemon.docker("start", "orphaned")
    assert start.returncode == 0, start.stderr
    assert harness.inspect("orphaned")["State"]["Running"]
    assert daemon.docker("rm", "-f", "orphaned").returncode == 0


def test_docker_lists_inspects_and_removes_damaged_records_too(lab, daemon):
    for name in ("half-config", "empty-state"):
        assert daemon.docker("run", "--name", name, "busybox", "true").returncode == 0
    half = folder(lab, "half-config")
    (half / "config.json").write_text((half / "config.json").read_text()[:40])
    (folder(lab, "empty-state") / "state.json").write_text("")
    listed = daemon.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}")
    assert listed.returncode == 0, listed.stderr                     # (was: KeyError 'Interactive')
    assert sorted(listed.stdout.splitlines()) == sorted([
        "empty-state Damaged: its state.json is damaged (lab rm -f removes it)",
        f"{half.name[:12]} Damaged: its config.json is damaged (lab rm -f removes it)"])
    shown = daemon.docker("inspect", half.name, "empty-state")
    assert shown.returncode == 0, shown.stderr
    damaged = (half / "config.json").read_bytes()
    for ref in (half.name, "empty-state"):            # what needs the whole record says so, and changes nothing
        for command in (["start", ref], ["restart", ref], ["rename", ref, "renamed"], ["update", "--memory", "64m", ref],
                        ["commit", ref], ["cp", f"{ref}:/etc/hostname", "-"], ["export", ref], ["rm", ref]):
            refused = daemon.docker(*command)
            assert refused.returncode != 0 and f"{ref[:12]}: it is damaged (" in refused.stderr, (command, refused.stderr)
    assert (half / "config.json").read_bytes() == damaged
    assert lab("exec", "empty-state", "true").stderr.startswith("lab: error: cannot exec in container empty-state: it is damaged")
    # Damaged while running, or while its supervisor waits for the start (docker create)
    assert daemon.docker("run", "-d", "--name", "running", "busybox", "sleep", "600").returncode == 0
    assert daemon.docker("create", "--name", "created", "busybox", "true").returncode == 0
    damaged = [folder(lab, "running"), folder(lab, "created")]
    for record in damaged:
        (record / "config.json").write_text("{")
    for record, command in ((damaged[0], ["exec", damaged[0].name, "true"]),
                            (damaged[0], ["update", "--memory", "64m", damaged[0].name]), (damaged[1], ["start", damaged[1].name])):
        refused = daemon.docker(*command)
        assert refused.returncode != 0 and f"{record.name[:12]}: it is damaged (" in refused.stderr, (command, refused.stderr)
    assert daemon.docker("ps", "-q", "--no-trunc").stdout.split() == [damaged[0].name]   # (it runs still)
    assert daemon.docker("rm", "-f", half.name, "empty-state", *[d.name for d in damaged]).returncode == 0
    assert daemon.docker("ps", "-a", "-q").stdout == ""


def test_an_export_that_fails_once_its_answer_began_fails_at_the_client(lab, daemon, tmp_path):
    # docker export's tar streams from a helper: its 200 is sent before the files are mounted
    cid = daemon.docker("create", "--name", "lost-upper", "busybox", "true").stdout.strip()
    shutil.rmtree(root() / "containers" / cid / "upper")
    exported = daemon.docker("export", "-o", str(tmp_path / "out.tar"), "lost-upper")
    assert exported.returncode != 0 and "unexpected EOF" in exported.stderr, exported   # (was: 0, an empty tar)
    assert not (tmp_path / "out.tar").exists()
    assert daemon.docker("rm", "lost-upper").returncode == 0


def test_an_image_layer_removed_by_hand_is_named_with_what_to_do(lab, daemon, tmp_path):
    cid = daemon.docker("create", "--name", "unlayered", "busybox", "true").stdout.strip()
    layer = json.loads((root() / "containers" / cid / "config.json").read_text())["Layers"][0].split(":")[1]
    (root() / "layers" / layer).rename(tmp_path / "layer")
    try:
        said = f"the image layer {layer[:12]} is missing from {root() / 'layers'} (removed by hand?): remove its containers"
        started, ran = daemon.docker("start", "unlayered"), lab("run", "--rm", "--network", "none", "busybox", "true")
        assert started.returncode == 1 and said in started.stderr, started.stderr       # (was: overlay's ENOENT)
        assert ran.returncode == 125 and ran.stderr.startswith(f"lab: error: {said}"), ran.stderr
    finally:
        (tmp_path / "layer").rename(root() / "layers" / layer)
    assert daemon.docker("rm", "unlayered").returncode == 0


def test_a_damaged_image_or_network_record_is_named_and_removing_it_is_the_way_out(lab, daemon):
    """Listings show the rest, and say which record they left out; whatever needs what the record
    said stops with one line (rmi too: which layers the damaged image uses, it cannot know)."""
    assert lab("run", "--name", "source", "busybox", "true").returncode == 0
    assert lab("commit", "source", "spare:v1").returncode == 0 and lab("rm", "source").returncode == 0
    assert lab("network", "create", "mangled").returncode == 0
    busybox = json.loads((root() / "images" / "tags.json").read_text())["busybox:latest"]   # (the session's
    image = root() / "images" / f"{busybox.split(':')[1]}.json"                             # other images stay)
    network = root() / "networks" / "mangled.json"
    damaged = "is damaged (not JSON: a hand edit?): remove it, then make what it recorded again"
    try:
        for record, listing, shown, missing in ((image, ["images"], "spare", "busybox"),
                                                (network, ["network", "ls"], "bridge", "mangled")):
            record.write_text("{")
            listed = lab(*listing)
            assert (listed.returncode, listed.stderr.splitlines()) == (0, [f"lab: warning: not listed: {record} {damaged} "
                                                                           "(lab image import or pull, lab network create)"])
            assert shown in listed.stdout and missing not in listed.stdout, listed.stdout
            by_docker = daemon.docker(*listing, "--format", "{{.Repository}}" if listing == ["images"] else "{{.Name}}")
            assert by_docker.returncode == 0 and shown in by_docker.stdout.split() and missing not in by_docker.stdout
        for record, command, status in ((image, ["run", "--rm", "--network", "none", "busybox", "true"], 125),
                                        (image, ["rmi", "spare:v1"], 1), (network, ["network", "create", "another"], 125)):
            failed = lab(*command)
            assert (failed.returncode, failed.stderr.startswith(f"lab: error: {record} {damaged}")) == (status, True), failed.stderr
        assert "spare:v1" in json.loads((root() / "images" / "tags.json").read_text())       # rmi changed nothing
        for record in (image, network):
            record.unlink()
        assert lab("run", "--rm", "--network", "none", "busybox", "true").returncode == 0   # (busybox is made again)
        assert "mangled" not in lab("network", "ls").stdout
        assert lab("rmi", "spare:v1").returncode == 0
    finally:                            # whatever failed, the next tests of this session find no damage
        for record in (image, network):
            if record.exists() and record.read_text() == "{":
                record.unlink()
        lab("network", "rm", "mangled")
        lab("rmi", "spare:v1")


def test_a_network_whose_create_was_killed_half_way_is_finished_by_its_next_container(lab):
    """`network create` writes its record, its rules, then its bridge: killed after making the
    bridge (before its address) or after its address (before bringing it up), the network stays
    listed; the next container on it finishes the bridge and reaches the gateway (it once trusted
    any bridge of that name and its containers had no way out until `network rm`)."""
    assert lab("network", "create", "halfway").returncode == 0
    record = json.loads((root() / "networks" / "halfway.json").read_text())
    try:
        for cut_short in (["addr", "flush", "dev", record["Bridge"]], None):
            if cut_short:
                subprocess.run(["ip", *cut_short], check=True)
            subprocess.run(["ip", "link", "set", record["Bridge"], "down"], check=True)
            ran = lab("run", "--rm", "--network", "halfway", "busybox", "ping", "-c", "1", "-W", "5", record["Gateway"])
            assert ran.returncode == 0, ran.stdout + ran.stderr
            shown = subprocess.run(["ip", "-4", "-o", "addr", "show", record["Bridge"], "up"],
                                   capture_output=True, text=True).stdout
            assert shown.count(f"inet {record['Gateway']}/") == 1, shown
    finally:
        lab("network", "rm", "halfway")


def test_names_are_unique_when_ten_runs_race_for_one(lab):
    for _ in range(3):                  # (without the lock, one round in five made two "dup"s)
        runs = [subprocess.Popen([LAB, "run", "--name", "dup", "busybox", "true"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(10)]
        statuses = [run.wait(timeout=60) for run in runs]
        errors = [run.stderr.read() for run in runs]
        try:
            assert statuses.count(0) == 1, errors
            assert all('name "dup" is already in use' in e for s, e in zip(statuses, errors) if s != 0)
        finally:
            lab("rm", "-f", "dup")


def test_a_container_whose_lab_run_was_killed_is_found_stopped_and_removed(lab):
    run = subprocess.Popen([LAB, "run", "--name", "orphan", "busybox", "sh", "-c", "trap '' TERM; sleep 600"],
                           stderr=subprocess.PIPE, text=True)
    wait_running("orphan", run)
    run.kill()
    run.wait()
    assert "Up " in lab("ps").stdout and "unwatched" in lab("ps").stdout
    stopped = lab("stop", "-t", "0.5", "orphan")                      # it ignores TERM: killed after 0.5 s
    assert stopped.returncode == 0, stopped.stderr
    assert "Exited (137)" in lab("ps", "-a").stdout
    assert lab("rm", "orphan").returncode == 0


def test_killing_lab_run_supervisors_and_imports_at_random_moments_leaves_nothing(lab, tmp_path):
    # A few dozen SIGKILLs at random points of a start, a supervised start, an import and a
    # commit; after each, ps -a must work and rm -f must remove whatever is there.
    rng = random.Random(8)
    lab("run", "--name", "base", "busybox", "sh", "-c", "echo layer > /made")
    (tmp_path / "rootfs").mkdir()
    subprocess.run(["tar", "-C", str(tmp_path / "rootfs"), "-cf", str(tmp_path / "rootfs.tar"), "."], check=True)
    commands = [["run", "--rm", "busybox", "sleep", "600"], ["run", "-d", "busybox", "sleep", "600"],
                ["image", "import", str(tmp_path / "rootfs.tar"), "imported:x"], ["commit", "base", "committed:x"]]
    for trial in range(24):
        command = commands[trial % len(commands)]
        victim = subprocess.Popen([LAB, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, 0.08))
        victim.kill()
        victim.wait()
        for pid in lab_processes("lab-supervisor"):                                     # and, sometimes, a supervisor
            if rng.random() < 0.5:
                os.kill(pid, signal.SIGKILL)
        listed = lab("ps", "-a", "-q")
        assert listed.returncode == 0, listed.stderr
        others = [c for c in listed.stdout.split() if c != folder(lab, "base").name[:12]]
        if others:
            removed = lab("rm", "-f", *others)
            assert removed.returncode == 0, removed.stderr
        assert lab("images").returncode == 0
    lab("rm", "-f", "base")
    for ref in ("imported:x", "committed:x"):
        lab("rmi", ref)
    (root() / "images" / ".0123.json.999999999.tmp").write_text("{")               # (as a killed write leaves)
    lab("image", "import", str(tmp_path / "rootfs.tar"), "cleanup:x")            # the next import cleans up
    lab("rmi", "cleanup:x")
    assert [p.name for p in (root() / "layers").glob(".*") if p.name != ".lock"] == []
    assert list((root() / "images").glob("*.tmp")) == []


def test_a_damaged_tags_file_loses_names_but_not_every_run(lab):
    assert lab("run", "--rm", "busybox", "true").returncode == 0
    (root() / "images" / "tags.json").write_text('{"busybox:lat')
    ran = lab("run", "--rm", "busybox", "echo", "still runs")              # busybox is built again
    assert (ran.returncode, ran.stdout) == (0, "still runs\n") and "tags.json is damaged" in ran.stderr
    assert lab("images").returncode == 0


def test_run_d_racing_rm_f_prints_no_traceback_and_leaves_no_supervisor(lab):
    rng = random.Random(13)
    for i in range(20):
        run = subprocess.Popen([LAB, "run", "-d", "--name", f"race{i}", "busybox", "sleep", "600"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0, 0.05))
        lab("rm", "-f", f"race{i}")
        errors = run.communicate(timeout=30)[1]
        assert "Traceback" not in errors, errors
        lab("rm", "-f", f"race{i}")                     # if the run won the race, it is removed now
    deadline = time.monotonic() + 10                   # a supervisor whose container went ends within 1 s
    while lab_processes("lab-supervisor") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab_processes("lab-supervisor") == [] and lab("ps", "-a", "-q").stdout == ""


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(lab, tmp_path, monkeypatch):
    from lab import syscalls
    small = tmp_path / "small"
    small.mkdir()
    syscalls.mount("tmpfs", str(small), "tmpfs", 0, "size=8m")
    try:
        monkeypatch.setenv("LAB_ROOT", str(small / "lab"))
        assert lab("run", "--rm", "busybox", "true").returncode == 0                # the image: ~2 MB
        assert lab("run", "-d", "--name", "chatty", "busybox", "sh", "-c",
                   "while :; do echo 0123456789abcdef0123456789abcdef; done").returncode == 0
        deadline = time.monotonic() + 30                                             # it fills the disk
        while "LogStopped" not in lab("inspect", "-f", "{{.State}}", "chatty").stdout:
            assert time.monotonic() < deadline, "the log never stopped"
            time.sleep(0.1)
        assert "Up " in lab("ps").stdout                                             # the container goes on
        with open(small / "filler", "wb", buffering=0) as filler:                    # what room is left
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError:
                pass
        failed = lab("run", "--name", "one-too-many", "busybox", "true")
        assert failed.returncode == 125 and failed.stderr.count("\n") == 1
        assert "no space left on the filesystem of LAB_ROOT" in failed.stderr, failed.stderr
        assert lab("ps", "-a", "-q").stdout.split() == [json.loads(lab("inspect", "chatty").stdout)[0]["Id"][:12]]
        assert lab("rm", "-f", "chatty").returncode == 0
        assert list((small / "lab" / "containers").glob("[!.]*")) == []
    finally:
        monkeypatch.undo()
        syscalls.umount2(str(small), syscalls.MNT_DETACH)


def test_logs_f_after_its_supervisor_was_killed_says_so_and_follows_to_the_end(lab):
    assert lab("run", "-d", "--name", "lonely", "busybox", "sh", "-c", "echo hello; exec sleep 600").returncode == 0
    deadline = time.monotonic() + 30
    while "hello" not in lab("logs", "lonely").stdout:
        assert time.monotonic() < deadline, "the container never said hello"
        time.sleep(0.05)
    os.kill(supervisor_of("lonely"), signal.SIGKILL)
    follow = subprocess.Popen([LAB, "logs", "-f", "lonely"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "was killed: its output is no longer logged" in follow.stderr.readline()
    assert follow.poll() is None                                   # it follows the container still
    lab("stop", "-t", "0", "lonely")
    assert follow.wait(timeout=30) == 0 and follow.stdout.read() == "hello\n"
    assert lab("rm", "lonely").returncode == 0


def test_a_test_run_removes_the_cgroups_a_killed_run_left(tmp_path):
    """A test run killed with kill -9 cannot remove its cgroups (labtests-PID-...). The next run
    removes them once that run's process is gone, and leaves those of a run still going: one whose
    process it sees, one in which a process still runs, and every one when it runs in a PID
    namespace of its own (there it sees no other run's process: a live run's empty container
    cgroup went, between its mkdir and its first write)."""
    import sys
    from chapters.conftest import session_cgroup_parents
    from chapters.harness import ROOT
    from lab import cgroups
    gone, unseen = subprocess.Popen(["true"]), subprocess.Popen(["true"])
    gone.wait()                                          # their pids: no process has them now
    unseen.wait()
    parents = session_cgroup_parents(cgroups)
    killed = [parent / f"labtests-{gone.pid}-main" for parent in parents]
    going = [parent / f"labtests-{os.getpid()}-gw9" for parent in parents]
    busy = [parent / f"labtests-{unseen.pid}-main" for parent in parents]     # (as a run in a PID namespace looks)
    for folder in killed:
        (folder / f"labtests-{gone.pid}-gw0").mkdir(parents=True)      # (v1: its worker's, below it)
    for folder in going:
        folder.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    for folder in busy:          # (made and filled at once: on v2 every session's cgroups share the root,
        folder.mkdir()           # and another session's start may judge an empty one stale meanwhile)
        for knob in ("cpuset.cpus", "cpuset.mems"):          # (v1: a new cpuset takes no process before them)
            if (folder / knob).exists() and (folder.parent / knob).exists():     # (v2's root has none)
                (folder / knob).write_text((folder.parent / knob).read_text())
        (folder / "cgroup.procs").write_text(str(sleeper.pid))
    folder = tmp_path / "chapters" / "00_other"
    folder.mkdir(parents=True)
    (folder / "conftest.py").write_text("from chapters.conftest import *  # noqa: F401,F403\n")
    (folder / "test_other.py").write_text("def test_nothing():\n    pass\n")
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)]
    try:
        for prefix in (["unshare", "--pid", "--fork", "--mount", "--mount-proc"], []):
            run = subprocess.run(prefix + pytest, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stdout[-2000:]
            if prefix:
                assert [f for f in killed if not f.exists()] == [], "a run in a PID namespace removed cgroups"
        assert [f for f in killed if f.exists()] == []
        assert [f for f in going + busy if not f.exists()] == []
    finally:
        sleeper.kill()
        sleeper.wait()
        for path in [f / f"labtests-{gone.pid}-gw0" for f in killed] + killed + going + busy:
            if path.exists():
                path.rmdir()
