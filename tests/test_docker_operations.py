"""The engine beyond `docker run` (solutions/lab/operations.py): what docker clients do with
containers and images once they have them, through the stock docker CLI and the Docker SDK."""
import concurrent.futures
import datetime
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import tarfile
import time
import urllib.parse
from pathlib import Path

import docker
import pytest

from chapters import harness
from chapters.harness import DOCKER, LAB, wait_until

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.02; done"


def upper_file(daemon, name: str, path: str) -> Path:
    """A file of the container's upper layer, read from the host (works while it is frozen)."""
    upper = daemon.docker("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name).stdout.strip()
    return Path(upper + path)


def test_docker_top_lists_the_processes_of_the_container(daemon):
    daemon.docker("run", "-d", "--name", "busy", "busybox", "sh", "-c", "sleep 1001 & exec sleep 1002")

    def commands() -> list[str]:
        return sorted(line.split(None, 7)[7] for line in daemon.docker("top", "busy").stdout.splitlines()[1:])
    # (sleep 1001 may show before sh has exec'd the second: wait for both, not for the first)
    wait_until(lambda: commands() == ["sleep 1001", "sleep 1002"], what="docker top listing both sleeps")
    lines = daemon.docker("top", "busy").stdout.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert all(line.split()[0] == "root" for line in lines[1:])
    chosen = daemon.docker("top", "busy", "-o", "pid,args").stdout.splitlines()    # (ps's options, as docker's)
    assert chosen[0].split() == ["PID", "COMMAND"] and sorted(line.split(None, 1)[1] for line in chosen[1:]) == [
        "sleep 1001", "sleep 1002"], chosen
    assert "PID field" in daemon.docker("top", "busy", "-o", "args").stderr
    stopped = daemon.docker("run", "--name", "done", "busybox", "true")
    assert stopped.returncode == 0
    refused = daemon.docker("top", "done")
    assert refused.returncode == 1 and "is not running" in refused.stderr
    daemon.docker("rm", "-f", "busy", "done")


def test_pause_freezes_every_process_and_unpause_lets_them_go_on(daemon):
    daemon.docker("run", "-d", "--name", "counter", "busybox", "sh", "-c", COUNTER)
    count = upper_file(daemon, "counter", "/count")
    wait_until(lambda: count.exists() and count.read_text().strip(), what="the first count")
    assert daemon.docker("pause", "counter").stdout == "counter\n"
    assert "(Paused)" in daemon.docker("ps").stdout
    assert daemon.docker("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "counter").stdout == "paused true\n"
    frozen = count.read_text()
    time.sleep(0.3)                                  # 15 counts' time: not one of them happens
    assert count.read_text() == frozen
    again = daemon.docker("pause", "counter")
    assert again.returncode == 1 and "is already paused" in again.stderr
    daemon.docker("unpause", "counter")
    wait_until(lambda: count.read_text() != frozen, what="the count going on after unpause")
    daemon.docker("pause", "counter")
    stopped = daemon.docker("stop", "-t", "1", "counter")  # a frozen process takes no signal: lab thaws it
    assert stopped.returncode == 0, stopped.stderr
    assert daemon.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "counter").stdout == "exited 137\n"
    daemon.docker("rm", "counter")


def test_start_and_restart_run_the_same_container_again_in_its_own_files(daemon):
    first = daemon.docker("run", "--name", "again", "busybox", "sh", "-c", "echo x >> /runs; wc -l < /runs")
    assert first.stdout == "1\n", first.stderr
    second = daemon.docker("start", "-a", "again")
    assert (second.returncode, second.stdout) == (0, "2\n"), second.stderr
    assert daemon.docker("logs", "again").stdout == "1\n2\n"
    daemon.docker("rm", "again")
    daemon.docker("run", "-d", "--name", "server", "busybox", "sh", "-c",
                  "echo x >> /starts; trap 'exit 0' TERM; while true; do sleep 0.02; done")
    assert daemon.docker("restart", "-t", "5", "server").stdout == "server\n"
    state = json.loads(daemon.docker("inspect", "server").stdout)[0]["State"]
    assert (state["Status"], state["ExitCode"]) == ("running", 0)
    assert daemon.docker("exec", "server", "wc", "-l", "/starts").stdout == "2 /starts\n"
    daemon.docker("rm", "-f", "server")


def test_docker_rename_and_the_errors_clients_match_on(daemon):
    daemon.docker("run", "-d", "--name", "before", "busybox", "sleep", "600")
    assert daemon.docker("rename", "before", "after").returncode == 0
    assert daemon.docker("ps", "--format", "{{.Names}}").stdout == "after\n"
    gone = daemon.docker("stop", "before")
    assert gone.returncode == 1 and "No such container: before" in gone.stderr
    daemon.docker("run", "-d", "--name", "other", "busybox", "sleep", "600")
    taken = daemon.docker("rename", "other", "after")
    assert taken.returncode == 1 and "is already in use" in taken.stderr
    same = daemon.docker("rename", "other", "other")
    assert same.returncode == 1 and "with the same name as its current name" in same.stderr
    running = daemon.docker("rm", "after")
    assert running.returncode == 1 and "stop the container before removing or force remove" in running.stderr
    daemon.docker("rm", "-f", "after", "other")


def test_docker_diff_shows_what_the_container_added_changed_and_deleted(daemon):
    daemon.docker("run", "--name", "changer", "busybox", "sh", "-c", "echo new > /tmp/new; rm /bin/ls")
    assert daemon.docker("diff", "changer").stdout.splitlines() == ["C /bin", "D /bin/ls", "C /tmp", "A /tmp/new"]
    daemon.docker("rm", "changer")


def test_a_container_with_folders_thousands_deep_can_be_diffed_sized_counted_and_copied(daemon, tmp_path):
    """Deeper than Python's recursion limit (1000): os.walk raised a RecursionError, and one such
    container stopped docker diff, ps -s and system df for all, and its cp and export (tarfile.add
    recursed too): lab walks with folders.walk."""
    made = daemon.docker("run", "--name", "deep", "busybox", "sh", "-c",
                         "i=0; while [ $i -lt 1200 ]; do mkdir d; cd d; i=$((i+1)); done; echo hi > f; ln -s / up")
    assert made.returncode == 0, made.stderr
    changes = daemon.docker("diff", "deep")
    assert changes.returncode == 0, changes.stderr[-300:]
    shown = changes.stdout.splitlines()
    assert len(shown) == 1202 and shown[-2:] == ["A /" + "d/" * 1200 + "f", "A /" + "d/" * 1200 + "up"]
    sized = daemon.docker("ps", "-a", "-s", "--filter", "name=deep", "--format", "{{.Size}}")
    assert sized.returncode == 0 and sized.stdout.startswith("4B "), sized.stderr[-300:] or sized.stdout  # f, and the link's "/"
    df = daemon.docker("system", "df", "-v")
    assert df.returncode == 0 and "deep" in df.stdout, df.stderr[-300:]
    exported = daemon.docker("export", "-o", str(tmp_path / "deep.tar"), "deep")
    assert exported.returncode == 0, exported.stderr[-300:]
    with tarfile.open(tmp_path / "deep.tar") as tar:
        assert ("d/" * 1200 + "f") in tar.getnames()
    copied = subprocess.run([DOCKER, "cp", "deep:/d", "-"], env=daemon.env, capture_output=True, timeout=60)
    assert copied.returncode == 0, copied.stderr[-300:]
    with tarfile.open(fileobj=io.BytesIO(copied.stdout)) as tar:     # (not on disk: pytest's own
        assert ("d/" * 1200 + "f") in tar.getnames()                  # clean-up of tmp_path recurses)
    daemon.docker("rm", "deep")


def test_a_container_nested_past_the_kernels_path_length_is_refused_in_one_line_not_diffed_in_part(daemon):
    """Past 4096 bytes a path cannot be opened: diff (and commit) say so rather than leave the
    deepest folders out; ps -s, an estimate, goes on without them."""
    made = daemon.docker("run", "--name", "deeper", "busybox", "sh", "-c",
                         "i=0; while [ $i -lt 2100 ]; do mkdir d; cd d; i=$((i+1)); done; echo hi > f")
    assert made.returncode == 0, made.stderr
    changes = daemon.docker("diff", "deeper")
    assert changes.returncode == 1 and changes.stdout == "", changes.stdout[-200:]
    assert changes.stderr.startswith("Error response from daemon: the folder ") and \
        changes.stderr.endswith("bytes) is nested too deep: the paths of what it holds would be longer "
                                "than the 4095 bytes the kernel takes\n") and len(changes.stderr) < 400, changes.stderr
    sized = daemon.docker("ps", "-a", "-s", "--filter", "name=deeper", "--format", "{{.Size}}")
    assert sized.returncode == 0 and sized.stdout.startswith("0B "), sized.stderr[-300:] or sized.stdout
    assert daemon.docker("rm", "deeper").returncode == 0


def test_docker_stats_shows_the_cgroups_counters(daemon):
    daemon.docker("run", "-d", "--name", "measured", "-m", "64m", "--pids-limit", "20", "busybox",
                  "sh", "-c", "sleep 1000 & exec sleep 1000")
    wait_until(lambda: daemon.docker("top", "measured").stdout.count("sleep 1000") == 2, what="two sleeps")
    shown = daemon.docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}", "measured")
    name, pids, usage = shown.stdout.split(" ", 2)
    assert (name, pids) == ("measured", "2"), shown.stderr
    assert usage.strip().endswith("/ 64MiB")
    daemon.docker("rm", "-f", "measured")


def test_commit_tag_history_and_run_the_new_image(daemon):
    daemon.docker("run", "--name", "maker", "busybox", "sh", "-c", "echo baked > /baked")
    committed = daemon.docker("commit", "-a", "A. Baker", "-m", "the first batch", "maker", "baked:v1")
    assert committed.stdout.startswith("sha256:"), committed.stderr
    made = json.loads(daemon.docker("image", "inspect", "baked:v1").stdout)[0]
    assert (made["Author"], made["Comment"]) == ("A. Baker", "the first batch")
    assert not [e for e in made["Config"]["Env"] if e.startswith(("HOSTNAME=", "HOME="))]   # each run's own
    homed = daemon.docker("commit", "--change", "ENV HOME=/home/baker", "maker", "homed:v1")
    assert homed.returncode == 0, homed.stderr                        # an image's own HOME is kept, and wins
    assert daemon.docker("run", "--rm", "homed:v1", "sh", "-c", "echo $HOME").stdout == "/home/baker\n"
    assert daemon.docker("rmi", "homed:v1").returncode == 0
    homes = [daemon.docker("run", "--rm", *user, "busybox", "sh", "-c", "echo $HOME").stdout for user in
             ([], ["-u", "nobody"], ["-u", "65534"], ["-u", "1000"], ["-u", "1000", "-e", "HOME=/tmp"])]
    assert homes == ["/root\n", "/nonexistent\n", "/nonexistent\n", "/\n", "/tmp\n"]   # its user's, as docker's
    daemon.docker("run", "--name", "nobodys", "-u", "nobody", "busybox", "true")
    assert daemon.docker("commit", "nobodys", "nobodys:v1").returncode == 0            # (HOME not kept there either)
    assert not [e for e in json.loads(daemon.docker("image", "inspect", "nobodys:v1").stdout)[0]["Config"]["Env"]
                if e.startswith("HOME=")]
    assert daemon.docker("rm", "nobodys").returncode == 0 and daemon.docker("rmi", "nobodys:v1").returncode == 0
    assert daemon.docker("tag", "baked:v1", "baked:latest").returncode == 0
    tags = daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.splitlines()
    assert {line.split()[0] for line in tags} >= {"baked:v1", "baked:latest", "busybox:latest"}
    assert len({line.split()[1] for line in tags if line.startswith("baked:")}) == 1
    history = daemon.docker("history", "-q", "baked").stdout.split()
    assert history[0] == committed.stdout.strip()[7:19] and history[1:] == ["<missing>"]   # two layers
    assert daemon.docker("run", "--rm", "baked", "cat", "/baked").stdout == "baked\n"
    daemon.docker("run", "--name", "child", "baked", "true")
    base = daemon.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()[7:19]
    for ref in ("busybox", "busybox:latest", base):          # a name, a tag, an id; the images built on it
        found = daemon.docker("ps", "-a", "--filter", f"ancestor={ref}", "--format", "{{.Names}}").stdout.split()
        assert sorted(found) == ["child", "maker"], (ref, found)
    assert daemon.docker("ps", "-a", "-f", "ancestor=baked:v1", "--format", "{{.Names}}").stdout == "child\n"
    daemon.docker("rm", "maker", "child")
    daemon.docker("rmi", "baked:v1", "baked:latest")


