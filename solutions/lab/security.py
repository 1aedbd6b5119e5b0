"""Chapter 08: security, what root inside a container may still do.

Namespaces hide the host, cgroups ration it, pivot_root takes its files away, and yet the
process in the container is root: the kernel checks root's powers, not its view. Left as
they are, it can make a device node for the host's disk and mount it, reach the kernel's
settings through /proc/sys, load BPF programs, set the clock. Docker's defaults take those
powers away in layers; the child applies them last, just before exec, in this order (runc's
standard_init_linux.go takes the same steps, but sets no_new_privs before it drops the bounding
set and, with no_new_privs, installs seccomp last, after the capabilities):

1. masked and read-only paths: the /proc and /sys files that show or steer the whole machine;
   and a session keyring of its own, not the host's root's (man 7 keyrings), as runc's;
2. the capability bounding set: of root's 41 capabilities (man 7 capabilities), 14 stay;
3. no_new_privs, on request: no exec can gain privileges again (setuid files, file caps);
4. seccomp: a filter on the system calls themselves (seccomp.py). Without no_new_privs,
   installing one needs CAP_SYS_ADMIN: so it comes before the capabilities go;
5. -u USER: setgroups, setgid, setuid (CAP_SETUID and CAP_SETGID are still held here);
6. capset: the effective and permitted sets cut down to the 14 (to none for a user other
   than root, as docker's); inheritable and ambient emptied.
Which device nodes may be opened is the devices cgroup's job (devices.py), set by the parent.
`--privileged` skips all of it: the explicit way out, as docker's.
See man 7 capabilities, man 2 prctl, man 2 seccomp, man 7 cgroups.
"""
import errno
import os
import re

from lab import LabError, devices, folders, syscalls
from lab.syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT

# Capability numbers (linux/capability.h): a capability's number is its bit in a set.
CAPABILITIES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]

# What a docker container keeps: enough to be root in its own files, nothing over the host.
DEFAULT_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                        "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"]

# Hidden (a directory gets an empty read-only tmpfs, a file /dev/null): they show the host's
# memory (kcore), keys, timers and hardware, or they reach firmware.
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
# Readable but read-only: writing to them changes the whole machine (/proc/sys/kernel/core_pattern
# runs a program as the host's root; sysrq-trigger reboots it).
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def capability_names(add=(), drop=(), privileged=False) -> list[str]:
    """The container's capabilities from --cap-add, --cap-drop and --privileged, as docker
    reads them: names with or without CAP_, any case; ALL; drops first, then adds (--cap-add ALL:
    every capability but those dropped)."""
    def names(values, flag):
        found = []
        for value in values:
            name = value.upper().removeprefix("CAP_")
            if name != "ALL" and name not in CAPABILITIES:
                raise LabError(f"{flag}: unknown capability {value!r}: use a name from `man 7 capabilities`, "
                               "e.g. NET_ADMIN, or ALL")
            found.append(name)
        return found
    add, drop = names(add, "--cap-add"), names(drop, "--cap-drop")
    if privileged:
        return list(CAPABILITIES)
    if "ALL" in add:
        return [c for c in CAPABILITIES if c not in drop]
    kept = [] if "ALL" in drop else [c for c in DEFAULT_CAPABILITIES if c not in drop]
    return kept + [c for c in add if c not in kept]


