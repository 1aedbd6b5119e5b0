"""End to end through the `lab` command: docker's exit statuses, one-line errors, nothing left behind."""
import json
import os
import re
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from chapters.harness import LAB
from lab import cli, folders, store, volumes


def leftovers(lab_root: Path) -> list[str]:
    """Containers and half-written files under LAB_ROOT (images and layers are a cache)."""
    found = [str(p) for p in (lab_root / "containers").glob("[!.]*")] if (lab_root / "containers").exists() else []
    return found + [str(p) for p in [*lab_root.rglob("*.tmp"), *lab_root.glob("containers/.creating-*")]]


@pytest.mark.parametrize("args, status, error", [
    (["run", "Bad_Name!"], 125, "invalid image name 'Bad_Name!'"),
    (["run", "--rm", "busybox", "no-such-command"], 127, 'exec "no-such-command": executable file not found'),
    (["run", "busybox", "/etc/passwd"], 126, 'exec "/etc/passwd": permission denied'),
    (["run", "--no-such-flag", "busybox", "true"], 125, "run: unknown flag --no-such-flag"),
    (["run", "-e", "=x", "busybox", "true"], 125, "invalid environment variable '=x'"),
    (["run", "-w", "relative", "busybox", "true"], 125, "working directory 'relative' is not absolute"),
    (["run", "--name", "a/b", "busybox", "true"], 125, "invalid container name 'a/b'"),
    (["run", "--name", "café", "busybox", "true"], 125, "invalid container name 'café'"),
    (["run"], 125, "run: requires at least 1 argument: IMAGE [CMD [ARG...]]"),
    (["run", "--rm", "busybox", ""], 127, 'exec "": executable file not found in $PATH'),
    (["run", "--rm", "-w", "/etc/passwd", "busybox", "true"], 126, 'working directory "/etc/passwd": not a directory'),
    (["run", "--rm", "--hostname", "bad_name!", "busybox", "true"], 125, "invalid hostname 'bad_name!'"),
    (["frobnicate"], 125, "invalid choice: 'frobnicate'"),
    (["rm", "no-such-container"], 1, "no such container: no-such-container"),
    (["run", "-m", "10x", "busybox", "true"], 125, "invalid memory limit '10x'"),
    (["run", "--log-driver", "syslog", "busybox", "true"], 125, "logger: no log driver named 'syslog' is registered"),
    (["run", "--health-cmd", "true", "busybox", "true"], 125, "a healthcheck runs in a container's supervisor"),
    (["run", "-d", "--health-cmd", "true", "--health-interval", "soon", "busybox", "true"], 125,
     "invalid --health-interval 'soon'"),
    (["run", "--log-opt", "max-file=many", "busybox", "true"], 125, "invalid max-file 'many'"),
    (["run", "--log-opt", "max-size=big", "busybox", "true"], 125, "invalid max-size 'big'"),
    (["run", "--log-opt", "compress=true", "busybox", "true"], 125, "unknown log opt 'compress'"),
    (["run", "-m", "1k", "busybox", "true"], 125, "memory limit 1k is too small: the minimum is 6m"),
    (["run", "--cpus", "-1", "busybox", "true"], 125, "--cpus -1 is out of range"),
    (["run", "--cpus", "lots", "busybox", "true"], 125, "invalid --cpus 'lots'"),
    (["run", "--pids-limit", "0", "busybox", "true"], 125, "invalid --pids-limit '0'"),
    (["run", "--add-host", "db.local", "busybox", "true"], 125, "invalid --add-host 'db.local': use HOST:IP"),
    (["run", "--cpuset-cpus", "0-4096", "busybox", "true"], 125, "--cpuset-cpus 0-4096: requested CPUs are not available"),
    (["run", "--cpuset-cpus", "1-0", "busybox", "true"], 125, "invalid --cpuset-cpus '1-0'"),
    (["run", "--link-local-ip", "10.0.0.1", "busybox", "true"], 125, "invalid --link-local-ip '10.0.0.1'"),
    (["run", "--device-cgroup-rule", "a *:* rwm", "busybox", "true"], 125, "invalid --device-cgroup-rule 'a *:* rwm'"),
    (["commit", "no-such-container", "x:v1"], 125, "no such container: no-such-container"),
    (["rmi", "no-such-image"], 1, "no such image: no-such-image:latest"),
    (["image", "import", "/no/such/file", "x:v1"], 125, "no such file or folder: /no/such/file"),
    (["image", "import", "/etc", "x:v1"], 125, "/etc is a folder but not an OCI image layout"),
    (["inspect", "-f", "{{json .}}", "busybox"], 125, "lab understands only a format like '{{.State.Pid}}'"),
    (["inspect", "-f", "{{.NoSuchField}}", "busybox"], 125, "there is no field 'NoSuchField'"),
    (["inspect", "-f", "{{index .RootFS.Layers 1}}", "busybox"], 125, ".RootFS.Layers has no item 1"),
    (["inspect", "-f", "{{.RootFS.Layers 0}}", "busybox"], 125, "lab understands only a format like"),
    (["stop", "-t", "nan", "no-such-container"], 125, "stop: -t nan is not a number of seconds"),
    (["stop", "-t", "-1", "no-such-container"], 125, "stop: -t -1 is not a number of seconds"),
    (["network", "create", "--subnet", "010.5.0.0/24", "zeros"], 125, "invalid subnet '010.5.0.0/24'"),
    (["network", "create", "--subnet", "10.5.0.0/16", "--ip-range", "abc", "ranged"], 125, "invalid --ip-range 'abc'"),
    (["run", "--priv", "busybox", "true"], 125, "run: unknown flag --priv"),        # not --privileged: no prefixes
    (["run", "--rm", "busybox", "\udcff"], 127, "executable file not found in $PATH"),   # a name that is no UTF-8
    (["run", "-p", "999.1.1.1:8080:80", "busybox", "true"], 125, "invalid IP address '999.1.1.1' in -p"),
    (["run", "-u", "99999999999", "busybox", "true"], 125, "uids and gids go from 0 to 2147483647"),
    (["run", "-u", "0:99999999999", "busybox", "true"], 125, "uids and gids go from 0 to 2147483647"),
    (["run", "--group-add", "99999999999", "busybox", "true"], 125, "uids and gids go from 0 to 2147483647"),
    (["run", "--ulimit", "nofile=99999999999999999999", "busybox", "true"], 125, "a limit is at most"),
    (["run", "--tmpfs", "/x:size=abc", "busybox", "true"], 125, "invalid --tmpfs option 'size=abc': size= takes bytes"),
    (["run", "--tmpfs", "/x:mode=abc", "busybox", "true"], 125, "invalid --tmpfs option 'mode=abc': mode= takes octal"),
    (["network", "create", "n1", "n2"], 125, "network create: one argument too many: n2"),
    (["run", "--network", "container:", "busybox", "true"], 125, "--network container: needs the container's name"),
    (["image", "import", "/dev/null", "x:v1"], 125, "/dev/null is neither a file nor a folder"),
    (["run", "busybox@sha256:abc", "true"], 125, "invalid reference 'busybox@sha256:abc'"),    # not "Unable to find"
    (["run", "--ulimit", "nofile=-1", "busybox", "true"], 125, "nofile is at most"),     # (not setrlimit's ValueError
    (["run", "--ulimit", "nofile=99999999", "busybox", "true"], 125, "nofile is at most"),   # in the child)
    (["run", "--tmpfs", "/etc/passwd", "busybox", "true"], 125, "cannot mount a tmpfs on /etc/passwd: that is a file"),
    (["run", "--tmpfs", "/x", "-v", "/tmp:/x", "busybox", "true"], 125, "two volumes are mounted on /x"),
    (["run", "-v", "/tmp:/proc/sys", "busybox", "true"], 125, "lab mounts the container's own /proc there"),
    (["run", "-v", "kept:/dev", "busybox", "true"], 125, "lab mounts the container's own /dev there"),
    (["run", "--tmpfs", "/sys", "busybox", "true"], 125, "lab mounts the container's own /sys there"),
    (["run", "--tmpfs", "//dev/shm", "busybox", "true"], 125, "lab mounts the container's own /dev there"),
    ([], 125, "lab: error: the following arguments are required: COMMAND"),       # (not "lab: error: lab: ...")
    (["cp", "x", "y"], 125, "lab: error: argument COMMAND: invalid choice: 'cp'"),
])
def test_bad_input_gets_one_error_line_and_leaves_nothing(lab, lab_root, args, status, error):
    result = lab(*args)
    assert result.returncode == status
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("lab: error: ")
    assert error in result.stderr
    assert leftovers(lab_root) == []