def test_prune_removes_what_nothing_uses_and_nothing_else(daemon):
    daemon.docker("run", "-d", "--name", "keeper", "busybox", "sleep", "600")
    daemon.docker("run", "--name", "ended", "busybox", "true")
    daemon.docker("run", "--name", "labelled", "--label", "team=blue", "busybox", "true")
    assert daemon.docker("ps", "-a", "--filter", "label=team=blue", "--format", "{{.Names}}").stdout == "labelled\n"
    assert daemon.docker("ps", "-a", "--filter", "status=exited", "-q").stdout.count("\n") == 2
    assert daemon.docker("ps", "-l", "--format", "{{.Names}}").stdout == "labelled\n"       # the last made, ended or not
    assert daemon.docker("ps", "-n", "2", "--format", "{{.Names}}").stdout == "labelled\nended\n"
    pruned = daemon.docker("container", "prune", "-f")
    assert pruned.returncode == 0 and pruned.stdout.count("\n") >= 2, pruned.stderr
    assert daemon.docker("ps", "-a", "--format", "{{.Names}}").stdout == "keeper\n"
    client = daemon.client()                                           # (API 1.42 or later)
    client.volumes.create("named")
    anonymous = client.volumes.create().name
    deleted = client.volumes.prune()["VolumesDeleted"] or []
    assert anonymous in deleted and "named" not in deleted            # named ones: only with all=true
    assert "named" in client.volumes.prune(filters={"all": True})["VolumesDeleted"]
    daemon.docker("volume", "create", "named")
    pruned = daemon.docker("volume", "prune", "-f")                    # docker 20.10's CLI: API 1.41,
    assert "named" in pruned.stdout.split(), pruned.stderr              # every unused one
    assert daemon.docker("image", "prune", "-a", "-f").returncode == 0
    assert daemon.docker("images", "-q").stdout.count("\n") == 1          # busybox: keeper uses it
    df = daemon.docker("system", "df", "--format", "{{.Type}}: {{.Active}} {{.Reclaimable}}").stdout
    assert "Images: 1 0B (0%)" in df.splitlines(), df                  # so none of it is reclaimable
    daemon.docker("rm", "-f", "keeper")
    assert "Images          1" in daemon.docker("system", "df").stdout


def test_sdk_operations_on_a_running_container(daemon):
    client = daemon.client()
    box = client.containers.run("busybox", ["sh", "-c", "echo hi > /hi; exec sleep 600"], detach=True, name="sdkops")
    wait_until(lambda: [row[-1] for row in box.top()["Processes"]] == ["sleep 600"], what="docker top")
    sized = client.api.containers(filters={"name": "sdkops"}, size=True)[0]      # docker ps -s
    assert sized["SizeRw"] >= 3 and sized["SizeRootFs"] == sized["SizeRw"] + client.images.get("busybox").attrs["Size"]
    one = box.stats(stream=False)
    assert one["pids_stats"]["current"] == 1 and one["memory_stats"]["usage"] > 0
    assert one["cpu_stats"]["system_cpu_usage"] > one["precpu_stats"]["system_cpu_usage"] > 0
    readings = box.stats(stream=True, decode=True)
    assert [next(readings)["name"] for _ in range(2)] == ["/sdkops", "/sdkops"]
    readings.close()
    box.pause()
    box.reload()
    assert box.status == "paused"
    box.unpause()
    box.rename("sdkops2")
    box.reload()
    assert (box.name, box.status) == ("sdkops2", "running")
    assert {"Path": "/hi", "Kind": 1} in box.diff()
    image = box.commit("sdkimage", "v1")
    assert image.tag("sdkimage", "v2") is True
    assert sorted(client.images.get("sdkimage:v1").tags) == ["sdkimage:v1", "sdkimage:v2"]
    assert len(image.history()) == 2
    box.kill()                                        # answered once the end is recorded
    box.reload()
    assert (box.status, box.attrs["State"]["ExitCode"]) == ("exited", 137)
    assert client.containers.prune()["ContainersDeleted"] == [box.id]
    deleted = client.images.prune(filters={"dangling": False})["ImagesDeleted"]
    assert {"Untagged": "sdkimage:v1"} in deleted and {"Untagged": "sdkimage:v2"} in deleted
    assert client.df()["Containers"] == []
    with pytest.raises(docker.errors.NotFound, match="No such container: sdkops2"):
        client.containers.get("sdkops2")


def test_restart_policies_bring_a_container_back_until_it_is_stopped(daemon):
    def shown(name):
        return daemon.docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}", name).stdout
    daemon.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo try; exit 3")
    wait_until(lambda: shown("flaky") == "2 exited 3\n" and daemon.docker("logs", "flaky").stdout == "try\n" * 3,
               what="on-failure:2: two restarts, then the end")
    daemon.docker("run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c",
                  "trap 'exit 1' USR1; echo ready; while true; do sleep 0.05; done")
    assert daemon.docker("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "always").stdout == "always\n"

    def ready(times):
        return daemon.docker("logs", "always").stdout == "ready\n" * times
    wait_until(lambda: ready(1), what="the trap set")
    daemon.docker("kill", "-s", "USR1", "always")                         # it ends with 1...
    wait_until(lambda: shown("always") == "1 running 1\n" and ready(2), what="the first restart")  # ...and is back
    daemon.stop()                                      # its supervisor restarts it, not the daemon
    daemon.start()
    daemon.docker("kill", "-s", "USR1", "always")
    wait_until(lambda: shown("always") == "2 running 1\n" and ready(3), what="a restart after the daemon's restart")
    assert daemon.docker("stop", "-t", "1", "always").returncode == 0
    assert shown("always") == "2 exited 137\n"                            # stopped: not brought back
    assert daemon.docker("start", "always").returncode == 0
    assert shown("always").split()[:2] == ["0", "running"]                 # a start by hand counts anew
    wait_until(lambda: ready(4), what="the trap set again")
    supervisor = harness.supervisor_of("always")
    daemon.docker("kill", "-s", "TERM", "always")     # what stop sends is a stop (PID 1 ignores it: no trap)...
    daemon.docker("kill", "-s", "USR1", "always")     # ...so when it ends, it stays down
    wait_until(lambda: harness.ended(supervisor), what="the supervisor's end (no restart)")
    assert shown("always") == "0 exited 1\n"
    daemon.docker("run", "-d", "--name", "looping", "--restart", "always", "busybox", "false")
    wait_until(lambda: int(shown("looping").split()[0]) >= 3, what="three restarts (then it waits 0.8 s and more)")
    wait_until(lambda: daemon.docker("inspect", "-f", "{{.State.Restarting}}", "looping").stdout == "true\n",
               what="looping between two runs")
    supervisor = harness.supervisor_of("looping")
    assert daemon.docker("stop", "looping").returncode == 0           # between two runs: no more of them
    wait_until(lambda: harness.ended(supervisor), what="the looping container's supervisor's end")
    assert shown("looping").split()[1] == "exited"
    assert daemon.docker("rm", "-f", "always", "flaky", "looping").returncode == 0
    assert daemon.docker("ps", "-a", "-q").stdout == ""
    bad = daemon.docker("run", "-d", "--restart", "sometimes", "busybox", "true")
    assert bad.returncode == 125 and "sometimes" in bad.stderr


def test_entrypoint_replaces_the_images_entrypoint_and_command(daemon):
    assert daemon.docker("run", "--rm", "--entrypoint", "echo", "busybox", "hi").stdout == "hi\n"
    assert daemon.docker("run", "--rm", "--entrypoint", "echo", "busybox").stdout == "\n"   # not "sh"
    client = daemon.client()
    assert client.containers.run("busybox", ["one", "two"], entrypoint=["echo", "args:"], remove=True) == b"args: one two\n"
    ran = subprocess.run([LAB, "run", "--rm", "--entrypoint", "echo", "busybox", "from", "lab"], capture_output=True, text=True)
    assert (ran.returncode, ran.stdout) == (0, "from lab\n"), ran.stderr


def test_logs_tail_since_until_and_timestamps(daemon):
    daemon.docker("run", "--name", "talker", "busybox", "sh", "-c", "echo one; echo two; sleep 1.2; echo three >&2; echo four")
    last = daemon.docker("logs", "--tail", "2", "talker")
    assert (last.stdout, last.stderr) == ("four\n", "three\n")
    stamped = daemon.docker("logs", "-t", "talker").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "four"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", line.split()[0]) for line in stamped)
    second = stamped[1].split()[0]
    between = f"{second[:19]}.{int(second[20:29]) // 1000:06d}Z"        # the time of "two", to the microsecond
    gap = datetime.datetime.strptime(between, "%Y-%m-%dT%H:%M:%S.%fZ") + datetime.timedelta(seconds=0.6)
    cut = gap.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    after = daemon.docker("logs", "--since", cut, "talker")
    assert (after.stdout, after.stderr) == ("four\n", "three\n"), after.stderr
    assert daemon.docker("logs", "--until", cut, "talker").stdout == "one\ntwo\n"
    box = daemon.client().containers.get("talker")
    assert box.logs(tail=1) == b"four\n"
    assert list(box.logs(stream=True, stderr=False)) == [b"one\n", b"two\n", b"four\n"]     # a frame per line
    daemon.docker("rm", "talker")
    daemon.docker("run", "-d", "--name", "ticking", "busybox", "sh", "-c", "while true; do echo tick; sleep 0.1; done")
    followed = daemon.docker("logs", "-f", "--until", f"{time.time() + 0.5:.6f}", "ticking", timeout=20)
    assert followed.returncode == 0 and set(followed.stdout.split()) == {"tick"}, followed.stderr   # ended at
    daemon.docker("rm", "-f", "ticking")                          # the first line after --until, as docker's


def test_a_rotated_log_stays_under_its_limit_and_logs_reads_across_its_files(daemon):
    line = "0" * 999
    daemon.docker("run", "-d", "--name", "chatty", "--log-opt", "max-size=1m", "--log-opt", "max-file=3", "busybox",
                  "sh", "-c", f"yes {line} | head -c 100000000; echo; echo end")    # 100 MB of output
    wait_until(lambda: daemon.docker("inspect", "-f", "{{.State.Status}}", "chatty").stdout == "exited\n",
               timeout=300, what="100 MB written")
    shown = daemon.docker("inspect", "-f", "{{json .HostConfig.LogConfig}} {{.LogPath}}", "chatty").stdout.split(" ", 1)
    assert json.loads(shown[0]) == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "3"}}
    sizes = {p.name: p.stat().st_size for p in Path(shown[1].strip()).parent.glob("container.log*")}
    assert sorted(sizes) == ["container.log", "container.log.1", "container.log.2"], sizes
    assert all(size <= 1_000_000 for size in sizes.values()), sizes
    kept = daemon.docker("logs", "chatty").stdout.splitlines()
    assert kept[-2:] == ["", "end"]
    assert len(kept) > 2000 and set(kept[1:-2]) == {line}     # 2 MB and more: the rotated files too
    quiet = daemon.client().containers.run("busybox", "echo hi", detach=True, log_config={"type": "none"})
    quiet.wait()
    assert daemon.docker("inspect", "-f", "{{.HostConfig.LogConfig.Type}}", quiet.id).stdout == "none\n"
    refused = daemon.docker("logs", quiet.id)
    assert refused.returncode == 1 and "configured logging driver does not support reading" in refused.stderr
    daemon.docker("rm", "chatty", quiet.id)