def options(cap_add=(), cap_drop=(), privileged=False, security_opt=(), device_cgroup_rules=()) -> dict:
    """The container's "Security" record from the flags docker has for it; bad input is one line.
    device_cgroup_rules: --device-cgroup-rule's, devices allowed beyond docker's list (devices.py).

    --security-opt no-new-privileges[:true|false], seccomp=unconfined, seccomp=PROFILE.json
    (read now: a later change to the file does not change the container) or, from the engine,
    seccomp=<the profile's JSON itself> (the docker command sends the file's content).
    """
    import json
    record = {"Privileged": bool(privileged), "CapAdd": list(cap_add), "CapDrop": list(cap_drop),
              "Capabilities": capability_names(cap_add, cap_drop, privileged),
              "NoNewPrivileges": False, "Seccomp": None,
              "DeviceCgroupRules": list(device_cgroup_rules) or None}
    for rule in device_cgroup_rules:
        devices.parse_rule(rule)                  # (checked now, applied at each start)
    for opt in security_opt:
        key, sep, value = opt.replace(":", "=", 1).partition("=") if opt.startswith("no-new") else opt.partition("=")
        if key == "no-new-privileges" and value in ("", "true", "false"):
            record["NoNewPrivileges"] = value != "false"
        elif key == "seccomp" and value == "unconfined":
            record["Seccomp"] = "unconfined"
        elif key == "seccomp" and value:
            try:
                text = value if value.lstrip().startswith("{") else open(value).read()
                record["Seccomp"] = json.loads(text)
            except (OSError, ValueError) as e:
                raise LabError(f"--security-opt seccomp={value[:60]}: cannot read the profile ({e}): "
                               "give a JSON file in docker's seccomp profile format") from None
        else:
            raise LabError(f"--security-opt {opt!r}: lab knows no-new-privileges, seccomp=unconfined "
                           "and seccomp=PROFILE.json")
    return record


def mask(names: list[str]) -> int:
    """A capability set as the kernel takes it: bit N for capability number N."""
    return sum(1 << CAPABILITIES.index(name) for name in names)


def held_capabilities() -> int:
    """The capabilities this process holds (its permitted set)."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("CapPrm:")).split()[1], 16)


def last_capability() -> int:
    """The highest capability number this kernel knows (older kernels know fewer)."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


class Policy:
    """What the child applies, prepared by the parent: the capability mask, no_new_privs, the
    compiled seccomp program (None: unconfined), and whether this is --privileged."""

    def __init__(self, config: dict, seccomp_program: bytes | None, cgroupfs: list, user: str | None = None,
                 groups=(), ulimits=()):
        self.privileged = config.get("Privileged", False)
        self.user = user                          # -u USER[:GROUP], looked up in the container's files
        self.groups = list(groups)                # --group-add: more groups, names or numbers
        self.rlimits = rlimits(ulimits)           # --ulimit: the setrlimit calls the child makes
        self.last_cap = last_capability()         # read while the host's /proc is in sight
        # No more than lab holds itself (capset refuses to add any): --privileged is "all of lab's".
        self.capabilities = mask(config["Capabilities"]) & held_capabilities()
        self.no_new_privs = config.get("NoNewPrivileges", False)
        self.seccomp_program = seccomp_program
        self.cgroupfs = cgroupfs                  # see mount_cgroupfs


def apply(policy: Policy, mounts: bool = True) -> None:
    """In the child, after its rootfs and terminal are ready, right before exec: the order of
    the module's docstring. mounts=False: the cgroupfs and the masks are left out, either
    because they are there already (lab exec) or because there is no mount namespace of the
    container's own to make them in (chapter 01 not written: they would land on the host)."""
    from lab import seccomp
    if mounts:
        mount_cgroupfs(policy.cgroupfs, read_only=not policy.privileged)
        if not policy.privileged:
            mask_paths()
    try:
        syscalls.join_new_session_keyring()       # (seccomp forbids keyctl; --security-opt seccomp=unconfined does not)
    except OSError as e:
        if e.errno != errno.ENOSYS:               # a kernel without keys
            raise
    for set_limit in policy.rlimits:              # --ulimit (a hard limit raised needs CAP_SYS_RESOURCE)
        set_limit()
    drop_bounding_set(policy.capabilities, policy.last_cap)
    if policy.no_new_privs:
        set_no_new_privs()
    if policy.seccomp_program is not None:
        seccomp.install(policy.seccomp_program)
    if (policy.user or policy.groups) and switch_user(policy.user or "0", policy.groups) != 0:
        set_capabilities(0)                       # a user other than root holds no capability
    else:
        set_capabilities(policy.capabilities)


