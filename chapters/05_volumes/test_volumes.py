"""Chapter 05: volumes, data that lives apart from the container.   Check your work: pytest chapters/05_volumes"""
import json
import os
import subprocess

import pytest

from chapters.harness import LAB, in_child
from lab import LabError, syscalls, volumes


def test_a_named_volume_outlives_its_container(lab):
    assert lab("run", "--name", "writer", "-v", "notes:/notes", "busybox", "sh", "-c", "echo kept > /notes/a").returncode == 0
    assert lab("rm", "writer").returncode == 0
    result = lab("run", "--rm", "-v", "notes:/deep/er/notes/", "busybox", "cat", "/deep/er/notes/a")  # (its folders made)
    assert result.stdout == "kept\n", result.stderr
    assert "notes" in lab("volume", "ls").stdout.split()          # nobody uses it: still there
    assert lab("volume", "rm", "notes").returncode == 0


def test_an_empty_volume_starts_with_the_images_files_at_its_path_unless_nocopy(lab):
    """As docker's: a new, empty volume gets what the image has where it is mounted, with their
    owners and modes (a FIFO or a device is no data: not copied); one with files keeps its own;
    one mounted with nocopy (-v NAME:/path:nocopy, or ro,nocopy) stays empty."""
    made = lab("run", "--name", "app05", "busybox", "sh", "-c", "mkdir -p /srv/app/sub && echo conf > /srv/app/app.conf "
               "&& ln -s app.conf /srv/app/link && mkfifo /srv/app/pipe && chown -R 1000:1000 /srv/app && chmod 750 /srv/app")
    assert made.returncode == 0, made.stderr
    assert lab("commit", "app05", "app05:v1").returncode == 0 and lab("rm", "app05").returncode == 0
    listing = "cd /srv/app && for f in *; do stat -c '%n %u %F' $f; done; stat -c '%a %u' .; cat link"
    in_image = lab("run", "--rm", "app05:v1", "sh", "-c", listing).stdout
    assert "pipe 1000 fifo" in in_image, in_image
    in_volume = lab("run", "--rm", "-v", "appdata05:/srv/app", "app05:v1", "sh", "-c", listing)
    assert in_volume.stdout == in_image.replace("pipe 1000 fifo\n", ""), in_volume.stderr
    assert lab("run", "--rm", "-v", "appdata05:/srv/app", "app05:v1", "sh", "-c",
               "rm /srv/app/app.conf; echo mine > /srv/app/mine").returncode == 0
    kept = lab("run", "--rm", "-v", "appdata05:/srv/app", "app05:v1", "ls", "/srv/app")
    assert kept.stdout == "link\nmine\nsub\n", kept.stderr      # not filled again: it has files
    for mode in ("nocopy", "ro,nocopy"):
        bare = lab("run", "--rm", "-v", f"bare05:/srv/app:{mode}", "app05:v1", "sh", "-c", "ls -A /srv/app; touch /srv/app/w")
        assert bare.stdout == "" and (bare.returncode == 1) == mode.startswith("ro"), (mode, bare.stderr)
        assert lab("volume", "rm", "bare05").returncode == 0
    assert lab("volume", "rm", "appdata05").returncode == 0 and lab("rmi", "app05:v1").returncode == 0