def test_logs_follow_goes_on_across_rotations(tmp_path):
    count = "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo $i; sleep 0.01; done"
    started = subprocess.run([LAB, "run", "-d", "--name", "counting", "--log-opt", "max-size=1k", "--log-opt", "max-file=2",
                              "busybox", "sh", "-c", count], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    followed = subprocess.run([LAB, "logs", "-f", "counting"], capture_output=True, text=True, timeout=120)
    assert followed.stdout.split() == [str(i) for i in range(1, 301)]       # about 4 rotations: not a line lost
    log = Path(json.loads(subprocess.run([LAB, "inspect", "counting"], capture_output=True).stdout)[0]["LogPath"])
    assert sorted(p.name for p in log.parent.glob("container.log*")) == ["container.log", "container.log.1"]
    subprocess.run([LAB, "rm", "counting"], check=True)


def test_every_option_lab_lacks_is_refused_never_ignored(daemon):
    for flags, said in ((["--log-driver", "syslog"], "logger: no log driver named 'syslog' is registered"),
                        (["--cpuset-mems", "0"], "lab does not support --cpuset-mems"),
                        (["--ipc", "host"], "lab does not support --ipc"),
                        (["--device", "/dev/fuse"], "lab does not support --device")):
        result = daemon.docker("run", "--rm", *flags, "busybox", "true")
        assert result.returncode == 125 and said in result.stderr, (flags, result.stderr)
    with pytest.raises(docker.errors.NotFound, match="(?i)could not get container for nosuch"):
        daemon.client().containers.run("busybox", "true", links={"nosuch": "b"}, remove=True)
    assert daemon.docker("ps", "-a", "-q").stdout == ""                  # and nothing was created


def test_a_device_cgroup_rule_lets_the_container_use_those_devices(daemon):
    # c 240:240, a number no driver has: the cgroup answers first (EPERM: v1's devices.allow list,
    # v2's BPF program); with the rule the kernel goes on to look for the driver, finds none (ENXIO).
    device = ["busybox", "sh", "-c", "mknod /d c 240 240 && cat /d"]
    assert "Operation not permitted" in daemon.docker("run", "--rm", *device).stderr
    ruled = daemon.docker("run", "--rm", "--device-cgroup-rule", "c 240:240 r", *device)
    assert "No such device or address" in ruled.stderr
    written = daemon.docker("run", "--rm", "--device-cgroup-rule", "c 240:240 r", "busybox", "sh", "-c",
                            "mknod /d c 240 240 && echo x > /d")                  # (r: reading only)
    assert "Operation not permitted" in written.stderr


def test_resource_options_reach_the_cgroup_and_the_process(daemon):
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    files = "cpu.weight memory.swap.max memory.low" if v2 else "cpu*/cpu.shares memory/memory.memsw.limit_in_bytes " \
        "memory/memory.soft_limit_in_bytes"
    ran = daemon.docker("run", "--name", "tuned", "-m", "64m", "--memory-swap", "128m", "--memory-reservation", "32m",
                        "--cpu-shares", "512", "--ulimit", "nofile=100:200", "--shm-size", "8m", "--group-add", "65534",
                        "busybox", "sh", "-c", f"cd /sys/fs/cgroup; cat {files}; ulimit -n; "
                        "ulimit -Hn; id -G; df -k /dev/shm | tail -1")
    lines = ran.stdout.splitlines()
    swap = str(64 << 20) if v2 else str(128 << 20)           # v2 counts swap alone, v1 memory and swap
    assert lines[:3] == (["20", swap, str(32 << 20)] if v2 else ["512", swap, str(32 << 20)]), ran.stdout
    assert lines[3:6] == ["100", "200", "0 65534"] and lines[6].split()[1] == "8192", ran.stdout
    shown = daemon.docker("inspect", "-f", "{{.HostConfig.CpuShares}} {{.HostConfig.MemorySwap}} "
                          "{{.HostConfig.MemoryReservation}} {{.HostConfig.ShmSize}} {{.HostConfig.GroupAdd}} "
                          "{{.HostConfig.Ulimits}}", "tuned").stdout
    assert shown == f"512 {128 << 20} {32 << 20} {8 << 20} [65534] [map[Hard:200 Name:nofile Soft:100]]\n"
    daemon.docker("rm", "tuned")
    for flags, said in ((["--memory-swap", "1g"], "--memory-swap needs -m"),
                        (["-m", "64m", "--memory-swap", "32m"], "is below -m"), (["--cpu-shares", "1"], "--cpu-shares"),
                        (["--group-add", "nosuch"], "unable to find group nosuch")):
        refused = daemon.docker("run", "--rm", *flags, "busybox", "true")
        assert refused.returncode in (125, 126) and said in refused.stderr, (flags, refused.stderr)
    with pytest.raises(docker.errors.APIError, match="soft limit may not be above the hard one"):   # (the CLI checks it too)
        daemon.client().containers.run("busybox", "true", ulimits=[docker.types.Ulimit(name="nofile", soft=5, hard=2)])
    if v2:                              # v2 cannot turn the OOM killer off: refused, not ignored
        refused = daemon.docker("run", "--rm", "-m", "16m", "--oom-kill-disable", "busybox", "true")
        assert "cgroup v2 has no way to turn the OOM killer off" in refused.stderr
        return
    box = daemon.client().containers.run("busybox", ["sh", "-c", "x=a; while true; do x=$x$x; done"], detach=True,
                                         mem_limit="16m", oom_kill_disable=True)
    pid = daemon.docker("inspect", "-f", "{{.State.Pid}}", box.id).stdout.strip()        # v1: at the limit, the
    memory = next(line.split(":")[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()   # hog waits
                  if line.split(":")[1] == "memory")                                   # instead of being killed
    oom_control = Path("/sys/fs/cgroup/memory", memory.lstrip("/"), "memory.oom_control")
    wait_until(lambda: "under_oom 1" in oom_control.read_text(), what="the hog waiting at its limit")
    assert daemon.docker("inspect", "-f", "{{.State.Status}} {{.HostConfig.OomKillDisable}}", box.id).stdout \
        == "running true\n"
    box.remove(force=True)


def test_mount_volumes_from_and_a_missing_workdir(daemon, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "in.txt").write_text("from the host\n")
    made = daemon.docker("run", "--name", "holder", "--mount", f"type=bind,source={tmp_path / 'src'},target=/src,readonly",
                  "--mount", "type=volume,source=shared,target=/shared", "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1m",
                  "busybox", "sh", "-c", "echo kept > /shared/f; df -k /scratch | tail -1")
    mounts = daemon.docker("inspect", "-f", "{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}", "holder").stdout.split()
    assert mounts == ["/src=false", "/shared=true"] and made.stdout.split()[1] == "1024"    # the tmpfs: 1m
    ran = daemon.docker("run", "--rm", "--volumes-from", "holder", "-w", "/made/for/it", "busybox", "sh", "-c",
                        "cat /src/in.txt /shared/f; pwd; touch /src/x")
    assert ran.stdout == "from the host\nkept\n/made/for/it\n" and "Read-only file system" in ran.stderr
    writable = daemon.docker("run", "--rm", "--volumes-from", "holder:rw", "busybox", "touch", "/shared/g")
    assert writable.returncode == 0
    missing = daemon.docker("run", "--rm", "--volumes-from", "nobody", "busybox", "true")
    assert missing.returncode == 125 and "No such container" in missing.stderr
    daemon.docker("rm", "holder")
    # volume-nocopy: an empty volume is not filled with the image's folder, and --volumes-from keeps that
    bare = daemon.docker("run", "--name", "bare", "--mount", "type=volume,source=bare,target=/etc,volume-nocopy=true",
                         "busybox", "sh", "-c", "test -e /etc/passwd || echo not filled")
    assert (bare.returncode, bare.stdout) == (0, "not filled\n"), bare.stderr
    assert daemon.docker("inspect", "-f", "{{.HostConfig.Binds}} {{range .Mounts}}{{.Mode}}{{end}}", "bare").stdout \
        == "[bare:/etc:nocopy] nocopy\n"
    assert daemon.docker("run", "--rm", "--volumes-from", "bare:ro", "busybox", "ls", "/etc/passwd").returncode == 1
    daemon.docker("rm", "bare")
    daemon.docker("volume", "rm", "shared", "bare")


def test_docker_update_changes_the_limits_of_a_running_container(daemon):
    daemon.docker("run", "-d", "--name", "grows", "-m", "32m", "busybox", "sleep", "100")
    limit = "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max 2>/dev/null || " \
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max"
    assert daemon.docker("exec", "grows", "sh", "-c", limit).stdout.split() == [str(32 << 20), "max"]
    updated = daemon.docker("update", "-m", "64m", "--memory-swap", "128m", "--pids-limit", "50", "--restart", "always", "grows")
    assert updated.returncode == 0, updated.stderr
    assert daemon.docker("exec", "grows", "sh", "-c", limit).stdout.split() == [str(64 << 20), "50"]
    assert daemon.docker("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}",
                         "grows").stdout == f"{64 << 20} 50 always\n"
    refused = daemon.docker("update", "--cpuset-cpus", "0", "grows")
    assert refused.returncode == 1 and "lab does not support docker update of CpusetCpus" in refused.stderr
    assert daemon.docker("update", "--pids-limit", "-1", "grows").returncode == 0         # -1: no limit
    assert daemon.docker("exec", "grows", "sh", "-c", limit).stdout.split() == [str(64 << 20), "max"]
    daemon.docker("rm", "-f", "grows")


def test_fifty_concurrent_docker_runs_all_succeed_and_leave_nothing(daemon, lab_root):
    with concurrent.futures.ThreadPoolExecutor(10) as pool:          # 5 batches of 10 at once
        runs = list(pool.map(lambda i: daemon.docker("run", "--rm", "--name", f"many-{i}", "busybox", "echo", str(i)),
                             range(50), timeout=600))
    assert [(run.returncode, run.stdout) for run in runs] == [(0, f"{i}\n") for i in range(50)], \
        [run.stderr for run in runs if run.returncode]
    assert daemon.docker("ps", "-a", "-q").stdout == ""
    assert list((lab_root / "containers").glob("[!.]*")) == []


def test_init_is_pid_1_and_passes_the_stop_signal_on(daemon):
    ran = daemon.docker("run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; exit 3")
    assert (ran.returncode, ran.stdout) == (3, "/sbin/docker-init -- sh -c cat /proc/1/cmdline | tr '\\0' ' '; exit 3 ")
    daemon.docker("run", "-d", "--name", "inited", "--init", "busybox", "sleep", "100")
    daemon.docker("stop", "inited")       # sleep as PID 1 would ignore SIGTERM (and be killed: 137)
    assert daemon.docker("inspect", "-f", "{{.State.ExitCode}} {{.HostConfig.Init}}", "inited").stdout == "143 true\n"
    assert daemon.docker("diff", "inited").stdout.split() == ["C", "/sbin", "A", "/sbin/docker-init"]   # its mount point
    daemon.docker("rm", "inited")


def test_a_healthcheck_says_starting_healthy_then_unhealthy(daemon):
    def health(name: str) -> dict:
        return json.loads(daemon.docker("inspect", "-f", "{{json .State.Health}}", name).stdout)
    daemon.docker("run", "-d", "--name", "later", "--health-cmd", "true", "--health-interval", "1h", "busybox", "sleep", "100")
    assert health("later") == {"Status": "starting", "FailingStreak": 0, "Log": []}
    assert "(health: starting)" in daemon.docker("ps", "--filter", "name=later").stdout
    daemon.docker("run", "-d", "--name", "checked", "--health-cmd", "cat /ok", "--health-interval", "100ms",
                  "--health-retries", "2", "busybox", "sh", "-c", "touch /ok; exec sleep 100")
    wait_until(lambda: health("checked")["Status"] == "healthy", what="a healthy check")
    assert "(healthy)" in daemon.docker("ps", "--filter", "name=checked").stdout
    daemon.docker("exec", "checked", "rm", "/ok")
    wait_until(lambda: health("checked")["Status"] == "unhealthy", what="two failed checks in a row")
    last = health("checked")["Log"][-1]
    assert last["ExitCode"] == 1 and "No such file" in last["Output"] and health("checked")["FailingStreak"] >= 2
    slow = daemon.client().containers.run("busybox", "sleep 100", detach=True, healthcheck={
        "test": ["CMD", "sleep", "10"], "interval": 100_000_000, "timeout": 200_000_000, "retries": 1})
    wait_until(lambda: health(slow.id)["Status"] == "unhealthy", what="a check past its timeout")
    assert health(slow.id)["Log"][-1] | {"Start": 0, "End": 0} == {
        "Start": 0, "End": 0, "ExitCode": -1, "Output": "Health check exceeded timeout (0.2s)"}
    daemon.docker("rm", "-f", "later", "checked", slow.id)


def upgraded(daemon, path: str, body: dict | None = None) -> bytes:
    """POST path with `Upgrade: tcp`, as docker's clients start an exec or attach, and return
    what follows the answer's headers, read as one byte stream until the daemon closes it. (Not
    through the SDK: it reads the stream from beneath its own buffer, and loses what came with
    the headers when the answer is quick, as an attach to an ended container is, and under
    load an exec's: its output was b'' once in a make test.)"""
    payload = json.dumps(body).encode() if body is not None else b""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(daemon.socket)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: lab\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
        received = b"".join(iter(lambda: sock.recv(4096), b""))
    assert received.startswith(b"HTTP/1.1 101 UPGRADED\r\n"), received[:300]
    return received.split(b"\r\n\r\n", 1)[1]


def unframed(stream: bytes) -> list[tuple[int, bytes]]:
    """A multiplexed stream's frames (8 bytes: the stream, 0 0 0, the size; then the data),
    those in a row from the same stream joined."""
    found = []
    while stream:
        kind, size = stream[0], int.from_bytes(stream[4:8], "big")
        data, stream = stream[8:8 + size], stream[8 + size:]
        if found and found[-1][0] == kind:
            found[-1] = (kind, found[-1][1] + data)
        else:
            found.append((kind, data))
    return found


def test_exec_start_frames_as_its_tty_says_and_attach_sends_the_logs(daemon):
    api = daemon.client().api
    box = daemon.client().containers.run("busybox", "sleep 100", detach=True)
    on_terminal = api.exec_create(box.id, ["sh", "-c", "echo out; echo err >&2"], tty=True)["Id"]
    framed = upgraded(daemon, f"/v1.43/exec/{on_terminal}/start", {"Tty": False})
    assert unframed(framed) == [(1, b"out\r\nerr\r\n")]                   # a terminal's output, framed as stdout
    piped = api.exec_create(box.id, ["sh", "-c", "echo out"], tty=False)["Id"]
    assert upgraded(daemon, f"/v1.43/exec/{piped}/start", {"Tty": True}) == b"out\n"              # raw: no frame headers
    box.remove(force=True)
    ended = daemon.client().containers.run("busybox", ["sh", "-c", "echo one; echo two >&2"], detach=True)
    ended.wait()
    for streams, expected in (("stdout=1", b"\1\0\0\0\0\0\0\4one\n"),
                              ("stdout=1&stderr=1", b"\1\0\0\0\0\0\0\4one\n\2\0\0\0\0\0\0\4two\n")):
        assert upgraded(daemon, f"/v1.43/containers/{ended.id}/attach?logs=1&stream=0&{streams}") == expected
    assert daemon.docker("inspect", "-f", "{{.State.Status}}", ended.id).stdout == "exited\n"   # not started again
    ended.remove()


def test_anonymous_volumes_bare_env_names_and_a_restarting_container(daemon, tmp_path):
    api = daemon.client().api
    box = api.create_container("busybox", "true", volumes=["/vol"], environment={"Foo": None, "Other": "one"})
    info = api.inspect_container(box)
    anonymous = info["Mounts"][0]["Name"]
    assert info["Mounts"][0]["Destination"] == "/vol" and re.fullmatch(r"[0-9a-f]{64}", anonymous)
    assert "Foo" in info["Config"]["Env"] and "Other=one" in info["Config"]["Env"]
    (tmp_path / "data.txt").write_text("into a volume\n")
    with tarfile.open(tmp_path / "in.tar", "w") as tar:
        tar.add(tmp_path / "data.txt", "data.txt")
    assert api.put_archive(box, "/vol", (tmp_path / "in.tar").read_bytes())      # not started yet: cp still
    api.start(box)                                                                  # reaches its volume
    api.wait(box)
    assert (Path(info["Mounts"][0]["Source"]) / "data.txt").read_text() == "into a volume\n"
    api.remove_container(box, v=True)                                               # rm -v: its volume too
    assert anonymous not in [v["Name"] for v in api.volumes()["Volumes"] or []]
    bare = daemon.client().containers.run("busybox", ["grep", "-c", " /data ", "/proc/mounts"], volumes=["/data"],
                                          detach=True)          # (a bare path in Binds too: the SDK's run)
    assert bare.wait()["StatusCode"] == 0 and bare.logs() == b"1\n"
    bare.remove(v=True)
    twice = daemon.docker("run", "--rm", "-v", "twice:/data", "-v", "twice:/data", "busybox", "grep", "-c", " /data ",
                          "/proc/mounts")            # (the CLI sends a repeated -v whole, in Config.Volumes)
    assert twice.stdout == "1\n", twice.stderr
    daemon.docker("volume", "rm", "twice")
    before = set(daemon.docker("volume", "ls", "-q").stdout.split())
    gone = daemon.docker("run", "--rm", "-v", "/scratch", "busybox", "touch", "/scratch/f")     # --rm: its anonymous
    assert gone.returncode == 0, gone.stderr                                                     # volume goes with it
    assert set(daemon.docker("volume", "ls", "-q").stdout.split()) == before, "the --rm container's anonymous volume stayed"
    again = api.create_container("busybox", ["sleep", "0.2"], host_config=api.create_host_config(
        restart_policy={"Name": "always"}))
    api.start(again)
    wait_until(lambda: api.inspect_container(again)["RestartCount"] >= 1, what="a restart")
    with pytest.raises(docker.errors.APIError, match="stop the container before removing"):
        while True:                       # (between two runs it is restarting, during one running)
            api.remove_container(again)
    api.remove_container(again, force=True)


def test_commit_and_import_with_changes_and_the_image_and_volume_filters(daemon, tmp_path):
    client, api = daemon.client(), daemon.client().api
    box = client.containers.run("busybox", ["sh", "-c", "echo made > /made"], detach=True)
    box.wait()
    untagged = api.commit(box.id, changes=["CMD [\"cat\", \"/made\"]", "ENV MODE=test A=1 Q=\"x y\"",
                                           "LABEL kind=made other=\"one two\""])["Id"]
    assert client.images.get(untagged).tags == []                               # no name: untagged
    changed = client.images.get(untagged).attrs["Config"]                       # (each pair, as a Dockerfile's)
    assert {"MODE=test", "A=1", "Q=x y"} <= set(changed["Env"]), changed["Env"]
    assert changed["Labels"] == {"kind": "made", "other": "one two"}
    conf = {"Env": ["Q=1"], "Labels": {"l": "v"}, "WorkingDir": "/tmp", "User": "nobody", "ExposedPorts": {"80/tcp": {}}}
    configured = client.images.get(api.commit(box.id, conf=conf)["Id"]).attrs["Config"]       # (the SDK's conf)
    assert ("Q=1" in configured["Env"], configured["Labels"], configured["WorkingDir"], configured["User"],
            configured["ExposedPorts"]) == (True, {"l": "v"}, "/tmp", "nobody", {"80/tcp": {}})
    with pytest.raises(docker.errors.APIError, match="does not take Volumes"):
        api.commit(box.id, conf={"Volumes": {"/data": {}}})
    assert client.containers.run(untagged, remove=True) == b"made\n"               # run by its id
    assert [i.id for i in client.images.list(filters={"label": "kind=made"})] == [untagged]
    assert untagged in [i.id for i in client.images.list(filters={"dangling": True})]
    dangling = daemon.docker("images", "-q", "--no-trunc", "--filter", "dangling=true")   # (the CLI's old filter form)
    assert dangling.returncode == 0 and untagged in dangling.stdout.split(), dangling.stderr
    client.images.get(untagged).tag("made", "v1")
    client.images.get(untagged).tag("also-made", "v1")
    assert [i.id for i in client.images.list("made")] == [untagged] and client.images.list("nosuch") == []
    listed = daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}", "made")       # only the tags asked for
    assert listed.stdout == "made:v1\n", listed.stderr
    before = daemon.docker("images", "-q", "--no-trunc", "--filter", "before=made:v1").stdout.split()
    assert untagged not in before and client.images.get("busybox").id in before
    since = daemon.docker("images", "-q", "--no-trunc", "--filter", "since=busybox").stdout.split()
    assert untagged in since and client.images.get("busybox").id not in since
    client.images.remove("also-made:v1")
    box.remove()
    with tarfile.open(tmp_path / "root.tar", "w") as tar:
        tar.add(tmp_path, ".", filter=lambda info: None if info.name.endswith(".tar") else info)
    imported = api.import_image_from_data((tmp_path / "root.tar").read_bytes(), repository="plain",
                                          changes=["ENTRYPOINT [\"/bin/sh\"]", "WORKDIR /srv"])
    config = api.inspect_image("plain:latest")["Config"]
    assert (config["Entrypoint"], config["WorkingDir"], config["Cmd"]) == (["/bin/sh"], "/srv", None), imported
    with pytest.raises(docker.errors.ImageLoadError):
        client.images.load(b"not an archive")
    saved = b"".join(client.images.get("made:v1").save(named=True))
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        assert json.load(tar.extractfile("manifest.json"))[0]["RepoTags"] == ["made:v1"]
    client.volumes.create("labelled", labels={"team": "course"})
    client.volumes.create("plain-volume")
    assert [v.name for v in client.volumes.list(filters={"label": "team=course"})] == ["labelled"]
    assert [v.name for v in client.volumes.list(filters={"name": "plain-"})] == ["plain-volume"]
    with pytest.raises(docker.errors.APIError, match="local volume driver only"):
        client.volumes.create("elsewhere", driver="nfs")
    for name in ("labelled", "plain-volume"):
        client.volumes.get(name).remove()
    api.remove_image("made:v1")
    api.remove_image("plain:latest")


def test_api_versions_up_to_1_47_and_what_changed_in_them(daemon):
    assert daemon.docker("pull", "busybox").returncode == 0                 # (an image to list: lab makes it)
    old = daemon.request("GET", "/v1.41/images/json")[1]
    new = daemon.request("GET", "/v1.47/images/json")[1]
    assert "VirtualSize" in old[0] and "VirtualSize" not in new[0]         # gone since 1.44
    status, body = daemon.request("GET", "/v1.48/version")
    assert status == 400 and "Maximum supported API version is 1.47" in body["message"]
    client = docker.DockerClient(base_url=f"unix://{daemon.socket}")          # (no version=: it asks GET /version)
    assert client.api.api_version == "1.47" and client.info()["Debug"] is False
    with pytest.raises(docker.errors.APIError, match="unknown operating system"):
        client.images.pull("busybox", platform="windows/amd64")
    box = client.containers.run("busybox", "sleep 100", detach=True)
    assert set(box.stats(stream=False)["networks"]) == {"lo", "eth0"}       # its own network namespace's
    conn = daemon.connection()
    conn.request("GET", f"/v1.47/containers/{box.id}/logs?stdout=1")
    answer = conn.getresponse()
    assert answer.status == 200 and answer.getheader("Api-Version") == "1.47"   # a stream says it too
    conn.close()
    box.remove(force=True)


def test_exec_as_another_user(daemon):
    daemon.docker("run", "-d", "--name", "host-of-users", "busybox", "sleep", "100")
    assert daemon.docker("exec", "-u", "nobody", "host-of-users", "id", "-u").stdout == "65534\n"
    assert daemon.docker("exec", "-u", "1000:1000", "host-of-users", "id").stdout == "uid=1000 gid=1000 groups=1000\n"
    assert daemon.docker("exec", "host-of-users", "id", "-u").stdout == "0\n"
    daemon.docker("rm", "-f", "host-of-users")


def test_stop_sends_the_containers_stop_signal(daemon):
    daemon.docker("run", "-d", "--name", "usr1", "--stop-signal", "USR1", "--stop-timeout", "30", "busybox", "sh", "-c",
                  "trap 'echo got usr1; exit 5' USR1; echo ready; while true; do sleep 0.02; done")
    wait_until(lambda: daemon.docker("logs", "usr1").stdout == "ready\n", what="the trap set")
    shown = daemon.docker("inspect", "-f", "{{.Config.StopSignal}} {{.Config.StopTimeout}}", "usr1")
    assert shown.stdout == "USR1 30\n"
    assert daemon.docker("stop", "usr1").returncode == 0
    assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", "usr1").stdout == "5\n"
    assert daemon.docker("logs", "usr1").stdout == "ready\ngot usr1\n"
    daemon.docker("rm", "usr1")
    bad = daemon.docker("run", "--rm", "--stop-signal", "NOSUCH", "busybox", "true")
    assert bad.returncode == 125 and "NOSUCH" in bad.stderr


def test_docker_cp_both_ways_and_export_stay_inside_the_container(daemon, tmp_path):
    daemon.docker("run", "-d", "--name", "files", "busybox", "sh", "-c", "mkdir -p /srv/dir; echo hello > /srv/dir/f; "
                  "ln -s /etc/shadow /srv/dir/evil; echo ready; exec sleep 600")
    wait_until(lambda: daemon.docker("logs", "files").stdout == "ready\n", what="the files made")
    copied = daemon.docker("cp", "files:/srv/dir", str(tmp_path))
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "dir" / "f").read_text() == "hello\n"
    assert os.readlink(tmp_path / "dir" / "evil") == "/etc/shadow"      # the link itself, never the host's file
    (tmp_path / "up.txt").write_text("from the host\n")
    assert daemon.docker("cp", str(tmp_path / "up.txt"), "files:/srv/").returncode == 0
    assert daemon.docker("exec", "files", "cat", "/srv/up.txt").stdout == "from the host\n"
    missing = daemon.docker("cp", "files:/nosuch", str(tmp_path))
    assert missing.returncode == 1 and "files:/nosuch" in missing.stderr
    box = daemon.client().containers.get("files")
    hostile = io.BytesIO()
    with tarfile.open(fileobj=hostile, mode="w") as tar:
        member = tarfile.TarInfo("../../escaped")
        member.size = 3
        tar.addfile(member, io.BytesIO(b"bad"))
    with pytest.raises(docker.errors.APIError):
        box.put_archive("/srv", hostile.getvalue())
    assert daemon.docker("exec", "files", "ls", "/").stdout.split().count("escaped") == 0
    daemon.docker("stop", "-t", "0", "files")
    assert daemon.docker("cp", "files:/srv/up.txt", str(tmp_path / "back.txt")).returncode == 0     # ended: its files
    assert (tmp_path / "back.txt").read_text() == "from the host\n"
    assert daemon.docker("cp", "files:/etc/hostname", str(tmp_path)).returncode == 0    # and lab's /etc files, as
    assert (tmp_path / "hostname").read_text() == box.id[:12] + "\n"                   # docker's (were empty)
    assert daemon.docker("export", "-o", str(tmp_path / "files.tar"), "files").returncode == 0
    with tarfile.open(tmp_path / "files.tar") as tar:
        names = tar.getnames()
    assert {"srv/up.txt", "srv/dir/f", "bin/busybox"} <= set(names)
    daemon.docker("rm", "files")