# Removes the volume argv[2]; just before its files are deleted, `lab run -v` mounts a volume of
# that name and lists it (prints what it found).
RUN_DURING_VOLUME_RM = """
import subprocess, sys
from lab import folders, volumes
deleting = folders.delete_folder
def meanwhile(folder):
    run = subprocess.run([sys.argv[1], "run", "--rm", "--network", "none", "-v", sys.argv[2] + ":/d", "busybox", "ls", "/d"],
                         capture_output=True, text=True)
    print(run.stdout + run.stderr, end="")
    deleting(folder)
folders.delete_folder = meanwhile
volumes.remove(sys.argv[2])
"""


def test_a_volume_being_removed_is_never_mounted_half_deleted(lab, tmp_path):
    """volume rm checks that no container uses the volume, then deletes it, which takes a while:
    a `run -v` meanwhile mounted what was left of it. The volume is renamed away first."""
    assert lab("run", "--rm", "--network", "none", "-v", "doomed:/d", "busybox", "touch", "/d/kept").returncode == 0
    run = subprocess.run([sys.executable, "-c", RUN_DURING_VOLUME_RM, LAB, "doomed"], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == "", run.stdout + run.stderr        # a new volume: empty
    assert "doomed" in lab("volume", "ls").stdout.split()
    assert lab("volume", "rm", "doomed").returncode == 0


def test_a_tmpfs_may_go_where_a_layer_deleted_a_file_and_doctor_runs_for_anyone(lab, monkeypatch, tmp_path):
    """The image's file a layer above deleted (a whiteout) is no file to refuse a tmpfs over; and
    making LAB_ROOT private is no reason to stop `lab doctor` run by a user who cannot."""
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN touch /x\nRUN rm /x\n")
    assert lab("build", "-t", "deleted:1", str(tmp_path)).returncode == 0
    run = lab("run", "--rm", "--network", "none", "--tmpfs", "/x", "deleted:1", "sh", "-c", "test -d /x && echo a folder")
    assert (run.returncode, run.stdout) == (0, "a folder\n"), run.stderr
    assert lab("rmi", "deleted:1").returncode == 0
    monkeypatch.setenv("LAB_ROOT", str(tmp_path / "not-made"))
    doctor = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", LAB, "doctor"],
                            capture_output=True, text=True, timeout=60)
    assert "Errno" not in doctor.stdout + doctor.stderr and "lab doctor" in doctor.stdout + doctor.stderr, doctor.stdout + doctor.stderr