def switch_user(spec: str, more_groups=()) -> int:
    """-u USER[:GROUP]: become that user, with its groups (and --group-add's); return its uid.
    Names are looked up in the container's /etc/passwd and /etc/group (its files, not the
    host's); numbers need no entry (a uid without one gets group 0, as docker's)."""
    name, _, group = spec.partition(":")
    users = read_table("/etc/passwd")
    groups = read_table("/etc/group")
    entry = next((e for e in users if name in (e[0], e[2])), None)
    if entry is None and not name.isdigit():
        raise LabError(f"unable to find user {name}: no matching entries in the container's /etc/passwd")
    uid = int(entry[2]) if entry else int(name)
    gid = int(entry[3]) if entry else 0
    if group:
        found = next((e for e in groups if group in (e[0], e[2])), None)
        if found is None and not group.isdigit():
            raise LabError(f"unable to find group {group}: no matching entries in the container's /etc/group")
        gid = int(found[2]) if found else int(group)
    member_of = [int(e[2]) for e in groups if entry and entry[0] in e[3].split(",") and e[2].isdigit()]
    for extra in more_groups:
        found = next((e for e in groups if extra in (e[0], e[2])), None)
        if found is None and not extra.isdigit():
            raise LabError(f"unable to find group {extra}: no matching entries in the container's /etc/group")
        member_of.append(int(found[2]) if found else int(extra))
    os.setgroups(sorted({gid, *member_of}))
    os.setgid(gid)
    os.setuid(uid)
    return uid


ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
           "rss", "rtprio", "rttime", "sigpending", "stack")


def parse_ulimit(spec) -> dict:
    """--ulimit NAME=SOFT[:HARD] (-1: unlimited), or the engine's {"Name", "Soft", "Hard"}: checked."""
    if isinstance(spec, dict):
        spec = f"{spec.get('Name')}={spec.get('Soft')}:{spec.get('Hard')}"
    m = re.fullmatch(r"([a-z]+)=(-?[0-9]+)(?::(-?[0-9]+))?", str(spec))
    if not m or m.group(1) not in ULIMITS:
        raise LabError(f"invalid ulimit {spec!r}: use NAME=SOFT[:HARD], NAME one of {', '.join(ULIMITS)}")
    soft = int(m.group(2))
    hard = int(m.group(3)) if m.group(3) is not None else soft
    if (hard != -1 and (soft == -1 or soft > hard)) or min(soft, hard) < -1:
        raise LabError(f"invalid ulimit {spec!r}: the soft limit may not be above the hard one")
    if max(soft, hard) >= 2**63:
        raise LabError(f"invalid ulimit {spec!r}: a limit is at most {2**63 - 1} (-1: unlimited)")
    if m.group(1) == "nofile":                # the kernel's ceiling for open files, which even root
        ceiling = int(open("/proc/sys/fs/nr_open").read())          # cannot raise (setrlimit: EPERM)
        if min(soft, hard) == -1 or max(soft, hard) > ceiling:
            raise LabError(f"invalid ulimit {spec!r}: nofile is at most {ceiling} here (fs.nr_open), "
                           "and cannot be unlimited")
    return {"Name": m.group(1), "Soft": soft, "Hard": hard}


def rlimits(ulimits) -> list:
    """--ulimit's setrlimit(2) calls, ready to make. Prepared in the parent: once in its new
    root, the child has no Python library to import `resource` from."""
    if not ulimits:
        return []
    import functools
    import resource
    number = {-1: resource.RLIM_INFINITY}
    return [functools.partial(resource.setrlimit, getattr(resource, "RLIMIT_" + u["Name"].upper()),
                              (number.get(u["Soft"], u["Soft"]), number.get(u["Hard"], u["Hard"]))) for u in ulimits]


def read_table(path: str) -> list[list[str]]:
    """The colon-separated lines of /etc/passwd or /etc/group (none if the image has no such
    file), its first megabyte. The container's own file: it may have made it a FIFO, whose
    open waits for a writer for ever, or a device; only a regular file is read."""
    try:
        text = folders.read_regular(path, f"the container's {path}")
    except FileNotFoundError:
        return []
    return [line.split(":") for line in text.splitlines() if line.count(":") >= 3]