def test_docker_cp_export_and_commit_never_read_the_containers_name_services(daemon, tmp_path):
    """docker cp, export and commit work from a process of lab's chrooted into the container's
    root (or its upper folder), where owners' names would be the container's to give (tarfile
    looks them up): glibc's first lookup there would read the container's nsswitch.conf and load
    the libnss_*.so it names, code run by host root (docker had that hole: CVE-2019-14271), and
    each one opens its /etc/passwd or /etc/group. Here all three are pipes, which a reader must
    wait on: a commit stopped so held the images' lock for good."""
    daemon.docker("run", "-d", "--name", "nss", "busybox", "sh", "-c",
                  "for f in nsswitch.conf passwd group; do rm -f /etc/$f; mkfifo /etc/$f; done; "
                  "echo hi > /file; echo ready; exec sleep 600")
    wait_until(lambda: daemon.docker("logs", "nss").stdout == "ready\n", what="the pipes made")
    pipes = [f"/proc/{harness.inspect('nss')['State']['Pid']}/root/etc/{f}" for f in ("nsswitch.conf", "passwd", "group")]
    listening = socket.socket(socket.AF_UNIX)                  # and a socket, which tar has no kind for: left out
    listening.bind(f"/proc/{harness.inspect('nss')['State']['Pid']}/root/sock")
    read = []

    def done(command: subprocess.Popen) -> bool:
        """Whether the command ended; a reader waiting on a pipe is noted, and let go (a
        writer's open: it reads nothing; it may come back, and is let go again)."""
        for pipe in pipes:
            try:
                os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
                read.append(pipe)
            except OSError:                                    # (ENXIO: no reader)
                pass
        return command.poll() is not None
    (tmp_path / "up.txt").write_text("from the host\n")
    for args in (["cp", "nss:/file", str(tmp_path / "file")], ["cp", str(tmp_path / "up.txt"), "nss:/"],
                 ["export", "-o", str(tmp_path / "nss.tar"), "nss"], ["commit", "nss", "nsscommit"]):
        copy = subprocess.Popen([DOCKER, *args], env=daemon.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: done(copy), what=f"docker {args[0]} done")
        assert copy.wait(timeout=30) == 0, copy.stderr.read()
        assert not read, f"docker {' '.join(args)} read the container's {read}"
    listening.close()
    assert daemon.docker("rmi", "nsscommit").returncode == 0
    assert (tmp_path / "file").read_text() == "hi\n"
    assert daemon.docker("exec", "nss", "cat", "/up.txt").stdout == "from the host\n"
    daemon.docker("rm", "-f", "nss")