def test_the_store_is_root_s_alone(lab, monkeypatch, tmp_path):
    """Below LAB_ROOT are a container's upper folder (a setuid program it made) and its config
    (the secrets of its -e): lab makes the store 0700, and an older one so too, not a shared /tmp."""
    for folder, mode, after in (("new", None, 0o700), ("older", 0o755, 0o700), ("shared", 0o1777, 0o1777)):
        root = tmp_path / folder
        if mode:
            root.mkdir()
            root.chmod(mode)
        monkeypatch.setenv("LAB_ROOT", str(root))
        assert lab("volume", "ls").returncode == 0
        assert oct(root.stat().st_mode & 0o7777) == oct(after), folder


def test_exec_of_a_command_with_an_empty_or_undecodable_name_says_so(lab, detached):
    detached("execname", "busybox", "sleep", "60")
    for name in ("", "\udcff"):
        result = lab("exec", "execname", name)
        assert result.returncode == 127 and len(result.stderr.splitlines()) == 1, result.stderr
        assert "executable file not found in $PATH" in result.stderr


def test_a_daemon_socket_path_that_is_a_file_or_a_folder_is_refused_and_left_alone(lab, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    for path, said in ((notes, "is a file, not a socket"), (tmp_path, "is a folder"), ("", "is empty")):
        result = lab("daemon", "--socket", str(path), timeout=10)
        assert result.returncode == 125 and said in result.stderr and len(result.stderr.splitlines()) == 1
    assert notes.read_text() == "keep me\n"


def test_the_course_tools_explain_themselves_and_stop_quietly_when_the_reader_leaves(lab):
    for tool, flag in (("progress", "--help"), ("hint", "--help"), ("watch", "-h")):
        shown = lab(tool, flag)
        assert shown.returncode == 0 and shown.stdout.startswith(f"usage: lab {tool}"), shown.stderr
    wrong = lab("progress", "--bogus")
    assert wrong.returncode == 2 and wrong.stderr.startswith("lab progress: unexpected '--bogus'")
    read_end, write_end = os.pipe()
    os.close(read_end)                    # a reader gone before a word is written (lab progress | head)
    try:
        gone = subprocess.run([LAB, "progress", "--help"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=30)
    finally:
        os.close(write_end)
    assert gone.returncode == 0 and gone.stderr == ""


def test_commit_to_an_invalid_name_creates_no_image(lab, lab_root):
    lab("run", "--name", "source", "busybox", "touch", "/new")
    images = sorted((lab_root / "images").iterdir())
    result = lab("commit", "source", "Not:A:Name")
    lab("rm", "source")
    assert result.returncode == 125 and "invalid image name 'Not:A:Name'" in result.stderr
    assert sorted((lab_root / "images").iterdir()) == images


def test_a_missing_static_busybox_names_the_package_to_install(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_ROOT", str(tmp_path / "empty-root"))
    monkeypatch.setenv("LAB_BUSYBOX", str(tmp_path / "no-busybox"))
    result = lab("run", "busybox", "true")
    assert result.returncode == 125
    assert "apt-get install busybox-static" in result.stderr and len(result.stderr.splitlines()) == 1
    assert leftovers(tmp_path / "empty-root") == []


@pytest.mark.parametrize("members, said", [
    ([("d/.wh...", b"")], "is a whiteout of no file"), ([(".wh.", b"")], "is a whiteout of no file"),
    ([("f", b"x"), (".wh.f", b"")], "deletes a file the same layer has"),
])
def test_a_whiteout_of_nothing_is_a_malformed_layer_in_one_line(tmp_path, members, said):
    """(were a bare "[Errno 17] File exists" and a ValueError)"""
    import importlib
    import io
    from lab import LabError, overlay
    archives = importlib.import_module("chapters.04_overlay.archives")
    with pytest.raises(LabError, match=said):
        overlay.unpack_layer(io.BytesIO(archives.tar(members)), tmp_path / "layer")


def test_a_bug_s_one_line_names_the_function_it_came_from():
    """A learner's typo (stats() reading cpu["nr_periodz"]) said only "lab: error: 'nr_periodz'
    (KeyError)": the last of lab's functions the error went through is named now."""
    from lab import process
    try:
        store.ago(None)                       # (a TypeError raised in lab's own code)
    except TypeError as e:
        error = e
    assert re.fullmatch(r".* \(TypeError in lab/store\.py, ago; LAB_DEBUG=1 shows the traceback\)", cli.bug(error))
    assert process.describe(error).endswith(" (in lab/store.py, ago)")       # (the child's, as it reports it)


def test_a_traceback_only_with_lab_debug(lab, monkeypatch):
    monkeypatch.setenv("LAB_DEBUG", "1")
    assert "Traceback" in lab("run", "no-such-image").stderr


@pytest.mark.parametrize("word", ["--help", "frobnicate"])
def test_lab_without_a_command_it_knows_lists_every_command(lab, word):
    """lab builds only the parser of the command it runs (cli.py): without one, it builds them all."""
    result = lab(word)
    listed = re.findall(r"^    (\w+) ", result.stdout, re.M) if word == "--help" else \
        re.findall(r"'(\w+)'", result.stderr.split("choose from", 1)[-1])
    assert listed == list(cli.COMMANDS), result.stdout + result.stderr


def test_a_commands_help_shows_its_own_options_and_a_subcommands_its_own(lab):
    assert "--rm" in lab("run", "--help").stdout
    assert "--internal" in lab("network", "create", "--help").stdout
    assert "NAME[:TAG]" in lab("image", "import", "--help").stdout


def test_a_kept_container_is_listed_until_it_is_removed(lab):
    assert lab("run", "--name", "keeper", "busybox", "sh", "-c", "exit 4").returncode == 4
    listing = lab("ps", "-a").stdout
    assert "keeper" in listing and "Exited (4)" in listing
    assert "keeper" not in lab("ps").stdout                    # not running
    assert lab("run", "--name", "keeper", "busybox", "true").returncode == 125   # names are unique
    assert lab("rm", "keeper").returncode == 0
    assert "keeper" not in lab("ps", "-a").stdout


def test_removing_a_container_follows_none_of_its_symlinks(lab, tmp_path):
    """A container's own layer holds what it made, symlinks to the host's paths too (they lead
    nowhere inside it): removing it deletes the links, never what they point to."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "kept").write_text("kept\n")
    (tmp_path / "file").write_text("kept\n")
    made = lab("run", "--rm", "busybox", "sh", "-c", f"ln -s {tmp_path}/folder /to-folder; ln -s {tmp_path}/file /to-file; "
               f"mkdir -p /deep/er; ln -s {tmp_path}/folder /deep/er/link")
    assert made.returncode == 0, made.stderr
    assert lab("run", "--name", "linker", "busybox", "ln", "-s", f"{tmp_path}/folder", "/tmp/link").returncode == 0
    assert lab("rm", "linker").returncode == 0
    assert (tmp_path / "folder" / "kept").read_text() == "kept\n" and (tmp_path / "file").read_text() == "kept\n"


def test_a_container_with_folders_thousands_deep_is_removed_and_lab_goes_on(lab, lab_root):
    """Deeper than Python's recursion limit (1000) and a process's open files (1024): shutil.rmtree
    failed there, and the hidden folder it left stopped every later lab ps (RecursionError)."""
    deep = lab("run", "--name", "deep", "busybox", "sh", "-c",
               "i=0; while [ $i -lt 1500 ]; do mkdir d; cd d; i=$((i+1)); done; touch f; ln -s / up")
    assert deep.returncode == 0, deep.stderr
    removed = lab("rm", "deep")
    assert removed.returncode == 0, removed.stderr
    assert lab("ps", "-aq").returncode == 0 and leftovers(lab_root) == []
    assert not list((lab_root / "containers").glob(".removing-*"))


def test_a_walk_never_goes_into_a_folder_a_container_has_made_a_symlink_meanwhile(tmp_path):
    """docker diff, ps -s and commit walk a running container's layer (folders.walk): a folder
    it lists, then the container replaces with a symlink to the host's /, is not walked into."""
    (tmp_path / "layer" / "a").mkdir(parents=True)
    (tmp_path / "layer" / "b" / "inside").mkdir(parents=True)
    (tmp_path / "host" / "secret").mkdir(parents=True)
    seen = []
    for folder, subfolders, others in folders.walk(tmp_path / "layer"):
        seen.append((os.path.relpath(folder, tmp_path), sorted(subfolders), others))
        if folder == str(tmp_path / "layer"):                  # b is listed: now it becomes a link
            (tmp_path / "layer" / "b" / "inside").rmdir()
            (tmp_path / "layer" / "b").rmdir()
            (tmp_path / "layer" / "b").symlink_to(tmp_path / "host")
    assert seen == [("layer", ["a", "b"], []), ("layer/a", [], [])]


def test_filling_a_volume_follows_no_symlink_another_container_puts_there_meanwhile(tmp_path, monkeypatch):
    """An empty volume gets the image's files at its path (volumes.fill_from_image, as the host's
    root) while another container that has it mounted may write in it: a symlink it puts where
    a file or a folder is about to be copied must not lead the copy to the host's files."""
    (tmp_path / "root" / "etc" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "passwd").write_text("the image's\n")
    (tmp_path / "root" / "etc" / "sub" / "file").write_text("the image's\n")
    (tmp_path / "volume").mkdir()
    (tmp_path / "host").write_text("the host's\n")
    listed = folders.walk
    volume = os.open(tmp_path / "volume", os.O_RDONLY | os.O_DIRECTORY)   # (the walk runs chrooted into root)

    def racing(top, **options):
        for folder, subfolders, others in listed(top, **options):
            if folder.endswith("etc"):       # found empty, its copy begun; the other container is quicker
                os.symlink(tmp_path / "host", "passwd", dir_fd=volume)
                os.symlink(tmp_path, "sub", dir_fd=volume)
            yield folder, subfolders, others
    monkeypatch.setattr(folders, "walk", racing)
    try:
        volumes.fill_from_image(str(tmp_path / "root"), {"Destination": "/etc", "Source": str(tmp_path / "volume")})
    finally:
        os.close(volume)
    assert (tmp_path / "host").read_text() == "the host's\n" and not (tmp_path / "file").exists()


def test_the_events_journal_is_followed_across_its_rotations_and_replays_what_it_keeps(tmp_path, monkeypatch):
    """docker events reads the store's journal as it grows (store.read_events); past its size it
    becomes events.jsonl.1 and a new one starts: a reader goes on in the new one, missing
    nothing, and --since replays the two."""
    monkeypatch.setenv("LAB_ROOT", str(tmp_path))
    monkeypatch.setattr(store, "EVENTS_KEPT", 2000)                  # bytes: about 6 events
    box = types.SimpleNamespace(id="a" * 64, name="box", config={"Image": "busybox"})
    following = store.read_events()                                  # from now on (no journal yet)
    for n in range(30):
        store.record_event(box, "start", n=str(n))
        assert next(following)["Actor"]["Attributes"]["n"] == str(n)
    assert (tmp_path / "events.jsonl.1").exists()
    kept = [e["Actor"]["Attributes"]["n"] for e in store.read_events(since=0, until=time.time())]
    assert 6 <= len(kept) < 20 and kept == [str(n) for n in range(30 - len(kept), 30)]


def test_the_help_is_as_wide_as_the_terminal_says_or_80_columns(lab):
    """COLUMNS, if it is a number above 0; else the terminal's width; else 80 (as shutil says)."""
    def widest(columns: str | None) -> int:
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": columns} if columns else {})
        shown = subprocess.run([LAB, "run", "--help"], env=env, capture_output=True, text=True, timeout=30).stdout
        return max(len(line) for line in shown.splitlines())
    assert 70 < widest(None) <= 78 and widest("0") == widest("abc") == widest(None)
    assert 110 < widest("120") <= 118


def test_inspect_says_whether_a_container_goes_when_it_ends(lab):
    """HostConfig.AutoRemove, as docker's: true for --rm (whose records lab does not flush to the disk)."""
    for name, flags in (("gone", ["--rm"]), ("kept", [])):
        assert lab("run", "-d", *flags, "--name", name, "busybox", "sleep", "60").returncode == 0
    try:
        shown = json.loads(lab("inspect", "gone", "kept").stdout)
        assert [c["HostConfig"]["AutoRemove"] for c in shown] == [True, False]
    finally:
        lab("rm", "-f", "gone", "kept")


def test_a_read_only_bind_is_read_only_below_too(lab, tmp_path):
    """-v /:/host:ro must not leave /host/tmp writable: MS_REC brings the mounts below a bind
    along with their own flags, and a remount makes only the top one read-only."""
    (tmp_path / "sub").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "below", str(tmp_path / "sub")], check=True)   # (the session's own mount namespace)
    try:
        result = lab("run", "--rm", "-v", f"{tmp_path}:/x:ro", "busybox", "sh", "-c", "touch /x/sub/f")
        assert result.returncode == 1 and "Read-only file system" in result.stderr, result.stderr
        assert lab("run", "--rm", "-v", f"{tmp_path}:/x", "busybox", "touch", "/x/sub/f").returncode == 0
    finally:
        subprocess.run(["umount", str(tmp_path / "sub")], check=True)


def test_an_image_without_etc_files_gets_lab_s_hostname_hosts_and_resolv_conf(lab, tmp_path):
    """An image from scratch has no /etc/hosts or resolv.conf: docker makes them for its own to be
    mounted on, and so does lab (or the container could not name localhost, or any host). Never
    through the image's symlinks, which lead to the host's files before pivot_root."""
    import shutil
    import tarfile
    from lab import images, store
    assert lab("run", "--rm", "busybox", "true").returncode == 0                   # (busybox is there now)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name, etc in (("bare", None), ("linked", str(outside))):
        rootfs = tmp_path / name
        shutil.copytree(store.layer_path(images.resolve("busybox")["Layers"][0]), rootfs, symlinks=True)
        shutil.rmtree(rootfs / "etc")
        if etc:
            (rootfs / "etc").symlink_to(etc)
        with tarfile.open(tmp_path / f"{name}.tar", "w") as tar:
            for entry in sorted(rootfs.iterdir()):
                tar.add(entry, arcname=entry.name)
        assert lab("image", "import", str(tmp_path / f"{name}.tar"), f"{name}:v1").returncode == 0
    shown = lab("run", "--rm", "--hostname", "h1", "bare:v1", "sh", "-c", "cat /etc/hostname; "
                "grep -q localhost /etc/hosts && echo hosts; grep -q nameserver /etc/resolv.conf && echo resolv.conf")
    assert shown.stdout == "h1\nhosts\nresolv.conf\n", shown.stderr
    alone = lab("run", "--rm", "--network", "none", "bare:v1", "grep", "-q", "localhost", "/etc/hosts")
    assert alone.returncode == 0, alone.stderr
    try:
        assert lab("run", "--rm", "linked:v1", "true").returncode == 0
        assert os.listdir(outside) == []                   # nothing made on the host through /etc
    finally:
        assert lab("rmi", "bare:v1", "linked:v1").returncode == 0


def test_ages_are_said_in_dockers_words():
    """lab ps and lab images, as docker ps: "Up Less than a second", "Exited (0) About a minute ago"."""
    from lab import store
    seconds = [0.4, 1.5, 7, 61, 150, 3600, 5400, 3 * 86400, 20 * 86400, 90 * 86400, 800 * 86400]
    assert [store.ago(s) for s in seconds] == [
        "Less than a second", "1 second", "7 seconds", "About a minute", "2 minutes", "About an hour",
        "2 hours", "3 days", "2 weeks", "3 months", "2 years"]


def test_run_dash_dash_rm_leaves_no_container(lab, lab_root):
    assert lab("run", "--rm", "busybox", "true").returncode == 0
    assert leftovers(lab_root) == []


def test_the_container_gets_stdin_stdout_stderr_and_nothing_else_lab_had_open(tmp_path):
    with open(tmp_path / "secret", "w") as secret:          # an open file lab inherits
        shown = subprocess.run([LAB, "run", "--rm", "busybox", "sh", "-c", "ls /proc/1/fd; true"],
                               pass_fds=[secret.fileno()], capture_output=True, text=True, timeout=30)
    assert shown.stdout.split() == ["0", "1", "2"], shown.stderr


def test_busybox_is_built_locally_and_listed(lab):
    lab("run", "--rm", "busybox", "true")
    header, *rows = lab("images").stdout.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "LAYERS", "SIZE"]
    assert ["busybox", "latest"] in [row.split()[:2] for row in rows]


