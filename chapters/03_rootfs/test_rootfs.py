"""Chapter 03: rootfs, which files are the container's /.   Check your work: pytest chapters/03_rootfs"""
import errno
import os
import shutil
import stat
import uuid

from chapters.harness import in_child
from lab import images, rootfs, security, store, syscalls

DEV = {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdin", "stdout", "stderr"}
CONTAINER_MOUNTS = {"/", "/etc/hostname", "/etc/hosts", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm"}


def test_the_container_sees_the_images_files_not_the_hosts(lab, tmp_path):
    marker = tmp_path / f"marker-{uuid.uuid4().hex[:8]}"
    marker.write_text("on the host\n")
    result = lab("run", "--rm", "busybox", "sh", "-c", f"cat /etc/passwd; ls {marker} 2>/dev/null || echo no marker")
    layer = store.layer_path(images.resolve("busybox")["Layers"][0])
    assert result.stdout == (layer / "etc" / "passwd").read_text() + "no marker\n"


def test_its_mount_table_has_only_its_own_mounts(lab):
    mountinfo = lab("run", "--rm", "busybox", "cat", "/proc/self/mountinfo").stdout
    assert mountinfo, "cat /proc/self/mountinfo printed nothing: is /proc mounted in the new root, after pivot_root?"
    # (chapter 08 adds its own over /proc and /sys: masks, read-only paths, the cgroup files)
    chapter_08 = {*security.MASKED_PATHS, *security.READONLY_PATHS}
    chapter_09 = {"/etc/resolv.conf"}          # (the network's name servers)
    mounts = {line.split()[4] for line in mountinfo.splitlines()}
    assert {m for m in mounts if m not in chapter_08 | chapter_09 and not m.startswith("/sys/fs/cgroup")} == CONTAINER_MOUNTS
    # Each kernel filesystem with docker's options: (the mount's flags, the filesystem's options)
    wanted = {"/proc": ({"nosuid", "nodev", "noexec"}, set()), "/sys": ({"ro", "nosuid", "nodev", "noexec"}, set()),
              "/dev": ({"nosuid"}, {"mode=755"}), "/dev/pts": ({"nosuid", "noexec"}, {"ptmxmode=666"}),
              "/dev/shm": ({"nosuid", "nodev", "noexec"}, {"size=65536k"})}
    for line in mountinfo.splitlines():
        mine, theirs = line.split(" - ")
        point, flags, options = mine.split()[4], set(mine.split()[5].split(",")), set(theirs.split()[2].split(","))
        if point in wanted:
            assert wanted[point][0] <= flags and wanted[point][1] <= options, (
                f"{point} is mounted {','.join(sorted(flags))} ({','.join(sorted(options))}): "
                f"{','.join(sorted(wanted[point][0] | wanted[point][1]))}?")


def test_the_hostname_files_are_the_containers(lab):
    result = lab("run", "--rm", "--hostname", "box", "busybox", "cat", "/etc/hostname", "/etc/hosts")
    assert result.stdout.startswith("box\n127.0.0.1\tlocalhost\n") and "\tbox\n" in result.stdout, \
        f"the container's /etc/hostname and /etc/hosts are not lab's (binds, before pivot_root):\n{result.stdout}"


def test_sys_is_read_only_and_the_image_never_changes(lab):
    layer = store.layer_path(images.resolve("busybox")["Layers"][0])
    passwd = (layer / "etc" / "passwd").read_text()
    # Until chapter 04 the image's folder is the container's /, mounted read-only: writing fails.
    # With chapter 04 the writes land in the container's own layer. Either way, the image stays.
    result = lab("run", "--rm", "busybox", "sh", "-c", "touch /sys/x; touch /x 2>/dev/null; echo x >> /etc/passwd")
    assert result.stderr.startswith("touch: /sys/x: Read-only file system\n")
    assert not (layer / "x").exists() and (layer / "etc" / "passwd").read_text() == passwd


def test_dev_has_the_usual_nodes_and_nothing_of_the_hosts(lab):
    result = lab("run", "--rm", "busybox", "sh", "-c", "ls /dev; echo gone > /dev/null; head -c 3 /dev/zero | wc -c; "
                 "for link in fd stdin stdout stderr ptmx; do readlink /dev/$link; done")
    *listing, count, fd, stdin, stdout, stderr, ptmx = result.stdout.split() or [""] * 7
    assert set(listing) == DEV and count == "3", result.stdout
    assert [fd, stdin, stdout, stderr, ptmx] == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2",
                                                 "pts/ptmx"], "where /dev's links lead"
    modes = lab("run", "--rm", "busybox", "stat", "-c", "%a %n", "/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                "/dev/urandom", "/dev/tty").stdout.splitlines()
    assert all(line.startswith("666 ") for line in modes) and len(modes) == 6, \
        f"{modes}: everyone may read and write these (0o666; mknod's mode passes through the umask)"


def test_a_chroot_can_be_escaped_but_pivot_root_cannot(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(store.layer_path(images.resolve("busybox")["Layers"][0]), root, symlinks=True)
    marker = tmp_path / "host-only"
    marker.write_text("the host\n")

    def escaped() -> int:
        # The classic breakout: chroot into a subfolder while the working directory stays
        # outside it, climb with "..", and chroot to where we end up: the real /.
        os.chroot("tmp")
        for _ in range(64):
            os.chdir("..")
        os.chroot(".")
        return 0 if marker.exists() else 1

    def in_chroot():
        os.chroot(root)
        os.chdir("/")
        return escaped()

    def after_pivot_root():
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)    # nothing reaches the host,
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SHARED)   # and / shared, as systemd
        syscalls.mount(str(root), str(root), None, syscalls.MS_BIND)   # makes it; the root a mount too (shared,
        rootfs.pivot_root(str(root))             # as where / is): pivot_root must make them all private itself
        return escaped()

    assert in_child(in_chroot) == 0              # chroot: the host's files are back
    assert in_child(after_pivot_root) == 1       # pivot_root: there is nothing to climb back to


def test_enter_assembles_the_root_in_the_order_that_works(tmp_path):
    # A writable copy of the image, so that every step can be seen: in a mount namespace whose /
    # is shared, as on a systemd host. Each check below fails when one step is out of its place.
    root = tmp_path / "root"
    shutil.copytree(store.layer_path(images.resolve("busybox")["Layers"][0]), root, symlinks=True)
    hostname = tmp_path / "hostname"
    hostname.write_text("assembled\n")
    workdir = f"/lab-test-workdir-{uuid.uuid4().hex[:8]}"
    outside = tmp_path / "outside"                  # the image's workdir is a symlink to this path, a
    outside.mkdir()                                 # folder of the host's and of the image's: in the new
    (root / str(outside).lstrip("/")).mkdir(parents=True)   # / it leads into the container's own files
    (root / workdir.lstrip("/")).symlink_to(outside)

    def inside():
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SHARED)
        rootfs.enter(str(root), [(str(hostname), "/etc/hostname")], workdir + "/app", read_only=True)
        with open("/etc/hostname") as f:
            assert f.read() == "assembled\n", "/etc/hostname is the image's: bind before pivot_root, from the host's path"
        assert os.path.isdir(workdir + "/app"), "no workdir in the new /: make it after pivot_root, before / is read-only"
        try:
            open("/written", "w")
            raise AssertionError("/ is writable: read_only asks for a read-only /")
        except OSError as e:
            assert e.errno == errno.EROFS, e
        assert os.path.exists("/proc/self/mountinfo"), "no /proc in the new /: mount_kernel_filesystems() after pivot_root"
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode), "no /dev/null in the new /"
        with open("/dev/shm/x", "w"):             # the mounts on top of / stay writable
            pass
        return 0

    def writable():
        syscalls.unshare(syscalls.CLONE_NEWNS)
        rootfs.enter(str(root), [], "/", read_only=False)
        with open("/written", "w"):
            return 0                              # (no OSError: / is writable, as asked)

    try:
        assert in_child(inside) == 0
        assert in_child(writable) == 0, "read_only=False: / stays writable"
    finally:
        leaked = os.path.isdir(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    assert not leaked, f"{workdir} was made on the host: the workdir is made after pivot_root"
    assert not (outside / "app").exists(), ("the workdir was made through the image's symlink, on the host's "
                                            "side: make it after pivot_root, where the symlink leads into the new /")