def test_docker_cp_into_a_container_replaces_a_device_node_it_made_instead_of_writing_into_it(daemon, tmp_path):
    """The container made a device node where a file is copied in: written through it, lab
    (host root, in no device cgroup) would write to that device; with `b 8 0`, the host's disk.
    Here it is /dev/full, which says so: "No space left on device"."""
    daemon.docker("run", "-d", "--name", "noded", "busybox", "sh", "-c", "mkdir /t; mknod /t/full c 1 7; echo ready; exec sleep 600")
    wait_until(lambda: daemon.docker("logs", "noded").stdout == "ready\n", what="the node made")
    (tmp_path / "full").write_text("from the host\n")
    copied = daemon.docker("cp", str(tmp_path / "full"), "noded:/t/")
    assert copied.returncode == 0, copied.stderr
    assert daemon.docker("exec", "noded", "cat", "/t/full").stdout == "from the host\n"
    daemon.docker("rm", "-f", "noded")


def test_starts_at_once_start_the_container_once(daemon):
    """Six starts of one created container at once: one starts it, the others find it running
    (304), and its record stays whole (they used to race: "is damaged", a second supervisor)."""
    cid = daemon.create({"Image": "busybox", "Cmd": ["sleep", "600"]}, name="raced")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(lambda _: daemon.request("POST", f"/v1.41/containers/{cid}/start")[0], range(6)))
    assert statuses == [204, 304, 304, 304, 304, 304]
    shown = daemon.docker("ps", "--filter", "name=raced", "--format", "{{.Status}}").stdout
    assert shown.startswith("Up "), shown
    assert daemon.docker("rm", "-f", "raced").returncode == 0