def test_doctor_passes_on_a_machine_that_runs_the_course(lab):
    result = lab("doctor")
    assert result.returncode == 0, result.stdout
    assert "cgroups" in result.stdout and "FAIL" not in result.stdout


def test_progress_shows_each_chapter_done_in_progress_or_not_started_and_what_is_next(tmp_path):
    """lab progress's report, over three small chapters of this test's own (the real chapters
    pass on the reference in make test itself; running them all again here took 5 minutes in
    the VM)."""
    import sys
    chapters = []
    for name, results in (("00_first", (True, True)), ("01_second", (True, False)), ("02_third", (False,))):
        folder = tmp_path / "chapters" / name
        folder.mkdir(parents=True)
        tests = [f"def test_{n}():\n    assert {ok}, 'write {name} step {n}'\n" for n, ok in enumerate(results)]
        (folder / f"test_{name}.py").write_text("\n".join(tests))
        chapters.append(str(folder))
    script = f"import course, pathlib, sys; sys.exit(course.progress([pathlib.Path(c) for c in {chapters!r}]))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  00 first        [##########]  2/2   done" in lines, result.stdout
    assert "  01 second       [#####-----]  1/2   in progress" in lines
    assert "  02 third        [----------]  0/1   not started" in lines
    assert "  [########----------------] 1 of 3 chapters done" in lines
    at = lines.index(next(line for line in lines if line.startswith("Next: ")))
    assert lines[at].endswith("test_01_second.py::test_1")
    assert "write 01_second step 1" in lines[at + 1]
    assert lines[at + 2] == f"  Read {chapters[1]}/README.md, then check with: pytest {chapters[1]}"


