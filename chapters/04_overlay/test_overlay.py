"""Chapter 04: overlay, image layers and commit.   Check your work: pytest chapters/04_overlay"""
import functools
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from lab import images, overlay, store

sys.path.insert(0, str(Path(__file__).parent))
import archives  # noqa: E402


def busybox_layer() -> Path:
    return store.layer_path(images.resolve("busybox")["Layers"][0])


@functools.cache
def layer_tar(layer: Path) -> bytes:
    """The layer's files as a tar, made once (a stored layer never changes): the base of the
    archives below, about 0.1 s each time it is made."""
    return archives.folder_tar(layer)


def container_folders(lab, name: str) -> dict:
    return json.loads(lab("inspect", name).stdout)[0]["GraphDriver"]["Data"]


def stored_layers() -> set[str]:
    return {p.name for p in store.layers_dir().iterdir()}


def stored_images() -> tuple:
    return {p.name for p in store.images_dir().iterdir()}, store.tags()


def test_a_write_copies_the_file_up_and_leaves_the_image_unchanged(lab):
    before = (busybox_layer() / "etc" / "passwd").read_text()
    result = lab("run", "--name", "writer", "busybox", "sh", "-c", "echo changed >> /etc/passwd; tail -1 /etc/passwd")
    try:
        upper = Path(container_folders(lab, "writer")["UpperDir"])
        assert result.stdout == "changed\n"
        assert (upper / "etc" / "passwd").read_text() == before + "changed\n"     # the copy, changed
        assert (busybox_layer() / "etc" / "passwd").read_text() == before         # the image's file
    finally:
        lab("rm", "writer")


def test_the_upper_folder_holds_the_copy_and_a_whiteout_for_a_delete(lab):
    result = lab("run", "--name", "deleter", "busybox", "sh", "-c",
                 "echo changed >> /etc/passwd; rm /etc/group; cat /etc/group")
    try:
        upper = Path(container_folders(lab, "deleter")["UpperDir"])
        assert result.stderr == "cat: can't open '/etc/group': No such file or directory\n"
        assert (upper / "etc" / "passwd").read_text().endswith("changed\n")
        whiteout = os.lstat(upper / "etc" / "group")
        assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
        assert (busybox_layer() / "etc" / "group").is_file()           # the image still has it
        assert lab("run", "--rm", "busybox", "cat", "/etc/group").stdout.startswith("root:x:0:")
    finally:
        lab("rm", "deleter")


def test_a_containers_changes_are_gone_with_it(lab):
    lab("run", "--name", "scratch", "busybox", "sh", "-c", "echo notes > /root/notes")
    folders = container_folders(lab, "scratch")
    assert Path(folders["UpperDir"], "root", "notes").read_text() == "notes\n"
    assert lab("rm", "scratch").returncode == 0
    assert not Path(folders["UpperDir"]).exists()
    result = lab("run", "--rm", "busybox", "cat", "/root/notes")
    assert result.returncode == 1 and "No such file" in result.stderr