def test_docker_diff_tells_nothing_of_the_hosts_files_through_an_images_symlink(daemon, tmp_path):
    """docker diff says whether a path of the container's layer is in its image too ("C") or new
    ("A"): looked up on the host through the image's symlink /a -> a host folder, it told
    whether the host had that file."""
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "x").write_text("the host's\n")
    assert daemon.docker("run", "--name", "linker", "busybox", "ln", "-s", str(tmp_path / "host"), "/a").returncode == 0
    assert daemon.docker("commit", "linker", "linked:1").returncode == 0
    assert daemon.docker("run", "--name", "replacer", "linked:1", "sh", "-c", "rm /a && mkdir /a && touch /a/x").returncode == 0
    status, changes = daemon.request("GET", "/v1.41/containers/replacer/changes")
    assert status == 200 and {"Path": "/a/x", "Kind": 1} in changes, changes
    daemon.docker("rm", "linker", "replacer")
    daemon.docker("rmi", "linked:1")


def test_docker_save_load_and_import_move_images_in_and_out(daemon, tmp_path):
    daemon.docker("run", "--name", "maker", "busybox", "sh", "-c", "echo kept > /kept; rm /bin/ls")
    daemon.docker("commit", "maker", "kept:v1")
    daemon.docker("rm", "maker")
    assert daemon.docker("save", "-o", str(tmp_path / "kept.tar"), "kept:v1").returncode == 0
    with tarfile.open(tmp_path / "kept.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["kept:v1"] and len(manifest[0]["Layers"]) == 2
    from lab import images
    made, when = daemon.docker("inspect", "-f", "{{.Id}}", "kept:v1").stdout, images.find("kept:v1")["Created"]
    daemon.docker("rmi", "kept:v1")
    assert daemon.docker("load", "-i", str(tmp_path / "kept.tar")).stdout == "Loaded image: kept:v1\n"
    assert daemon.docker("inspect", "-f", "{{.Id}}", "kept:v1").stdout == made       # the same image, the same id
    assert abs(images.find("kept:v1")["Created"] - when) < 0.001, "a loaded image was made when it was, not loaded"
    daemon.docker("tag", "kept:v1", "kept:v2")
    assert daemon.docker("save", "-o", str(tmp_path / "two.tar"), "kept:v1", "busybox", "kept:v2").returncode == 0
    with tarfile.open(tmp_path / "two.tar") as tar:
        saved = json.load(tar.extractfile("manifest.json"))
        layers = [name for name in tar.getnames() if name.endswith("/layer.tar")]
    assert [entry["RepoTags"] for entry in saved] == [["kept:v1", "kept:v2"], ["busybox:latest"]]
    assert len(layers) == len(set(layers)) == 2                         # busybox's layer once, for both images
    daemon.docker("rmi", "kept:v1", "kept:v2")
    loaded = daemon.docker("load", "-i", str(tmp_path / "two.tar"))
    assert loaded.stdout.splitlines() == ["Loaded image: kept:v1", "Loaded image: kept:v2", "Loaded image: busybox:latest"]
    assert daemon.docker("inspect", "-f", "{{.Id}}", "kept:v2").stdout == made, loaded.stderr
    daemon.docker("rmi", "kept:v2")
    ran = daemon.docker("run", "--rm", "kept:v1", "sh", "-c", "cat /kept; ls /bin/ls")
    assert (ran.stdout, ran.returncode) == ("kept\n", 1)                # the deletion came along too
    client = daemon.client()
    data = b"".join(client.images.get("kept:v1").save(named=True))     # (by id: no name kept, as docker)
    client.images.remove("kept:v1")
    assert [image.tags for image in client.images.load(data)] == [["kept:v1"]]
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "hello").write_text("imported\n")
    subprocess.run(["tar", "-C", str(tmp_path / "root"), "-cf", str(tmp_path / "root.tar"), "."], check=True)
    assert daemon.docker("import", str(tmp_path / "root.tar"), "rootfs:v2").stdout.startswith("sha256:")
    assert "rootfs:v2" in daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    daemon.docker("rmi", "kept:v1", "rootfs:v2")
    (tmp_path / "notes.txt").write_text("not an archive\n" * 100)
    for what, said in (("import", "Error response from daemon: the uploaded archive is not a tar archive"),
                       ("load", "the uploaded archive is not a tar archive")):      # (not the temporary file's
        failed = daemon.docker(what, *(["-i"] if what == "load" else []), str(tmp_path / "notes.txt"))  # path)
        assert failed.returncode == 1 and said in failed.stderr and ".incoming" not in failed.stderr, failed.stderr


def test_user_runs_the_command_as_that_user_with_no_capabilities(daemon):
    shown = daemon.docker("run", "--rm", "-u", "nobody", "busybox", "id")
    assert shown.stdout == "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n", shown.stderr
    numbers = daemon.docker("run", "--rm", "--user", "1000:1000", "busybox", "sh", "-c",
                            "id -u; id -g; grep CapEff /proc/self/status; touch /etc/mine")
    assert numbers.stdout == "1000\n1000\nCapEff:\t0000000000000000\n" and "Permission denied" in numbers.stderr
    daemon.docker("run", "-d", "--name", "nobodys", "-u", "nobody", "busybox", "sleep", "600")
    assert daemon.docker("inspect", "-f", "{{.Config.User}}", "nobodys").stdout == "nobody\n"
    assert daemon.docker("exec", "nobodys", "id", "-u").stdout == "65534\n"     # exec runs as it too
    unknown = daemon.docker("exec", "-u", "nosuch", "nobodys", "id")
    assert unknown.returncode == 126 and "unable to find user nosuch" in unknown.stderr   # (docker's: runc's failure)
    daemon.docker("rm", "-f", "nobodys")
    missing = daemon.docker("run", "--rm", "-u", "nosuch", "busybox", "id")
    assert missing.returncode != 0 and "unable to find user nosuch" in missing.stderr
    ran = subprocess.run([LAB, "run", "--rm", "-u", "nobody", "busybox", "id", "-un"], capture_output=True, text=True)
    assert (ran.returncode, ran.stdout) == (0, "nobody\n"), ran.stderr


def test_read_only_root_with_a_tmpfs_where_it_must_write(daemon):
    shown = daemon.docker("run", "--rm", "--read-only", "--tmpfs", "/run:size=1m", "busybox", "sh", "-c",
                          "touch /x 2>&1; touch /run/ok && echo run-ok; grep ' /run ' /proc/mounts")
    lines = shown.stdout.splitlines()
    assert lines[0] == "touch: /x: Read-only file system" and lines[1] == "run-ok", shown.stderr
    assert lines[2].startswith("tmpfs /run tmpfs rw,nosuid,nodev,noexec") and "size=1024k" in lines[2]
    daemon.docker("run", "-d", "--name", "ro", "--read-only", "--tmpfs", "/run", "busybox", "sleep", "600")
    shown = daemon.docker("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}} {{json .HostConfig.Tmpfs}}", "ro")
    assert shown.stdout == 'true {"/run":""}\n'
    daemon.docker("rm", "-f", "ro")
    bad = daemon.docker("run", "--rm", "--tmpfs", "/x:bogus=1", "busybox", "true")
    assert bad.returncode == 125 and "invalid --tmpfs option 'bogus=1'" in bad.stderr


def test_docker_events_reports_what_happens_to_containers(daemon):
    conn = daemon.connection()
    conn.request("GET", "/v1.41/events?filters=" + urllib.parse.quote(json.dumps({"container": ["evented"]})))
    events = conn.getresponse()                      # its headers: the daemon watches from now on
    assert events.status == 200

    def next_events(n: int) -> list[str]:
        found = [json.loads(events.readline()) for _ in range(n)]
        return [" ".join([e["Action"], e["Actor"]["Attributes"]["name"],
                          e["Actor"]["Attributes"].get("exitCode", e["Actor"]["Attributes"].get("signal", ""))])
                for e in found]
    try:
        daemon.docker("run", "-d", "--name", "evented", "busybox", "sleep", "600")
        assert next_events(2) == ["create evented ", "start evented "]
        daemon.docker("pause", "evented")
        assert next_events(1) == ["pause evented "]
        daemon.docker("unpause", "evented")
        assert next_events(1) == ["unpause evented "]
        daemon.docker("stop", "-t", "0", "evented")              # (sleep, as PID 1, ignores TERM)
        stopping = next_events(4)                                 # (stop is recorded once die is: either first)
        assert stopping[:2] == ["kill evented 15", "kill evented 9"], stopping
        assert sorted(stopping[2:]) == ["die evented 137", "stop evented "], stopping
        daemon.docker("start", "evented")
        assert next_events(1) == ["start evented "]
        daemon.docker("kill", "evented")
        assert next_events(2) == ["kill evented 9", "die evented 137"]
        daemon.docker("rm", "evented")
        assert next_events(1) == ["destroy evented "]
    finally:
        conn.close()
    ended = daemon.docker("events", "--until", str(int(time.time())), timeout=30)      # until: the stream ends
    assert ended.returncode == 0, ended.stderr


def test_ps_filters_by_order_network_volume_port_and_health_and_prune_until(daemon):
    def shown(*filters):
        listed = daemon.docker("ps", "-a", "--format", "{{.Names}}", *[f"--filter={f}" for f in filters])
        assert listed.returncode == 0, listed.stderr
        return sorted(listed.stdout.split())
    assert daemon.docker("network", "create", "filtered").returncode == 0
    assert daemon.docker("create", "--name", "first", "-v", "kept:/data", "busybox", "true").returncode == 0
    assert daemon.docker("create", "--name", "second", "--network", "filtered", "-p", "8093:80", "busybox", "true").returncode == 0
    assert daemon.docker("create", "--name", "third", "--expose", "7000", "--health-cmd", "true", "busybox", "true").returncode == 0
    try:
        assert shown("before=second") == ["first"] and shown("since=second") == ["third"]
        assert shown("network=filtered") == ["second"] and shown("volume=kept") == shown("volume=/data") == ["first"]
        assert shown("publish=80") == ["second"] and shown("expose=7000/tcp") == ["third"]
        assert shown("health=none") == ["first", "second", "third"]       # (none before it starts, as docker's)
        assert shown("health=starting") == []
        refused = daemon.docker("ps", "--filter", "health=ill")
        assert refused.returncode == 1 and "invalid filter 'health=ill'" in refused.stderr
        kept = daemon.docker("container", "prune", "-f", "--filter", "until=1h")
        assert kept.returncode == 0 and shown("name=first") == ["first"]              # all made less than 1h ago
        assert daemon.docker("container", "prune", "-f", "--filter", "until=0s").returncode == 0
        assert shown("name=first") == [] and shown() == []
    finally:
        daemon.docker("rm", "-f", "first", "second", "third")
        daemon.docker("network", "rm", "filtered")
        daemon.docker("volume", "rm", "kept")