def test_progress_counts_the_tests_of_a_chapter_not_started_without_running_them(tmp_path):
    """A chapter none of whose functions is written yet cannot pass a test (tests/test_course.py
    checks that every chapter's tests fail on the skeleton): lab progress counts its tests and
    runs them only for the first such chapter, whose first failure is what to write next. Here
    the chapters' tests leave a file when they run; chapter 00's passes."""
    import sys
    import course
    package = tmp_path / "impl" / "lab"
    course.make_skeleton.make_skeleton(package, chapters={"01", "02"})     # chapter 00 written
    chapters = []
    for name in ("00_first", "01_second", "02_third"):
        folder = tmp_path / "chapters" / name
        folder.mkdir(parents=True)
        (folder / f"test_{name}.py").write_text(
            f"import pathlib\n\ndef test_it():\n    pathlib.Path({str(tmp_path / name)!r}).touch()\n"
            f"    assert {name!r} == '00_first', 'write {name}'\n")
        chapters.append(folder)
    script = (f"import course, pathlib, sys; sys.exit(course.progress([pathlib.Path(c) for c in {[str(c) for c in chapters]!r}], "
              f"pathlib.Path({str(package)!r})))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  02 third        [----------]  0/1   not started" in lines, result.stdout
    assert (tmp_path / "00_first").exists() and (tmp_path / "01_second").exists()
    assert not (tmp_path / "02_third").exists()                           # counted, not run
    assert next(line for line in lines if line.startswith("Next: ")).endswith("test_01_second.py::test_it")
    # A function whose skeleton line is only commented out is written: its chapter has begun.
    cgroups = package / "cgroups.py"
    cgroups.write_text(cgroups.read_text().replace('raise NotImplementedError("chapter 02', '# raise NotImplementedError("chapter 02', 1))
    assert course.not_started(chapters, package) == [chapters[1]]


def test_two_test_sessions_in_one_process_each_remove_their_cgroups(tmp_path):
    """lab progress runs two pytest sessions in its process (the chapters it runs, then those it
    counts): each makes its cgroups and removes them. The harness once marked "made already" in
    the environment, which outlives a session: the second then made none for its process, and
    its workers' were left behind."""
    import sys
    from chapters import conftest as harness
    from lab import cgroups
    folder = tmp_path / "chapters" / "00_first"
    folder.mkdir(parents=True)
    (folder / "conftest.py").write_text("from chapters.conftest import *  # noqa: F401,F403\n")
    (folder / "test_first.py").write_text("def test_it():\n    pass\n")
    args = [str(folder), "-q", "-p", "no:cacheprovider"]
    script = f"import os, pytest; pytest.main({args}); pytest.main({args + ['-n', '1']}); print(os.getpid())"  # (a worker)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert result.returncode == 0 and result.stdout.count("1 passed") == 2, result.stdout + result.stderr
    pid = result.stdout.split()[-1]
    left = [p for parent in harness.session_cgroup_parents(cgroups) for p in parent.glob(f"labtests-{pid}-*")]
    assert left == []


def test_progress_names_a_file_that_does_not_import_and_where(tmp_path):
    """A syntax error in lab/ stops a chapter's test file from importing: lab progress shows that
    error, with its file and line, as what comes next (it used to skip the chapter)."""
    import sys
    folder = tmp_path / "chapters" / "00_broken"
    folder.mkdir(parents=True)
    (folder / "helper.py").write_text("def spawn(:\n    pass\n")            # (as a learner's lab/process.py)
    (folder / "test_00_broken.py").write_text("from helper import spawn\n\ndef test_it():\n    spawn()\n")
    script = f"import course, pathlib, sys; sys.exit(course.progress([pathlib.Path({str(folder)!r})]))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    lines = result.stdout.splitlines()
    assert "  00 broken       [----------]  0/1   not started" in lines, result.stdout + result.stderr
    at = lines.index(next(line for line in lines if line.startswith("Next: ")))
    assert lines[at].endswith("test_00_broken.py")
    assert lines[at + 1] == f'  SyntaxError: invalid syntax, File "{folder}/helper.py", line 1'


def test_progress_stops_at_a_file_of_lab_that_does_not_compile_and_says_where(tmp_path):
    """lab imports every module of lab/: a syntax error in any of them fails every test, most of
    them without saying why. lab progress runs none and names the file and the line."""
    import sys
    import course
    package = tmp_path / "impl" / "lab"
    course.make_skeleton.make_skeleton(package)
    namespaces = package / "namespaces.py"
    namespaces.write_text(namespaces.read_text().replace("def set_hostname(", "def set_hostname(:", 1))
    line = 1 + namespaces.read_text().split("def set_hostname(:")[0].count("\n")
    folder = tmp_path / "chapters" / "00_first"
    folder.mkdir(parents=True)
    (folder / "test_00_first.py").write_text(f"import pathlib\n\ndef test_it():\n    pathlib.Path({str(tmp_path / 'ran')!r}).touch()\n")
    script = f"import course, pathlib, sys; sys.exit(course.progress([pathlib.Path({str(folder)!r})], pathlib.Path({str(package)!r})))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"lab progress: {namespaces} does not compile, and every lab command imports it:",
        f'  SyntaxError: invalid syntax, File "{namespaces}", line {line}', "Fix it, then run lab progress again."]
    assert not (tmp_path / "ran").exists()