def test_a_committed_image_has_the_changes_as_a_layer_of_its_own(lab, tmp_path):
    changes = ("echo added > /root/added; rm /etc/group /bin/hostname; "
               "rm -r /usr/sbin; mkdir /usr/sbin; echo mine > /usr/sbin/only")   # an opaque folder
    lab("run", "--name", "builder", "busybox", "sh", "-c", changes)
    committed = lab("commit", "builder", "mine:v1")
    lab("rm", "builder")
    assert committed.returncode == 0, committed.stderr
    image = json.loads(lab("inspect", "mine:v1").stdout)[0]
    base = images.resolve("busybox")
    assert image["Id"] == committed.stdout.strip()
    assert image["RootFS"]["Layers"][:-1] == base["Layers"] and len(image["RootFS"]["Layers"]) == 2
    seen = lab("run", "--rm", "mine:v1", "sh", "-c",
               "cat /root/added; ls /usr/sbin; ls /etc/group; ls /bin/hostname; ls /usr/bin | grep -c .")
    usr_bin = len(os.listdir(busybox_layer() / "usr" / "bin"))
    assert seen.stdout.endswith(f"\n{usr_bin}\n"), ("/usr/bin lost files in the committed image, where only /usr/sbin "
                                                     "was made again: to_oci_whiteout puts .wh..wh..opq in that folder")
    assert seen.stdout == f"added\nonly\n{usr_bin}\n" and seen.stderr.count("No such file") == 2, \
        HIDDEN + f"\n{seen.stderr}"
    assert lab("run", "--rm", "busybox", "ls", "/etc/group", "/bin/hostname", "/usr/sbin/chroot").returncode == 0
    device = tmp_path / "null"     # one a container made (docker's default lets it mknod) is a file of its layer
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert overlay.to_oci_whiteout(str(device), os.lstat(device)) is None, "only a character device 0/0 is a whiteout"


def test_layers_are_stored_once_and_shared_and_rmi_keeps_what_others_use(lab):
    busybox_layer()                                         # (made first: a new store has no layers/)
    before = stored_layers()
    for name in ("one", "two"):
        lab("run", "--name", name, "busybox", "touch", f"/{name}")
        assert lab("commit", name, f"{name}:latest").returncode == 0
    assert len(stored_layers() - before) == 2               # one for each commit; busybox's is shared
    lab("run", "--name", "user", "one", "touch", "/user")
    refused = lab("rmi", "one")
    assert refused.returncode == 1 and "used by the container user" in refused.stderr
    first_two = images.resolve("two")["Id"]
    assert lab("commit", "user", "two:latest").returncode == 0      # two: built on one; the first two: <none>
    lab("rm", "one", "two", "user")
    top = json.loads(lab("inspect", "one").stdout)[0]["RootFS"]["Layers"][1]
    assert lab("rmi", "one").returncode == 0
    in_use = {digest for image in images.list_images() for digest in image["Layers"]}
    assert in_use <= {f"sha256:{name}" for name in stored_layers()}, (
        "rmi one deleted a layer that images still use (two is built on one; its first image, <none> now, "
        "on busybox): unused_layers must count every layer of every image, untagged ones too")
    unpacking = store.layers_dir() / f".{'0' * 64}.unpacking"     # an import's unpack, not done yet: no layer
    unpacking.mkdir()
    try:
        removed = lab("rmi", "two", first_two)
        assert removed.returncode == 0, removed.stderr
        assert f"Deleted: {top}" in removed.stdout.splitlines()
        assert unpacking.is_dir(), "rmi deleted a folder of the store whose name starts with '.': an unpack in progress"
    finally:
        if unpacking.exists():
            unpacking.rmdir()
    assert stored_layers() == before                        # busybox still uses its layer


LAYER = archives.tar([("hello.txt", b"hello from a layer\n"), ("etc", None), ("etc/.wh.group", b""),
                      ("usr", None), ("usr/sbin", None), ("usr/sbin/.wh..wh..opq", b""),
                      ("usr/sbin/mine", b"")])     # adds a file, deletes /etc/group, replaces /usr/sbin


def archive(kind: str, folder: Path) -> Path:
    """An image of `kind` made in folder: busybox's files, then (but for a rootfs) LAYER on top."""
    import shutil
    folder.mkdir()
    if kind == "rootfs tarball":
        rootfs = folder / "rootfs"
        shutil.copytree(busybox_layer(), rootfs, symlinks=True)
        (rootfs / "hello.txt").write_text("hello from a layer\n")
        path = folder / "rootfs.tar.gz"
        path.write_bytes(archives.gz(archives.folder_tar(rootfs)))
        return path
    base = layer_tar(busybox_layer())
    if kind == "docker save":
        path = folder / "saved.tar"
        path.write_bytes(archives.docker_save([base, LAYER], ["sh"]))
        return path
    layout = archives.oci_layout(folder / "oci", [base, LAYER], ["sh"])
    if kind == "OCI layout":
        return layout
    path = folder / "oci.tar"
    path.write_bytes(archives.oci_tar(layout))
    return path