def test_two_running_containers_share_a_volume_at_once(lab):
    runs = [subprocess.Popen([LAB, "run", "--name", name, "-v", "shared:/shared", "busybox", "sh", "-c",
                              f"echo {name} > /shared/.{name}; mv /shared/.{name} /shared/{name}; "   # whole or absent: never half-written
                              f"while [ ! -e /shared/{other} ]; do sleep 0.05; done; cat /shared/{other}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, other in (("left", "right"), ("right", "left"))]
    try:
        ended = [run.communicate(timeout=30) for run in runs]
    finally:
        for run in runs:
            run.kill()
        lab("rm", "-f", "left", "right")
    assert [out for out, _ in ended] == ["right\n", "left\n"], \
        f"each should see the other's write while both run; lab said: {[err.strip() for _, err in ended]}"


def test_a_read_only_volume_cannot_be_written(lab, tmp_path):
    lab("run", "--rm", "-v", "ro-data:/data", "busybox", "sh", "-c", "echo original > /data/f")
    result = lab("run", "--rm", "-v", "ro-data:/data:ro", "busybox", "sh", "-c", "cat /data/f; echo new > /data/f")
    assert result.stdout == "original\n"
    assert result.returncode == 1 and "Read-only file system" in result.stderr, (
        "the container could write into a :ro volume: a bind mount is made read-only by a second, remount call")
    mounts = json.loads(lab("volume", "inspect", "ro-data").stdout)
    assert open(os.path.join(mounts[0]["Mountpoint"], "f")).read() == "original\n"
    # mount_volume alone (lab run also makes a :ro volume's submounts read-only, after it: that
    # must not hide a mount_volume that forgot its remount)
    (tmp_path / "root").mkdir()
    (tmp_path / "source").mkdir()

    def bound() -> int:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)     # (nothing reaches the host)
        syscalls.mount("tmpfs", str(tmp_path / "source"), "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
        volumes.mount_volume(str(tmp_path / "root"), {"Type": "bind", "Name": None, "Source": str(tmp_path / "source"),
                                                      "Destination": "/ro", "RW": False})
        flags = os.statvfs(tmp_path / "root" / "ro").f_flag
        kept = os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC
        return 1 if not flags & os.ST_RDONLY else 2 if flags & kept != kept else 0
    status = in_child(bound)
    assert status != 1, "mount_volume's bind is writable: a bind takes its flags from a second, remount call"
    assert status != 2, ("mount_volume's read-only bind of a nosuid,nodev,noexec tmpfs lost those: a remount sets all "
                         "its flags at once (remount_read_only keeps them)")
    assert status == 0


def test_a_bind_mounted_host_folder_sees_the_containers_writes(lab, tmp_path):
    (tmp_path / "in").write_text("from the host\n")
    result = lab("run", "--rm", "-v", f"{tmp_path}:/project", "busybox", "sh", "-c", "cat /project/in; echo from the container > /project/out")
    assert result.stdout == "from the host\n"
    assert (tmp_path / "out").read_text() == "from the container\n"
    single = lab("run", "--rm", "-v", f"{tmp_path / 'in'}:/new/in", "busybox", "cat", "/new/in")   # a file, where
    assert (single.stdout, single.stderr) == ("from the host\n", ""), single.stderr   # the image has none: a file
    over = lab("run", "--name", "over05", "-v", f"{tmp_path / 'in'}:/etc/passwd", "busybox", "true")  # over one it has:
    assert over.returncode == 0, over.stderr
    committed = lab("commit", "over05", "over05:v1")
    assert committed.returncode == 0, committed.stderr
    lab("rm", "over05")
    kept = lab("run", "--rm", "over05:v1", "grep", "-c", "^root:", "/etc/passwd").stdout
    lab("rmi", "over05:v1")
    assert kept == "1\n", "the image's /etc/passwd changed under the file mounted over it (mount_point made it anew?)"
    (tmp_path / "sub").mkdir()                       # a mount inside the folder comes with it (a recursive bind)
    subprocess.run(["mount", "-t", "tmpfs", "lab-sub05", str(tmp_path / "sub")], check=True)
    try:
        (tmp_path / "sub" / "file").write_text("on the submount\n")
        inner = lab("run", "--rm", "-v", f"{tmp_path}:/project", "busybox", "cat", "/project/sub/file")
        assert inner.stdout == "on the submount\n", f"a mount inside the bound folder is missing: {inner.stderr}"
    finally:
        subprocess.run(["umount", "-l", str(tmp_path / "sub")])


def test_a_committed_image_holds_nothing_of_the_volume(lab):
    lab("run", "--name", "filler", "-v", "big:/data", "busybox", "sh", "-c",
        "head -c 100000 /dev/zero > /data/blob; echo in the layer > /layer-file")
    assert lab("commit", "filler", "filled:v1").returncode == 0
    lab("rm", "filler")
    result = lab("run", "--rm", "filled:v1", "sh", "-c", "cat /layer-file; ls -A /data")
    assert (result.returncode, result.stdout) == (0, "in the layer\n"), result.stderr   # /data: its mount point, empty
    lab("rmi", "filled:v1")


def test_a_volume_through_a_symlink_of_the_image_makes_nothing_on_the_host(lab, tmp_path):
    # An image whose /data is a symlink to a host path. Inside the container it leads nowhere;
    # before pivot_root, where mount points are made, it leads to the host's folder.
    outside, source = tmp_path / "outside", tmp_path / "source"
    outside.mkdir()
    source.mkdir()
    lab("run", "--name", "linker", "busybox", "ln", "-s", str(outside), "/data")
    assert lab("commit", "linker", "linked:v1").returncode == 0
    lab("rm", "linker")
    try:
        result = lab("run", "--rm", "-v", f"{source}:/data/made", "linked:v1", "true")
    finally:
        lab("rmi", "linked:v1")
    assert not (outside / "made").exists(), (
        "the mount point was made on the host, through the image's symlink: check every step of the path first")
    assert result.returncode == 125 and result.stderr.startswith("lab: error:"), result.stderr
    assert lab("ps", "-aq").stdout == ""


def test_mount_point_refuses_a_symlink_of_the_image_on_the_way_and_makes_nothing(tmp_path):
    """mount_point alone, on a root that is a folder of the host (as before pivot_root): the
    image's symlinks, on the way or last, would lead out of it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "data").symlink_to(outside)                  # an image's /data -> a folder of the host's
    (root / "up").symlink_to("../outside")               # and a relative one, which climbs out of root too
    for destination in ("/data/made", "/data", "/up/made"):
        try:
            volumes.mount_point(str(root), {"Type": "bind", "Name": None, "Source": str(tmp_path), "Destination": destination,
                                            "RW": True})
        except LabError:
            continue
        pytest.fail(f"mount_point went through the image's symlink on the way to {destination}: "
                    "refuse (LabError) any step of the path that is a symlink, absolute or relative")
    assert list(outside.iterdir()) == [], "mount_point made the mount point on the host, through the image's symlink"

    def through_mount_volume():                          # and mount_volume makes its mount point so
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        try:
            volumes.mount_volume(str(root), {"Type": "bind", "Name": None, "Source": str(tmp_path),
                                             "Destination": "/up/made", "RW": True})
        except LabError:
            return 0
        return 1
    assert in_child(through_mount_volume) == 0, "mount_volume bound over the image's symlink: it makes its mount point with mount_point()"
    assert list(outside.iterdir()) == [], "mount_volume made the mount point on the host, through the image's symlink"
    made = volumes.mount_point(str(root), {"Type": "bind", "Name": None, "Source": str(tmp_path), "Destination": "/new/deep",
                                           "RW": True})
    assert (made, (root / "new" / "deep").is_dir()) == (str(root / "new" / "deep"), True)


@pytest.mark.parametrize("spec, expected", [
    ("data:/data:rw", {"Type": "volume", "Name": "data", "Destination": "/data", "RW": True, "CopyData": True}),
    ("data:/data:rw,nocopy", {"Type": "volume", "Destination": "/data", "RW": True, "CopyData": False}),
    ("cache:/root/.cache", {"Type": "volume", "Destination": "/root/.cache", "RW": True}),
    ("dots:/a..b/c.", {"Destination": "/a..b/c."}),
    ("tidy://a//b/", {"Destination": "/a/b"}),
    ("HOST:/host:rw", {"Type": "bind", "Name": None, "Source": "HOST", "Destination": "/host", "RW": True}),
])
def test_what_docker_takes_is_taken_as_docker_reads_it(spec, expected, tmp_path):
    """-v as docker takes it: ":rw" (docker compose writes its binds so), a folder name with a
    dot, a path with doubled slashes (the same path: -v x:/data and -v y://data mount on one)."""
    mount = volumes.parse(spec.replace("HOST", str(tmp_path)))
    expected = {key: value.replace("HOST", str(tmp_path)) if isinstance(value, str) else value
                for key, value in expected.items()}
    assert {key: mount.get(key) for key in expected} == expected, f"-v {spec}"


def test_inspect_shows_the_mounts(lab, tmp_path):
    lab("run", "--name", "mounted", "-v", f"{tmp_path}/./:/host/:ro", "-v", "named:/named", "busybox", "true")
    mounts = json.loads(lab("inspect", "mounted").stdout)[0]["Mounts"]
    lab("rm", "mounted")
    assert [(m["Type"], m["Source"], m["Destination"], m["RW"]) for m in mounts] == [
        ("bind", str(tmp_path), "/host", False),
        ("volume", json.loads(lab("volume", "inspect", "named").stdout)[0]["Mountpoint"], "/named", True)]


def test_a_volume_in_use_cannot_be_removed(lab):
    lab("run", "--name", "user", "-v", "busy:/busy", "busybox", "true")
    refused = lab("volume", "rm", "busy")
    assert refused.returncode == 1 and "in use by the container user" in refused.stderr
    lab("rm", "user")
    assert lab("volume", "rm", "busy").returncode == 0
    assert "busy" not in lab("volume", "ls").stdout.split()


def stored_volumes(lab_root) -> list[str]:
    """What the store holds under volumes/ (a half-made volume too, which `lab volume ls` might not list)."""
    folder = lab_root / "volumes"
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.mark.parametrize("spec, error", [
    ("relative/path:/data", "is neither an absolute host path nor a volume name"),
    ("./data:/data", "is neither an absolute host path nor a volume name"),
    ("a:/data", "is neither an absolute host path nor a volume name"),
    ("data:/a/./b", "write the path in the container without '.' or '..', e.g. /a/b"),
    ("/no/such/folder:/data", "the host path /no/such/folder does not exist"),
    ("data:relative", "the path in the container, 'relative', must be absolute"),
    ("/etc:/", "a volume cannot be mounted over the container's /"),
    ("data:/a/../b", "write the path in the container without '.' or '..', e.g. /b"),
    ("a/b:/data", "is neither an absolute host path nor a volume name"),
    ("/etc/passwd:/etc", "cannot mount the file /etc/passwd on /etc: that is a folder in the image"),
    ("/etc:/etc/passwd", "cannot mount the folder /etc on /etc/passwd: that is a file in the image"),
    ("data:/data:rx", "invalid volume 'data:/data:rx'"),
    ("data:/data:ro,rw", "invalid volume 'data:/data:ro,rw'"),
    ("data:/data:ro:x", "invalid volume 'data:/data:ro:x'"),
    ("data:/data:ro,ro", "invalid volume 'data:/data:ro,ro'"),
    ("data:/data:", "invalid volume 'data:/data:'"),
    ("data2:/etc/passwd", "cannot mount the volume data2 on /etc/passwd: that is a file in the image"),
    ("/tmp:/data:nocopy", "nocopy is for a volume"),
])
def test_a_bad_volume_is_refused_and_creates_nothing(lab, lab_root, spec, error):
    before = stored_volumes(lab_root)
    result = lab("run", "--rm", "-v", "first05:/first", "-v", spec, "busybox", "true")    # (nor the good one before it)
    assert result.returncode == 125 and result.stderr.count("\n") == 1 and error in result.stderr, \
        f"-v {spec} should be refused with one line saying: ...{error}...; lab said: {result.stderr!r} (status {result.returncode})"
    made = sorted(set(stored_volumes(lab_root)) - set(before))
    assert not made, f"the refused run made the volumes {made}: check every -v before anything is made"
    assert lab("ps", "-aq").stdout == ""
    good = lab("run", "--rm", "-v", "good:/data", "busybox", "true")     # and -v works
    assert good.returncode == 0, good.stderr