def test_an_exit_status_that_is_a_wait_status_is_refused_not_cut_to_its_last_8_bits(lab, monkeypatch, tmp_path):
    """A learner's exit_status() that returns waitpid's status as it is (768 for `exit 3`):
    sys.exit(768) would exit 0, and lab run of a failing command would seem to succeed."""
    import shutil
    package = tmp_path / "impl" / "lab"
    shutil.copytree(Path(__file__).parent.parent / "solutions" / "lab", package, ignore=shutil.ignore_patterns("__pycache__"))
    process = package / "process.py"
    process.write_text(process.read_text().replace("    if os.WIFSIGNALED(wait_status):", "    return wait_status\n    if os.WIFSIGNALED(wait_status):", 1))
    monkeypatch.setenv("LAB_IMPL", str(package.parent))
    result = lab("run", "--rm", "--network", "none", "busybox", "sh", "-c", "exit 3")
    assert result.returncode == 125
    assert result.stderr == ("lab: error: the exit status came out as 768, and one goes from 0 to 255: exit_status() in "
                             "lab/process.py makes it (see chapters/00_process/README.md, 'Your turn')\n")


def test_a_lab_the_harness_cannot_import_stops_the_tests_with_one_line(tmp_path):
    import shutil
    import sys
    root = Path(__file__).parent.parent
    shutil.copytree(root / "lab", tmp_path / "impl" / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "impl" / "lab" / "cgroups.py", "a") as f:
        f.write("\ndef broken(:\n")
    lines = len((tmp_path / "impl" / "lab" / "cgroups.py").read_text().splitlines())
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", str(root / "chapters" / "00_process")],
                         cwd=tmp_path, env={**os.environ, "LAB_IMPL": str(tmp_path / "impl")},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip() == (f"Exit: lab: {tmp_path / 'impl' / 'lab'} does not import: SyntaxError: invalid syntax "
                                  f"(cgroups.py, line {lines}). Fix that first: no test can run without it.")