HIDDEN = ("the top layer's changes do not hide the layers under it: what it deleted or replaced is still "
          "seen. Is lowerdir top layer first? Are its whiteouts (.wh. files, opaque folders) converted?")


@pytest.mark.parametrize("kind", ["rootfs tarball", "docker save", "OCI layout", "OCI layout tar"])
def test_an_image_imports_from_each_format(kind, lab, tmp_path):
    source = archive(kind, tmp_path / "first")
    imported = lab("image", "import", str(source), "imported:v1")
    assert imported.returncode == 0, imported.stderr
    image = json.loads(lab("inspect", "imported:v1").stdout)[0]
    shown = lab("run", "--rm", "imported:v1", "sh", "-c", "cat /hello.txt; ls /usr/sbin | grep -c .; ls /etc/group")
    if kind == "rootfs tarball":
        assert len(image["RootFS"]["Layers"]) == 1
        assert shown.stdout == f"hello from a layer\n{len(os.listdir(busybox_layer() / 'usr' / 'sbin'))}\n/etc/group\n"
    else:
        assert image["RootFS"]["Layers"][1] == archives.sha256(LAYER)
        kept = [p.name for p in store.layer_path(image["RootFS"]["Layers"][1]).rglob(".wh.*")]
        assert not kept, f"the unpacked layer keeps {kept}: to_overlay_whiteout makes overlay's mark in their place"
        assert shown.stdout == "hello from a layer\n1\n" and "No such file" in shown.stderr, HIDDEN
    stored = stored_layers()
    assert lab("image", "import", str(source), "again:v1").returncode == 0
    assert stored_layers() == stored                       # the same layers: stored once