def mask_paths() -> None:
    """Hide MASKED_PATHS and make READONLY_PATHS read-only, in the container's /proc and /sys.

    A folder's mask and each read-only path are nosuid, nodev and noexec too, as docker's (a
    file's mask, /dev/null, keeps the flags of the /dev it comes from: with nodev, it could not
    even be opened)."""
    # HINT: some /proc and /sys files let root reach the host's kernel: hide them (mount something
    # HINT: over them) or make them read-only.
    # HINT 2: a file is hidden by bind-mounting /dev/null over it; a directory by mounting an
    # HINT 2: empty tmpfs on it (size=0), read-only. A path this kernel does not have is left alone.
    # HINT 3: Read-only: bind-mount the path on itself, then remount that bind with MS_RDONLY,
    # HINT 3: MS_NOSUID, MS_NODEV and MS_NOEXEC (a bind's flags come from its remount, which sets
    # HINT 3: them all at once: the flags it leaves out are cleared; see rootfs.bind_readonly).
    # BEGIN SOLUTION 08
    for path in MASKED_PATHS:
        if os.path.isdir(path):
            syscalls.mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
        elif os.path.exists(path):
            syscalls.mount("/dev/null", path, None, MS_BIND)
    for path in READONLY_PATHS:
        if os.path.exists(path):
            syscalls.mount(path, path, None, MS_BIND | MS_REC)
            syscalls.mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # END SOLUTION


def drop_bounding_set(keep: int, last_cap: int) -> None:
    """Take every capability not in keep out of the bounding set: no exec can get it back."""
    # HINT: a capability taken out of the bounding set can never come back, whatever is executed
    # HINT: later: take out every one the container does not keep.
    # HINT 2: the bounding set caps what any later exec may hold; root's exec otherwise gets it all.
    # HINT 2: prctl(PR_CAPBSET_DROP, N) takes capability N out; numbers go from 0 to last_cap.
    # BEGIN SOLUTION 08
    for number in range(last_cap + 1):
        if not keep & (1 << number):
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)
    # END SOLUTION


def set_no_new_privs() -> None:
    """--security-opt no-new-privileges: from now on exec never raises privileges."""
    # HINT: one flag makes sure no later exec gains privileges (setuid programs, file capabilities);
    # HINT: the kernel then also lets an unprivileged process install a seccomp filter.
    # HINT 2: prctl(PR_SET_NO_NEW_PRIVS, 1) (see syscalls); there is no way back.
    # BEGIN SOLUTION 08
    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    # END SOLUTION


def set_capabilities(keep: int) -> None:
    """Cut the effective and permitted sets down to keep; empty the inheritable and ambient sets.

    (An inheritable set of keep, as docker's before 20.10.14, gave them back to a non-root
    user's program whose file carries them inheritable: CVE-2022-24769.)"""
    # HINT: set what the container keeps (effective, permitted; nothing inheritable) at once, and
    # HINT: empty the ambient set; it comes last, because it takes away what the steps before needed.
    # HINT 2: one capset call sets all three sets; the ambient set is cleared with
    # HINT 2: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL). This comes last: dropping
    # HINT 2: CAP_SYS_ADMIN earlier would forbid the mounts and the seccomp filter.
    # BEGIN SOLUTION 08
    syscalls.capset(keep, keep, 0)
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    # END SOLUTION


def mount_cgroupfs(mounts: list[tuple[str, str, str]], read_only: bool = True) -> None:
    """The container's own cgroup at /sys/fs/cgroup, read-only (--privileged: writable), as
    docker mounts it.

    The child is in a cgroup namespace whose root is its own cgroup: a cgroup filesystem
    mounted here shows that cgroup as its /, and nothing of the host's. mounts is
    [(folder, type, options)]: one cgroup2 mount on v2; on v1 one per hierarchy, in folders
    of a tmpfs that is then made read-only too.
    """
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | (MS_RDONLY if read_only else 0)
    target = "/sys/fs/cgroup"
    if not mounts or not os.path.isdir(target):
        return
    if mounts[0][1] == "cgroup2":
        syscalls.mount("cgroup2", target, "cgroup2", flags)
        return
    syscalls.mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k")
    for folder, fstype, options in mounts:
        os.mkdir(f"{target}/{folder}")
        syscalls.mount("cgroup", f"{target}/{folder}", fstype, flags, options)
        for controller in folder.split(",") if "," in folder else ():    # cpu -> cpu,cpuacct
            os.symlink(folder, f"{target}/{controller}")
    syscalls.mount(None, target, None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "mode=755,size=64k")
