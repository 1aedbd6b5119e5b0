"""Chapter 08: security, what root inside a container may still do.   Check your work: pytest chapters/08_security

Each test is a way out of a container that a runtime without chapter 08 leaves open, tried
from inside `lab run` as a curious root would. The probes are safe for the machine running
them: files are opened but never written, mounts are read-only or tmpfs, nothing is changed.
Some probes need more than busybox: they run the host's own python3, bind-mounted read-only
into the container (-v /usr:/usr:ro), with ctypes for the calls no shell command makes.
"""
import json
import os
import signal
import subprocess

from chapters.harness import LAB, container_process, in_child
from lab import devices, security, syscalls

DEFAULT = security.mask(security.DEFAULT_CAPABILITIES)             # 0xa80425fb
PYTHON = ["-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro"]


def status_of(lab, *flags) -> dict[str, str]:
    """/proc/self/status of a container's PID 1, started with flags: {"CapEff": "...", ...}."""
    result = lab("run", "--rm", *flags, "busybox", "cat", "/proc/self/status")
    assert result.returncode == 0, result.stderr
    return dict(line.split(":\t", 1) for line in result.stdout.splitlines() if ":\t" in line)


def probe(lab, code: str, *flags) -> dict:
    """Run python code in a container; it prints a JSON object of what it saw, which we return."""
    prelude = ("import ctypes, errno, json, os\n"
               "libc = ctypes.CDLL(None, use_errno=True)\n"
               "def err(result):\n"
               "    return 'ok' if result >= 0 else errno.errorcode[ctypes.get_errno()]\n"
               "def try_open(path, flags=os.O_RDONLY):\n"
               "    try:\n"
               "        os.close(os.open(path, flags))\n"
               "        return 'ok'\n"
               "    except OSError as e:\n"
               "        return errno.errorcode[e.errno]\n")
    result = lab("run", "--rm", *PYTHON, *flags, "busybox", "/usr/bin/python3", "-I", "-c", prelude + code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def host_disk(scratch) -> tuple[int, int]:
    """major:minor of a block device the host may open: the one that holds / if it may (some
    sandboxes forbid even that), else the first other one (a loop device will do)."""
    candidates = [line.split()[2] for line in open("/proc/self/mountinfo") if line.split()[4] == "/"]
    candidates += [open(f"/sys/block/{d}/dev").read().strip() for d in sorted(os.listdir("/sys/block"))]
    for device in candidates:
        major, minor = (int(n) for n in device.split(":"))
        node = scratch / f"disk-{major}-{minor}"
        os.mknod(node, 0o60600, os.makedev(major, minor))
        try:
            os.close(os.open(node, os.O_RDONLY))
            return major, minor
        except OSError:
            continue
        finally:
            node.unlink()
    raise AssertionError("no block device on this machine that the host itself may open")


def test_a_container_keeps_only_dockers_fourteen_capabilities(lab):
    status = status_of(lab)
    for capability_set in ("CapBnd", "CapPrm", "CapEff"):
        assert int(status[capability_set], 16) == DEFAULT, \
            f"{capability_set} is {status[capability_set]}, not {DEFAULT:016x} (docker's 14)"
    # None inheritable (docker since 20.10.14, CVE-2022-24769): a program whose file carries
    # capabilities inheritable would get them back under a user other than root.
    assert int(status["CapInh"], 16) == 0, f"CapInh is {status['CapInh']}: leave the inheritable set empty"
    assert int(status["CapAmb"], 16) == 0


def test_ambient_capabilities_lab_was_started_with_do_not_reach_the_container():
    # A process started with ambient capabilities (setpriv, a systemd unit's AmbientCapabilities)
    # passes them on across exec: the container must start from an empty ambient set anyway.
    # Nor do inheritable ones: a capset that empties the inheritable set is what clears both.
    run = subprocess.run(["setpriv", "--inh-caps", "+net_raw", "--ambient-caps", "+net_raw", "--", LAB,
                          "run", "--rm", "busybox", "grep", "-E", "CapInh|CapAmb", "/proc/self/status"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["CapInh:", "0000000000000000", "CapAmb:", "0000000000000000"], \
        f"{run.stdout.split()}: lab's inheritable and ambient capabilities reached the container (capset?)"


def test_the_hosts_disk_can_be_made_but_neither_opened_nor_mounted(lab, tmp_path):
    major, minor = host_disk(tmp_path)
    script = (f"mknod /tmp/disk b {major} {minor} && echo made; mkdir /tmp/m; "
              "dd if=/tmp/disk of=/dev/null bs=512 count=1 2>/dev/null && echo opened; "
              "mount -o ro /tmp/disk /tmp/m 2>/dev/null && echo mounted; true")
    result = lab("run", "--rm", "busybox", "sh", "-c", script)
    assert result.stdout.startswith("made\n"), (f"mknod of the host's disk {major}:{minor} was refused: docker's "
                                               "rules let a container make any device (b *:* m), not use it")
    assert result.stdout == "made\n", f"the host's disk {major}:{minor} was reachable: {result.stdout.split()}"


def test_devices_off_the_allow_list_cannot_be_opened_but_the_usual_ones_can(lab):
    seen = probe(lab, "os.mknod('/tmp/mem', 0o20600, os.makedev(1, 1))\n"
                      "os.mknod('/tmp/kmsg', 0o20600, os.makedev(1, 11))\n"
                      "print(json.dumps({p: try_open(p) for p in ['/tmp/mem', '/tmp/kmsg', '/dev/null', '/dev/zero']}))")
    assert seen == {"/tmp/mem": "EPERM", "/tmp/kmsg": "EPERM", "/dev/null": "ok", "/dev/zero": "ok"}, \
        f"{seen}: EPERM is the device list's no (ENXIO: the list let the open through, the driver refused it)"
    # --device-cgroup-rule adds to the list: /dev/kmsg for writing (opened, never written), not reading
    script = ("mknod /tmp/kmsg c 1 11; { exec 3>/tmp/kmsg; } 2>/dev/null && echo write; "
              "{ exec 4</tmp/kmsg; } 2>/dev/null && echo read; true")
    result = lab("run", "--rm", "--device-cgroup-rule", "c 1:11 w", "busybox", "sh", "-c", script)
    writable = open("/proc/sys/kernel/printk_devkmsg").read().strip() != "off"     # (booted printk.devkmsg=off: never)
    assert result.stdout == "write\n" * writable, f"with --device-cgroup-rule 'c 1:11 w': {result.stdout.split()} {result.stderr}"
    # cgroup v2's BPF program (devices.device_program), run here on either version by a tiny
    # interpreter of its instructions, answers as the rules say, for the default list and more
    # (b 1:3, b 136:0: a char rule's numbers, of a block device; c 7:2: the other way; c 10:229: one
    # rule "rw" allows "r"; c 1:11: "r" and "w" in two rules are no "rw", each rule must allow it all)
    rules = devices.DEFAULT_RULES + [("b", 7, None, "r"), ("c", 10, 237, "rwm"), ("c", 10, 229, "rw"),
                                     ("c", 1, 11, "r"), ("c", 1, 11, "w")]
    program = devices.device_program(rules)
    for kind, major, minor in (("c", 1, 3), ("c", 1, 1), ("c", 136, 4), ("b", 8, 0), ("b", 7, 2), ("c", 10, 237), ("c", 10, 200),
                               ("c", 5, 0), ("c", 5, 3), ("b", 1, 3), ("b", 136, 0), ("c", 7, 2), ("c", 10, 229), ("c", 1, 11)):
        for access in ("m", "r", "w", "rw"):
            allowed = any(kind == k and major == (ma if ma is not None else major) and minor == (mi if mi is not None else minor)
                          and set(access) <= set(a) for k, ma, mi, a in rules)
            answer = run_device_program(program, devices.TYPES[kind], major, minor, sum(devices.ACCESS[a] for a in access))
            assert answer == allowed, f"the device program answers {answer} for {kind} {major}:{minor} {access}"


def run_device_program(program, kind: int, major: int, minor: int, access: int) -> int:
    """What the kernel's BPF machine answers for one device access (only the instructions a
    device program uses; registers are 64-bit, the ALU's results 32-bit)."""
    registers, pc = [0] * 11, 0
    context = {0: access << 16 | kind, 4: major, 8: minor}
    for _ in range(10_000):
        code, dst, src, off, imm = program[pc]
        pc += 1
        if code == devices.BPF_LDX | devices.BPF_MEM | devices.BPF_W:
            assert src == devices.R1 and registers[src] == 0, "a load from something else than the context"
            registers[dst] = context[off]
        elif code & 0x07 == devices.BPF_ALU:
            operand = registers[src] if code & devices.BPF_X else imm & 0xFFFFFFFF
            operation = {devices.BPF_MOV: lambda a, b: b, devices.BPF_AND: lambda a, b: a & b,
                         devices.BPF_RSH: lambda a, b: a >> b}[code & 0xF0]
            registers[dst] = operation(registers[dst], operand) & 0xFFFFFFFF
        elif code == devices.BPF_JMP | devices.BPF_JNE | devices.BPF_K:
            pc += off if registers[dst] != imm else 0
        elif code == devices.BPF_JMP | devices.BPF_EXIT:
            return registers[devices.R0]
        else:
            raise AssertionError(f"an instruction a device program does not need: {code:#x}")
    raise AssertionError("the program never ends")


def test_open_by_handle_at_the_shocker_exploit_is_refused(lab):
    # Shocker guessed the host's inode handles and opened them by handle, which needs
    # CAP_DAC_READ_SEARCH. Any handle will do to see whether the call is allowed at all: a
    # made-up one gets ESTALE or EINVAL where it is, EPERM where it is refused.
    seen = probe(lab, "handle = (ctypes.c_uint32 * 4)(8, 1, 2, 0)\n"          # 8 bytes of handle, type 1
                      "fd = libc.open_by_handle_at(os.open('/', os.O_RDONLY), handle, os.O_RDONLY)\n"
                      "print(json.dumps({'open_by_handle_at': err(fd)}))")
    assert seen == {"open_by_handle_at": "EPERM"}


def test_proc_sys_sysrq_and_the_cgroup_files_are_read_only(lab):
    # Opened for writing, never written: the open is where a read-only mount says no.
    seen = probe(lab, "limit = '/sys/fs/cgroup/memory.max' if os.path.exists('/sys/fs/cgroup/memory.max') "
                      "else '/sys/fs/cgroup/memory/memory.limit_in_bytes'\n"
                      "def first_file(top):\n"          # (a folder opened for writing: EISDIR, whatever the mount)
                      "    return next((os.path.join(d, sorted(f)[0]) for d, _, f in os.walk(top) if f), top)\n"
                      "files = [limit, '/proc/sys/kernel/core_pattern', '/proc/sysrq-trigger',\n"
                      "         *(first_file(top) for top in ('/proc/bus', '/proc/fs', '/proc/irq'))]\n"
                      "seen = {f: try_open(f, os.O_WRONLY) for f in files if os.path.exists(f)}\n"
                      "own = try_open('/proc/self/oom_score_adj', os.O_WRONLY)\n"
                      "print(json.dumps({'limit': open(limit).read().strip(), 'own': own, **seen}))", "-m", "64m")
    assert seen.pop("limit") == str(64 << 20)
    assert seen.pop("own") == "ok", "the rest of /proc is writable still (only the binds are read-only: MS_BIND)"
    assert len(seen) >= 2 and set(seen.values()) == {"EROFS"}, f"{seen}: each should be EROFS (read-only)"
    flags = probe(lab, "print(json.dumps({m.split()[4]: m.split()[5] for m in open('/proc/self/mountinfo') "
                       "if m.split()[4] == '/proc/sys'}))")
    assert set(flags["/proc/sys"].split(",")) >= {"ro", "nosuid", "nodev", "noexec"}, \
        f"/proc/sys is mounted {flags['/proc/sys']}: a read-only path keeps nosuid, nodev and noexec too, as docker's"


def test_no_new_filesystem_can_be_mounted(lab):
    script = ("mkdir /tmp/m; for fs in tmpfs proc sysfs cgroup2 binfmt_misc; do "
              "mount -t $fs none /tmp/m 2>/dev/null && echo $fs && umount /tmp/m; done; true")
    assert lab("run", "--rm", "busybox", "sh", "-c", script).stdout == ""


def test_the_kernels_private_files_are_masked(lab):
    script = ("for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do head -c 1 $f >/dev/null 2>&1 && "
              "[ -n \"$(head -c 1 $f 2>/dev/null)\" ] && echo $f; done; "
              "ls /sys/firmware; touch /sys/firmware/mine 2>/dev/null && echo 'written into a mask'; true")
    shown = lab("run", "--rm", "busybox", "sh", "-c", script).stdout
    assert shown == "", f"these show something: {shown.splitlines()}"      # (a folder's mask: read-only, empty)


def test_mask_paths_masks_files_and_folders_and_makes_both_kinds_read_only(tmp_path, monkeypatch):
    """mask_paths() on paths of this test's own, one of each kind, in a child's own mount
    namespace: the kernel of the machine may lack a file among the read-only paths (docker's
    one file there, /proc/sysrq-trigger), which the container's tests then cannot try."""
    import errno
    for name in ("secret", "knob"):
        (tmp_path / name).write_text("the host's\n")
        (tmp_path / f"{name}s").mkdir()
        (tmp_path / f"{name}s" / "one").write_text("the host's\n")
    path = {name: str(tmp_path / name) for name in ("secret", "secrets", "knob", "knobs")}
    monkeypatch.setattr(security, "MASKED_PATHS", [path["secret"], path["secrets"], str(tmp_path / "no-such")])
    monkeypatch.setattr(security, "READONLY_PATHS", [path["knob"], path["knobs"], str(tmp_path / "none-here")])

    def refused(file: str) -> bool:
        try:
            os.close(os.open(file, os.O_WRONLY | os.O_CREAT))
        except OSError as e:
            return e.errno == errno.EROFS
        return False

    def masked():
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        security.mask_paths()
        with open(path["secret"], "rb") as f:
            assert f.read(1) == b"", "a masked file reads nothing: /dev/null bound over it"
        assert os.listdir(path["secrets"]) == [], "a masked folder is empty: a tmpfs (size=0) mounted on it"
        assert refused(path["secrets"] + "/new"), "a masked folder's tmpfs is read-only"
        assert refused(path["knob"]), "a read-only path that is a file (as /proc/sysrq-trigger) refuses writing"
        assert refused(path["knobs"] + "/one"), "a read-only folder refuses writing"
        flags = {fields[4]: set(fields[5].split(",")) for fields in map(str.split, open("/proc/self/mountinfo"))}
        for name in ("secrets", "knob", "knobs"):
            assert flags[path[name]] >= {"ro", "nosuid", "nodev", "noexec"}, f"{name}: mounted {flags[path[name]]}"
        return 0
    assert in_child(masked) == 0
    assert (tmp_path / "secret").read_text() == "the host's\n" and not (tmp_path / "no-such").exists()


def test_clock_kernel_log_perf_and_bpf_are_refused(lab):
    # Each call asks for nothing to change: settimeofday(NULL, NULL) only checks the right to
    # set the clock; perf and bpf make an object that is closed at once. (x86_64 numbers.)
    seen = probe(lab, "libc.syscall.restype = ctypes.c_long; n = ctypes.c_long\n"
                      "attr = (ctypes.c_uint32 * 32)(1, 128)\n"                              # a software counter
                      "perf = libc.syscall(n(298), attr, n(-1), n(0), n(-1), n(0))\n"        # every process, CPU 0
                      "bpf = libc.syscall(n(321), n(0), (ctypes.c_uint32 * 32)(2, 4, 4, 1), n(128))\n"   # an array map
                      "clock = libc.syscall(n(164), None, None)\n"
                      "buf = ctypes.create_string_buffer(64)\n"
                      "print(json.dumps({'settimeofday': err(clock), 'perf': err(perf),"
                      " 'bpf': err(bpf), 'dmesg': err(libc.klogctl(3, buf, 64))}))")
    assert seen == {"settimeofday": "EPERM", "perf": "EPERM", "bpf": "EPERM", "dmesg": "EPERM"}


def test_a_blocked_call_fails_with_eperm_from_the_seccomp_filter(lab):
    status = status_of(lab)
    assert status["Seccomp"] == "2", "no seccomp filter is installed (2: one is)"
    assert status["NoNewPrivs"] == "0", "no_new_privs is set though --security-opt no-new-privileges was not given"
    assert "Operation not permitted" in lab("run", "--rm", "busybox", "unshare", "-m", "true").stderr
    unconfined = status_of(lab, "--security-opt", "seccomp=unconfined")
    assert (unconfined["Seccomp"], int(unconfined["CapEff"], 16)) == ("0", DEFAULT)


def test_a_profile_of_your_own_and_no_new_privileges(lab, tmp_path):
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}))
    made = lab("run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "mkdir", "/tmp/x")
    assert made.returncode == 1 and "Function not implemented" in made.stderr
    assert status_of(lab, "--security-opt", "no-new-privileges")["NoNewPrivs"] == "1", \
        "--security-opt no-new-privileges did not set no_new_privs"


def test_cap_add_cap_drop_and_privileged(lab, tmp_path):
    assert int(status_of(lab, "--cap-drop", "ALL", "--cap-add", "net_admin")["CapEff"], 16) == 1 << 12
    assert int(status_of(lab, "--cap-drop", "CAP_CHOWN")["CapEff"], 16) == DEFAULT & ~1
    ours = [line for line in open("/proc/self/status") if line.startswith("CapPrm")][0].split()[1]
    assert int(status_of(lab, "--cap-add", "ALL", "--cap-drop", "chown")["CapEff"], 16) == int(ours, 16) & ~1
    # -u after --cap-drop SETUID SETGID: the user is switched before the capabilities go
    switched = lab("run", "--rm", "--cap-drop", "SETUID", "--cap-drop", "SETGID", "-u", "nobody", "busybox", "id", "-u")
    assert (switched.returncode, switched.stdout) == (0, "65534\n"), \
        f"-u nobody with --cap-drop SETUID: {switched.stderr.strip()} (setuid needs CAP_SETUID still held)"
    privileged = status_of(lab, "--privileged")
    assert (privileged["CapEff"], privileged["Seccomp"]) == (ours, "0")          # all of the runtime's
    script = "mknod /tmp/disk b %d %d; dd if=/tmp/disk of=/dev/null bs=1 count=0 2>/dev/null && echo opened" % host_disk(tmp_path)
    assert lab("run", "--rm", "--privileged", "busybox", "sh", "-c", script).stdout == "opened\n"


def test_bad_security_flags_are_one_line_and_create_nothing(lab):
    for flags in (["--cap-add", "FLY"], ["--security-opt", "apparmor=x"], ["--security-opt", "seccomp=/nowhere.json"]):
        result = lab("run", *flags, "busybox", "true")
        assert result.returncode == 125 and result.stderr.count("\n") == 1 and "lab: error:" in result.stderr
    assert lab("ps", "-a", "-q").stdout == ""
    good = lab("run", "--rm", "--cap-add", "cap_sys_time", "--security-opt", "no-new-privileges:true", "busybox", "true")
    assert good.returncode == 0, good.stderr


def test_an_exec_gets_the_containers_confinement(lab):
    assert lab("run", "-d", "--name", "confined", "--cap-drop", "NET_RAW", "busybox", "sleep", "600").returncode == 0
    try:
        result = lab("exec", "confined", "cat", "/proc/self/status")
    finally:
        lab("rm", "-f", "confined")
    status = dict(line.split(":\t", 1) for line in result.stdout.splitlines() if ":\t" in line)
    assert (int(status["CapEff"], 16), status["Seccomp"]) == (DEFAULT & ~(1 << 13), "2")


def test_inspect_shows_the_confinement_as_docker_does(lab):
    lab("run", "--name", "shown", "--cap-add", "SYS_TIME", "--security-opt", "no-new-privileges", "busybox", "true")
    try:
        host = json.loads(lab("inspect", "shown").stdout)[0]["HostConfig"]
    finally:
        lab("rm", "shown")
    assert (host["CapAdd"], host["CapDrop"], host["Privileged"], host["SecurityOpt"]) == \
        (["SYS_TIME"], None, False, ["no-new-privileges"])


def capabilities(pid: int) -> int:
    """A process's effective capabilities (CapEff in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))


def test_lab_itself_keeps_its_powers_outside():
    # The confinement is the container's: `lab run`, the runtime that made it, keeps its own.
    run = subprocess.Popen([LAB, "run", "--rm", "busybox", "sleep", "30"], stderr=subprocess.PIPE, text=True)
    try:
        container = container_process(run, "sleep 30")                 # (exec'd: confined by then)
        assert capabilities(container) == DEFAULT                       # the container: confined
        assert capabilities(run.pid) == capabilities(os.getpid())      # lab, outside it: as it was
        os.kill(container, signal.SIGKILL)                              # then lab removes it (--rm)
        assert run.wait(timeout=30) == 128 + signal.SIGKILL
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