def bad_archive(case: str, tmp_path: Path) -> Path:
    outside = tmp_path / "outside"                          # where an escape would write
    base = layer_tar(busybox_layer())
    layers = {   # (first, a member that a check of only the name's first step, or only of the folder right
                 # above the member, lets through: it would write outside, through mkdir(parents=True) too)
        "a ../ path": [("bin/../" + archives.climbing_to(outside), b"escaped"), (archives.climbing_to(outside), b"escaped")],
        "an absolute path": [(str(outside), b"escaped")],
        "a write through a symlink": [("a", None), ("a/lib", ("symlink", str(tmp_path))),
                                      ("a/lib/outside/deeper", b"escaped"),       # (no a/lib/outside member)
                                      ("lib", ("symlink", str(tmp_path))), ("lib/outside", b"escaped")],
        "a symlink out of the layer": [("up", ("symlink", "../../../../../../../..")), ]
    }
    if case in layers:
        path = tmp_path / "bad.tar"
        path.write_bytes(archives.docker_save([base, archives.tar(layers[case])], ["sh"]))
    elif case == "a hard link out of the layer":
        path = tmp_path / "bad.tar"
        path.write_bytes(archives.docker_save([base, archives.tar([("passwd", ("hardlink", "../../../etc/passwd"))])], ["sh"]))
    elif case == "a digest mismatch":
        config = archives.image_config([base, LAYER], ["sh"])
        path = tmp_path / "bad.tar"
        path.write_bytes(archives.docker_save([base, LAYER[:-1024] + archives.tar([("x", b"")])], ["sh"], config))
    elif case == "a truncated archive":
        path = tmp_path / "bad.tar"
        whole = archives.docker_save([base, LAYER], ["sh"])
        path.write_bytes(whole[:len(whole) // 2])
    elif case == "an unknown format":
        path = tmp_path / "bad.zip"
        path.write_bytes(b"PK\x03\x04 not a tar at all")
    return path


BAD = {"a ../ path": "points outside the layer", "an absolute path": "points outside the layer",
       "a write through a symlink": "would be written through the symlink",
       "a symlink out of the layer": "is a symlink out of the layer",
       "a hard link out of the layer": "points outside the layer",
       "a digest mismatch": "does not match its digest", "a truncated archive": "truncated or corrupt",
       "an unknown format": "is not a tar archive"}
MEMBER_PATH_REFUSES = {"a ../ path", "an absolute path", "a write through a symlink", "a hard link out of the layer"}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_archive_is_refused_and_leaves_nothing_behind(case, lab, tmp_path):
    busybox_layer()
    stored, known = stored_layers(), stored_images()
    refused = lab("image", "import", str(bad_archive(case, tmp_path)), "bad:v1")
    who = "member_path" if case in MEMBER_PATH_REFUSES else "lab image import"
    assert refused.returncode == 125, f"accepted a layer with {case}: {who} should refuse it\n{refused.stderr}"
    assert refused.stderr.count("\n") == 1 and BAD[case] in refused.stderr, refused.stderr
    assert not (tmp_path / "outside").exists(), (f"a layer with {case} wrote outside the layer: member_path should "
                                                 "refuse it, whichever folder on the member's way is a symlink")
    assert stored_layers() == stored and stored_images() == known      # nothing half-imported
    good = lab("image", "import", str(archive("docker save", tmp_path / "good")), "good:v1")
    assert good.returncode == 0, good.stderr                               # and the store still works


def host_state(folder: Path) -> dict:
    """folder and every path in it, with its type and mode, owner, time and content."""
    return {path: (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, path.read_bytes() if path.is_file() else None)
            for path in [folder, *folder.rglob("*")] for st in [path.lstat()]}


THROUGH_A_SYMLINK = {   # the case (archives.through_symlink_layers) -> None: it imports; or why it is refused
    "a hard link to a symlink to a host file": None,           # as docker: the link is a symlink too
    "a symlink to a host file, then a file of that name": None,
    "a symlink to a host folder, then a folder of that name": None,
    "a folder, then a symlink of that name to a host folder": None,
    "the layer's own folder as a symlink to a host folder": "would replace the layer's own folder",
}


@pytest.mark.parametrize("case", list(THROUGH_A_SYMLINK))
def test_a_layer_never_changes_a_host_file_through_a_symlink(case, lab, tmp_path):
    host = tmp_path / "host"                                    # what the layer's symlinks point at
    (host / "folder").mkdir(parents=True)
    (host / "file").write_text("the host's own\n")
    os.chmod(host / "file", 0o644)
    os.chown(host / "file", 1000, 1000)
    for path in (host / "file", host / "folder", host):
        os.utime(path, (1_000_000, 1_000_000))
    layer = archives.through_symlink_layers(host / "file", host / "folder")[case]
    image = tmp_path / "image.tar"
    image.write_bytes(archives.docker_save([layer_tar(busybox_layer()), layer], ["sh"]))
    before, stored, known = host_state(host), stored_layers(), stored_images()
    imported = lab("image", "import", str(image), "through:v1")
    assert host_state(host) == before                          # not a mode, owner, time or byte changed
    if THROUGH_A_SYMLINK[case] is None:
        assert imported.returncode == 0, imported.stderr
    else:
        assert imported.returncode == 125 and imported.stderr.startswith("lab: error: ")
        assert imported.stderr.count("\n") == 1 and THROUGH_A_SYMLINK[case] in imported.stderr, imported.stderr
        assert stored_layers() == stored and stored_images() == known      # nothing half-imported


def test_an_invalid_image_name_is_refused(lab, tmp_path):
    refused = lab("image", "import", str(archive("docker save", tmp_path / "good")), "Not A:Name")
    assert refused.returncode == 125 and "invalid image name 'Not A:Name'" in refused.stderr
    assert lab("image", "import", str(archive("docker save", tmp_path / "good2")), "good:v1").returncode == 0