def test_a_test_run_leaves_alone_a_container_it_did_not_start(lab, detached, tmp_path):
    """Two test runs at once (`lab watch` in one terminal, pytest in another), or a `lab run -d`
    of yours while one runs: each run's leftover check counts only its own containers' cgroups.
    A run without workers once used its caller's, and removed a container started meanwhile
    as its own leftover."""
    import sys
    from chapters.harness import ROOT, wait_until
    started, go = tmp_path / "started", tmp_path / "go"
    folder = tmp_path / "chapters" / "00_other"
    folder.mkdir(parents=True)
    (folder / "conftest.py").write_text("from chapters.conftest import *  # noqa: F401,F403\n")
    (folder / "test_other.py").write_text(
        "from pathlib import Path\nfrom chapters.harness import wait_until\n\n"
        "def test_the_other_run_starts_a_container_meanwhile():\n"
        f"    Path({str(started)!r}).touch()\n"
        f"    wait_until(Path({str(go)!r}).exists, 60, 'the first run started its container')\n")
    other = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: started.exists() or other.poll() is not None, 60, "the other test run reached its test")
        assert started.exists(), other.communicate()[0]
        detached("meanwhile", "busybox", "sleep", "60")
        go.touch()
        out, _ = other.communicate(timeout=120)
    finally:
        other.kill()
    assert other.returncode == 0, out
    assert lab("inspect", "-f", "{{.State.Running}}", "meanwhile").stdout.strip() == "true"