def test_uploads_bigger_than_a_json_body_are_taken_whole(daemon, tmp_path):
    """docker cp into a container, import, load and build send a tar of any size (the daemon
    takes JSON bodies of at most 16 MiB): each goes to a file as it comes."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 20)                          # 20 MiB
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    assert daemon.docker("run", "-d", "--name", "receiver", "busybox", "sleep", "600").returncode == 0
    copied = daemon.docker("cp", str(big), "receiver:/tmp/")
    assert copied.returncode == 0, copied.stderr
    assert daemon.docker("exec", "receiver", "sha256sum", "/tmp/big.bin").stdout.split()[0] == digest
    assert daemon.docker("export", "-o", str(tmp_path / "receiver.tar"), "receiver").returncode == 0
    imported = daemon.docker("import", str(tmp_path / "receiver.tar"), "bigimage:1")
    assert imported.returncode == 0, imported.stderr
    assert daemon.docker("save", "-o", str(tmp_path / "saved.tar"), "bigimage:1").returncode == 0
    assert daemon.docker("rmi", "bigimage:1").returncode == 0
    loaded = daemon.docker("load", "-i", str(tmp_path / "saved.tar"))
    assert loaded.returncode == 0 and "Loaded image: bigimage:1" in loaded.stdout, loaded.stderr
    ran = daemon.docker("run", "--rm", "bigimage:1", "sha256sum", "/tmp/big.bin")
    assert ran.stdout.split()[0] == digest, ran.stderr
    assert daemon.docker("rm", "-f", "receiver").returncode == 0
    assert daemon.docker("rmi", "bigimage:1").returncode == 0


def test_an_image_whose_layer_makes_a_file_a_pipe_is_saved_not_waited_on(daemon, lab, tmp_path):
    """A layer's later member replaces an earlier one of the same name (tar's rule): here a file
    by a pipe. save (and push) send a layer's tar as it came, the files' bytes read back from
    its folder (tarsplit): reading "the file" opened the pipe, and waited for ever."""
    import importlib
    archives = importlib.import_module("chapters.04_overlay.archives")
    (tmp_path / "layer.tar").write_bytes(archives.tar([("p", b"12345"), ("p", b"", {"type": tarfile.FIFOTYPE})]))
    assert lab("image", "import", str(tmp_path / "layer.tar"), "piped:1").returncode == 0
    saved = daemon.docker("save", "-o", str(tmp_path / "saved.tar"), "piped:1", timeout=30)
    assert saved.returncode == 0, saved.stderr
    with tarfile.open(tmp_path / "saved.tar") as archive:
        layer = next(m for m in archive.getmembers() if m.name.endswith("layer.tar"))
        with tarfile.open(fileobj=archive.extractfile(layer)) as inner:
            assert [(m.name, m.isfifo()) for m in inner.getmembers() if m.name.lstrip("./") == "p"] == [("p", True)]
    assert lab("rmi", "piped:1").returncode == 0


def test_docker_events_misses_no_quick_container_and_replays_them_since_a_time(daemon):
    """Whoever changes a container's record writes its event to the store's journal: a container
    that starts and ends within a millisecond has its start and die, and --since replays them."""
    started = time.time()
    assert daemon.docker("run", "--rm", "--name", "quick", "busybox", "true").returncode == 0
    assert daemon.docker("run", "--name", "failing", "busybox", "sh", "-c", "exit 4").returncode == 4
    assert daemon.docker("start", "failing").returncode == 0
    wait_until(lambda: daemon.docker("inspect", "-f", "{{.State.Status}}", "failing").stdout == "exited\n",
               what="failing ended again")
    assert daemon.docker("rename", "failing", "failed").returncode == 0
    assert daemon.docker("rm", "failed").returncode == 0
    shown = daemon.docker("events", "--since", f"{started:.6f}", "--until", f"{time.time():.6f}", "--filter",
                          "type=container", "--format", "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.replace(" <no value>", "").splitlines() == [     # (no exitCode but a die's)
        "create quick", "attach quick", "start quick", "die quick 0", "destroy quick",      # (docker run attaches)
        "create failing", "attach failing", "start failing", "die failing 4", "start failing", "die failing 4",
        "rename failed", "destroy failed"], shown.stdout


def test_docker_events_reports_images_volumes_networks_execs_and_health_as_docker_does(daemon, tmp_path):
    """Not only a container's life: its execs, its health's changes, its volumes' mounts and its
    networks' connections at each start and end, and what happens to images, volumes and
    networks, whoever made it happen (the engine or lab's own commands), each under docker's
    name for it, and filtered as docker's filters do."""
    started = time.time()
    for args in (["network", "create", "evnet"], ["volume", "create", "evvol"],
                 ["run", "-d", "--name", "evc", "--network", "evnet", "-v", "evvol:/data", "--health-cmd", "true",
                  "--health-interval", "1s", "busybox", "sleep", "600"]):
        assert daemon.docker(*args).returncode == 0
    evc = daemon.docker("inspect", "-f", "{{.Id}}", "evc").stdout.strip()
    assert daemon.docker("exec", "evc", "sh", "-c", "exit 3").returncode == 3
    wait_until(lambda: daemon.docker("inspect", "-f", "{{.State.Health.Status}}", "evc").stdout == "healthy\n",
               what="evc healthy")
    assert subprocess.run([LAB, "exec", "evc", "true"]).returncode == 0                # (lab's own exec)
    for args in (["top", "evc"], ["cp", "evc:/etc/hostname", str(tmp_path)], ["cp", str(tmp_path / "hostname"), "evc:/tmp"],
                 ["update", "--pids-limit", "100", "evc"], ["restart", "-t", "0", "evc"]):
        assert daemon.docker(*args).returncode == 0, args
    assert daemon.docker("tag", "busybox", "evimg:1").returncode == 0
    made = daemon.docker("commit", "evc", "evcommit:2").stdout.strip()
    assert daemon.docker("stop", "-t", "0", "evc").returncode == 0
    assert daemon.docker("rm", "evc").returncode == 0
    assert daemon.docker("rmi", "evimg:1", "evcommit:2").returncode == 0
    assert daemon.docker("save", "-o", str(tmp_path / "bb.tar"), "busybox").returncode == 0
    assert daemon.docker("load", "-i", str(tmp_path / "bb.tar")).returncode == 0
    assert subprocess.run([LAB, "volume", "rm", "evvol"]).returncode == 0               # (lab's own rm)
    assert daemon.docker("network", "rm", "evnet").returncode == 0
    busybox = daemon.docker("inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    network = daemon.docker("events", "--since", f"{started:.6f}", "--until", f"{time.time():.6f}",
                            "-f", "type=network", "--format", "{{.Action}}").stdout.split()
    assert network == ["create", "connect", "disconnect", "connect", "disconnect", "destroy"], network   # (restart)

    def shown(*filters: str, fields="{{.Type}} {{.Action}} {{.Actor.ID}}") -> list[str]:
        listed = daemon.docker("events", "--since", f"{started:.6f}", "--until", f"{time.time():.6f}",
                               *[f"--filter={f}" for f in filters], "--format", fields)
        assert listed.returncode == 0, listed.stderr
        return listed.stdout.splitlines()
    assert shown("type=image") == [f"image tag {busybox}", f"image tag {made}", f"image untag {busybox}",
                                   f"image untag {made}", f"image delete {made}", f"image save {busybox}",
                                   f"image load {busybox}"]
    assert shown("type=image", "event=tag", fields="{{.Actor.Attributes.name}}") == ["evimg:1", "evcommit:2"]
    assert shown("volume=evvol", fields="{{.Action}} {{.Actor.Attributes.container}}") == [
        "create <no value>", "create <no value>", f"mount {evc}", f"unmount {evc}", f"mount {evc}", f"unmount {evc}",
        "destroy <no value>"]                                                       # (restart: again)
    assert shown("volume=evvol", "event=mount", fields="{{.Actor.Attributes.destination}} {{index .Actor.Attributes "
                                                       "\"read/write\"}}") == ["/data true"] * 2
    execs = shown("container=evc", "event=exec_create", "event=exec_start", "event=exec_die",
                  fields="{{.Action}} {{.Actor.Attributes.exitCode}} {{.Actor.Attributes.execID}}")
    by_id: dict[str, list[str]] = {}
    for line in execs:
        action, _, exec_id = line.replace(" <no value>", "").rpartition(" ")
        by_id.setdefault(exec_id, []).append(action)
    probes = [actions for actions in by_id.values() if actions[0] == "exec_create: /bin/sh -c true"]
    assert [actions for actions in by_id.values() if actions not in probes] == [
        ["exec_create: sh -c exit 3", "exec_start: sh -c exit 3", "exec_die 3"],
        ["exec_create: true ", "exec_start: true ", "exec_die 0"]], execs        # (docker's words, its space too)
    assert probes and all(actions == ["exec_create: /bin/sh -c true", "exec_start: /bin/sh -c true", "exec_die 0"]
                          for actions in probes[:-1]), execs                    # each healthcheck too, as docker's
    assert shown("container=evc", "event=health_status", fields="{{.Action}}") == ["health_status: healthy"]
    assert shown("container=evc", "event=top", "event=archive-path", "event=extract-to-dir", "event=update", "event=restart",
                 fields="{{.Action}}") == ["top", "archive-path", "extract-to-dir", "update", "restart"]
    assert shown("container=evc", "event=commit", fields="{{.Actor.Attributes.imageID}} "
                                                        "{{.Actor.Attributes.imageRef}}") == [f"{made} evcommit:2"]
    assert shown("image=evcommit", fields="{{.Type}} {{.Action}}") == ["image tag"]    # (its name, with no tag)


def test_a_container_being_created_is_seen_only_once_its_config_is_written(daemon, lab_root, tmp_path):
    """A create writes the container's config.json (its name) before its folder gets its name:
    stopped in between, the create is in no listing and no event; once done, events report it
    once, by name (a look in between used to report a nameless create, then a rename)."""
    conn = daemon.connection()
    conn.request("GET", "/v1.41/events?filters=" + urllib.parse.quote(json.dumps({"type": ["container"]})))
    events = conn.getresponse()
    marker = daemon.docker("create", "--name", "marker", "busybox", "sleep", "600").stdout.strip()
    # strace stops `lab run` at its first fsync: config.json's, written but not yet in place
    trace = tmp_path / "strace.out"
    late = subprocess.Popen(["strace", "-f", "-qq", "-o", trace, "-e", "trace=fsync", "-e",
                             "inject=fsync:signal=SIGSTOP:when=1", LAB, "run", "--name", "late",
                             "--network", "none", "busybox", "true"], stderr=subprocess.PIPE, text=True)
    try:
        stopped = wait_until(lambda: trace.exists() and re.search(r"^(\d+) +--- stopped by SIGSTOP",
                                                                  trace.read_text(), re.M),
                             what="lab run stopped after its first fsync")
        tracee = int(stopped[1])
        assert list((lab_root / "containers").glob("*/.config.json.*.tmp")), "that fsync was not config.json's"
        assert daemon.docker("ps", "-a", "-q", "--no-trunc").stdout.split() == [marker]
        assert daemon.docker("start", "marker").returncode == 0
        seen = [json.loads(events.readline())]
        while (seen[-1]["id"], seen[-1]["Action"]) != (marker, "start"):   # (events looked meanwhile)
            seen.append(json.loads(events.readline()))
        os.kill(tracee, signal.SIGCONT)
        assert late.wait(timeout=60) == 0, late.stderr.read()
        seen.append(json.loads(events.readline()))
        assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in seen] == [
            ("create", "marker"), ("start", "marker"), ("create", "late")]
    finally:
        if late.poll() is None:             # (a stopped tracee stays stopped when strace dies)
            for pid in harness.children(late.pid):
                os.kill(pid, signal.SIGKILL)
            late.kill()
        late.wait()
        conn.close()
        daemon.docker("rm", "-f", "marker", "late")


def test_prunes_and_listings_keep_to_their_filters_and_rmi_of_an_id_of_several_repositories_needs_f(daemon):
    docker = daemon.docker
    for name, keep in (("kept", "yes"), ("gone", "no")):
        assert docker("volume", "create", "--label", f"keep={keep}", name).returncode == 0
        assert docker("network", "create", "--label", f"keep={keep}", f"net-{name}").returncode == 0
    try:
        pruned = docker("volume", "prune", "-f", "--filter", "label=keep=no")
        assert "gone" in pruned.stdout and "kept" not in pruned.stdout, pruned.stderr
        listed = docker("volume", "ls", "-q").stdout.split()
        assert "kept" in listed and "gone" not in listed
        pruned = docker("network", "prune", "-f", "--filter", "label=keep=no")
        assert "net-gone" in pruned.stdout and "net-kept" not in pruned.stdout, pruned.stderr
        assert "kept" in docker("volume", "ls", "-q", "-f", "driver=local").stdout.split()
        assert docker("volume", "ls", "-q", "-f", "driver=nfs").stdout == ""
        unknown = docker("volume", "ls", "-f", "bogus=1")
        assert unknown.returncode == 1 and "invalid filter 'bogus'" in unknown.stderr
        for command in (["images", "-f", "dangling=bogus"], ["images", "-f", "dangling=True"],
                        ["volume", "ls", "-f", "dangling=maybe"], ["images", "-f", "dangling=true", "-f", "dangling=0"]):
            bad = docker(*command)
            assert bad.returncode == 1 and "use dangling=true or dangling=false" in bad.stderr, command
        cache = docker("builder", "prune", "-f", "--filter", "until=1h")
        assert cache.returncode == 1 and "invalid filter 'until'" in cache.stderr
        swarm = docker("network", "create", "--scope", "swarm", "wide")
        assert swarm.returncode == 1 and "a swarm scope needs a swarm" in swarm.stderr
        assert docker("tag", "busybox", "mine:one").returncode == 0
        image = docker("inspect", "-f", "{{.Id}}", "mine:one").stdout.strip()
        refused = docker("rmi", image[7:19])
        assert refused.returncode == 1 and "image is referenced in multiple repositories" in refused.stderr
        assert docker("image", "inspect", "busybox").returncode == 0
        assert docker("rmi", "mine:one").returncode == 0 and docker("image", "inspect", "busybox").returncode == 0
    finally:
        docker("volume", "rm", "kept", "gone")
        docker("network", "rm", "net-kept", "net-gone", "wide")
        docker("rmi", "mine:one")


def test_options_lab_cannot_honour_are_refused_in_one_line_not_ignored(daemon, tmp_path):
    """An outside review found each of these answered 2xx and then ignored."""
    api, run = daemon.client().api, daemon.docker

    def create(query: dict | None = None, **body) -> str:
        try:
            made = api._result(api._post_json(api._url("/containers/create"), data={"Image": "busybox", "Cmd": ["true"], **body},
                                              params=query or {}), True)
        except docker.errors.APIError as e:
            return e.explanation
        api.remove_container(made["Id"])
        return "created"
    mounts = [({"Type": "bind", "Source": str(tmp_path), "Target": "/x", "BindOptions": options}, said)
              for options, said in (({"Propagation": "rshared"}, "bind-propagation=rshared"),
                                    ({"NonRecursive": True}, "bind-recursive=disabled"),
                                    ({"ReadOnlyNonRecursive": True}, "bind-recursive=writable"))]
    mounts += [({"Type": "volume", "Source": "v", "Target": "/v", "VolumeOptions": options}, said)
               for options, said in (({"DriverConfig": {"Name": "nfs"}}, "local volume driver only"),
                                     ({"DriverConfig": {"Options": {"type": "tmpfs"}}}, "local volume driver only"),
                                     ({"Labels": {"a": "b"}}, "volume-label"))]
    for mount, said in mounts:
        assert said in create(HostConfig={"Mounts": [mount]}), mount
    assert "--health-start-interval" in create(Healthcheck={"Test": ["CMD", "true"], "StartInterval": 10**9})
    other = create(HostConfig={"NetworkMode": "bridge"}, NetworkingConfig={"EndpointsConfig": {"none": {}}})
    assert "connected to one network when it is created, its --network (bridge), not none" in other
    assert "does not match the specified platform: wanted linux/arm64" in create({"platform": "linux/arm64"})
    assert create({"platform": "linux"}) == "created"
    assert "invalid ConsoleSize [70000, 1]" in create(Tty=True, HostConfig={"ConsoleSize": [70000, 1]})
    assert create(Tty=True, HostConfig={"ConsoleSize": [40]}) == "created"                    # ([40, 0])
    tmpfs = run("run", "--rm", "--mount", "type=tmpfs,dst=/t,readonly", "busybox", "touch", "/t/f")
    assert tmpfs.returncode == 1 and "Read-only file system" in tmpfs.stderr
    for query, said in (("since=yesterday", "since and until are times"), ("filters=" + json.dumps({"type": ["plugin"]}), "invalid filter 'type=plugin'")):
        conn = daemon.connection()
        conn.request("GET", f"/v1.41/events?{urllib.parse.quote(query, safe='=')}")
        answer = conn.getresponse()
        assert answer.status == 400 and said in answer.read().decode()
    try:
        assert run("run", "--name", "copied", "-u", "1000:1000", "busybox", "true").returncode == 0
        (tmp_path / "f").write_text("x")
        copied = run("cp", "-a", str(tmp_path / "f"), "copied:/tmp/")
        assert copied.returncode == 1 and "docker cp -a" in copied.stderr
    finally:
        run("rm", "-f", "copied")
    assert run("ps", "-aq").stdout == "" and "v" not in run("volume", "ls", "-q").stdout.split()


def test_ps_name_is_a_regular_expression_and_stop_logs_and_save_take_their_options(daemon, tmp_path):
    run, api = daemon.docker, daemon.client().api
    trap = "trap 'echo got USR1; exit 3' USR1; trap 'echo got TERM; exit 4' TERM; echo up; while :; do sleep 0.1; done"
    for name in ("a1", "xa1y"):
        assert run("run", "-d", "--name", name, "busybox", "sh", "-c", trap).returncode == 0
    try:
        assert run("ps", "-q", "-f", "name=^a1$").stdout.split() == [run("inspect", "-f", "{{.Id}}", "a1").stdout[:12]]
        assert len(run("ps", "-q", "-f", "name=a1").stdout.split()) == 2
        for bad in ("status=bogus", "exited=abc"):
            refused = run("ps", "-f", bad)
            assert refused.returncode == 1 and f"invalid filter '{bad}'" in refused.stderr, refused.stderr
        assert run("ps", "-q", "-f", "name=((").stdout == ""       # (no regular expression: only that name)
        wait_until(lambda: run("logs", "a1").stdout == "up\n", 10, "a1's trap set")
        api._raise_for_status(api._post(api._url("/containers/a1/stop"), params={"signal": "USR1", "t": 5}))
        assert run("inspect", "-f", "{{.State.ExitCode}}", "a1").stdout == "3\n"       # (TERM would say 4)
        assert run("logs", "--tail", "-1", "a1").stdout == "up\ngot USR1\n"
        two = run("save", "-o", str(tmp_path / "two.tar"), "busybox", "busybox:latest")     # one image, twice
        with tarfile.open(tmp_path / "two.tar") as tar:
            assert [e["RepoTags"] for e in json.load(tar.extractfile("manifest.json"))] == [["busybox:latest"]], two.stderr
    finally:
        run("rm", "-f", "a1", "xa1y")


def test_a_terminal_starts_at_the_console_size_the_client_sends_and_an_exec_gets_the_streams_it_asks(daemon):
    """docker run -t and exec -t send their terminal's size (ConsoleSize) before any resize: a
    program that reads it at once (stty size, a shell's line editor) gets it, not 0 0."""
    api = daemon.client().api
    made = api._result(api._post_json(api._url("/containers/create"), data={
        "Image": "busybox", "Cmd": ["sh", "-c", "stty size; sleep 60"], "Tty": True,
        "HostConfig": {"ConsoleSize": [40, 100]}}), True)
    try:
        api.start(made["Id"])
        wait_until(lambda: api.logs(made["Id"]), 10, "stty's answer")
        assert api.logs(made["Id"]) == b"40 100\r\n"
        box = daemon.client().containers.get(made["Id"])          # an exec gets only the streams it asks for
        both = "echo OUT; echo ERR >&2"
        assert box.exec_run(["sh", "-c", both], stdout=False, demux=True).output == (None, b"ERR\n")
        assert box.exec_run(["sh", "-c", both], stderr=False, demux=True).output == (b"OUT\n", None)
        exec_id = api._result(api._post_json(api._url(f"/containers/{made['Id']}/exec"), data={
            "Cmd": ["stty", "size"], "Tty": True, "AttachStdout": True, "ConsoleSize": [30, 90]}), True)["Id"]
        assert api.exec_start(exec_id, tty=True) == b"30 90\r\n"
    finally:
        api.remove_container(made["Id"], force=True)


def test_health_options_without_a_command_change_the_images_healthcheck(daemon, tmp_path):
    """As docker merges them: --health-interval 1s on an image with a HEALTHCHECK keeps its test."""
    import hashlib
    saved = tmp_path / "busybox.tar"
    assert daemon.docker("save", "-o", str(saved), "busybox").returncode == 0
    with tarfile.open(saved) as tar:
        members = {m.name: tar.extractfile(m).read() if m.isfile() else None for m in tar.getmembers()}
    manifest = json.loads(members["manifest.json"])
    config = json.loads(members.pop(manifest[0]["Config"]))
    config["config"]["Healthcheck"] = {"Test": ["CMD-SHELL", "cat /ok"], "Interval": 3600 * 10**9, "Retries": 7}
    body = json.dumps(config).encode()
    manifest[0]["Config"], manifest[0]["RepoTags"] = hashlib.sha256(body).hexdigest() + ".json", ["checked:1"]
    members.update({manifest[0]["Config"]: body, "manifest.json": json.dumps(manifest).encode()})
    with tarfile.open(saved, "w") as tar:
        for name, data in members.items():
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    assert daemon.docker("load", "-i", str(saved)).returncode == 0
    try:
        made = daemon.docker("run", "-d", "--name", "merged", "--health-interval", "1s", "--health-retries", "1",
                             "checked:1", "sleep", "60")
        assert made.returncode == 0, made.stderr
        check = json.loads(daemon.docker("inspect", "-f", "{{json .Config.Healthcheck}}", "merged").stdout)
        assert (check["Test"], check["Interval"], check["Retries"]) == (["CMD-SHELL", "cat /ok"], 10**9, 1)
        wait_until(lambda: daemon.docker("inspect", "-f", "{{.State.Health.Status}}", "merged").stdout == "unhealthy\n",
                   10, "one failed check (retries 1, every second)")
    finally:
        daemon.docker("rm", "-f", "merged")
        daemon.docker("rmi", "checked:1")