def test_doctor_fails_and_says_how_to_fix_what_blocks_the_course(lab, monkeypatch):
    monkeypatch.setenv("LAB_BUSYBOX", "/nonexistent/busybox")
    result = lab("doctor")
    assert result.returncode == 1
    assert "FAIL  static busybox at /nonexistent/busybox\n        -> apt-get install busybox-static" in result.stdout


def test_without_root_the_tests_stop_at_once_with_one_line(monkeypatch):
    from chapters import conftest
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.exit.Exception) as stopped:
        conftest.pytest_sessionstart(None)
    assert "need Linux and root" in str(stopped.value) and "course VM" in str(stopped.value)
    assert "\n" not in str(stopped.value)


def test_rm_f_cleans_up_after_a_lab_run_that_was_killed(lab):
    import signal
    from chapters.harness import wait_running
    run = subprocess.Popen([LAB, "run", "--name", "orphan", "-m", "64m", "busybox", "sleep", "60"])
    paths = wait_running("orphan", run)["Cgroup"]["Paths"]
    run.send_signal(signal.SIGKILL)             # lab dies; its container lives on
    run.wait()
    assert "Up " in lab("ps").stdout
    assert lab("rm", "-f", "orphan").returncode == 0
    assert "orphan" not in lab("ps", "-a").stdout
    assert paths and not any(Path(p).exists() for p in paths.values())


def test_pid_and_uts_host_give_the_container_the_hosts_processes_and_hostname(lab):
    me = os.getpid()
    result = lab("run", "--rm", "--name", "hostly", "--pid", "host", "--uts", "host", "busybox", "sh", "-c",
                 f"echo $$; hostname; cat /proc/{me}/comm")
    assert result.returncode == 0, result.stderr
    pid, hostname, comm = result.stdout.splitlines()
    assert int(pid) != 1 and hostname == socket.gethostname()      # not PID 1: the host's numbers
    assert comm == Path(f"/proc/{me}/comm").read_text().strip()      # it sees this test's process
    refused = lab("run", "--rm", "--uts", "host", "--hostname", "box", "busybox", "true")
    assert refused.returncode == 125 and "conflicting options" in refused.stderr



def test_inspect_format_picks_a_field_or_an_item_of_a_list(lab):
    layers = json.loads(lab("image", "inspect", "busybox").stdout)[0]["RootFS"]["Layers"]
    assert lab("inspect", "-f", "{{.RootFS.Layers}}", "busybox").stdout == json.dumps(layers) + "\n"
    assert lab("inspect", "-f", "{{ index .RootFS.Layers 0 }}", "busybox").stdout == layers[0] + "\n"
