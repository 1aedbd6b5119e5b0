"""Chapter 08: seccomp, which system calls the container may make at all.

Capabilities decide what root may do; seccomp decides which kernel calls reach the kernel.
A seccomp filter is a small BPF program the kernel runs on every system call of a process:
it reads the call's number and arguments and answers allow, fail with an errno, or kill.
Docker's default profile (seccomp_default.json, from moby) allows some 370 calls and makes
the rest fail with EPERM: keyctl, kexec_load, mount, unshare... (a few come back with the
capability that guards them: CAP_SYS_ADMIN brings back mount and unshare). Once installed,
a filter stays for the process and all it execs, and can only be made stricter.

Turning a profile into BPF is libseccomp's job: docker (through runc) and podman (through
crun) all use it. lab calls the C library through ctypes, as lab runs on the standard
library alone. The parent compiles the filter (and caches it on disk); the child, after
pivot_root, only hands the finished program to the kernel, just before exec.
By then the host's libseccomp is out of sight, and the image's own copy is a stranger's code.
See man 2 seccomp, man 3 seccomp_rule_add, man 3 seccomp_export_bpf.
"""
import ctypes
import json
import os
import pathlib
import zlib

from lab import LabError, syscalls
from lab.names import host_arch

DEFAULT_PROFILE = pathlib.Path(__file__).with_name("seccomp_default.json")

# What the filter answers (seccomp.h). ERRNO and TRACE carry a 16-bit value in the low bits.
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
# How a rule compares a call's argument (seccomp.h, enum scmp_compare).
COMPARISONS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,   # (argument & value) == valueTwo
}
SCMP_FLTATR_CTL_NNP = 3
NR_SCMP_ERROR = -1             # "no such syscall"; other negative numbers are libseccomp's own
EPERM, EEXIST = 1, 17

# Profiles name the host in includes/excludes "arches" the way Go does.
HOST_ARCH = host_arch().split("/")[0]       # (Go's GOARCH: arm, not arm/v7)

class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp: one check on one argument of a call."""
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def load_profile(spec: str | dict | None) -> dict | None:
    """The profile `spec` names: None or "" is docker's default, "unconfined" is no filter,
    other text a JSON file's path, and a dict a profile already read (the engine is sent
    the JSON itself, as the docker command reads the file on the client's side)."""
    raw = _profile_bytes(spec)
    return None if raw is None else _parse(raw, spec)


def filter_for(spec: str | dict | None, capabilities: set[str], cache_dir: pathlib.Path) -> bytes | None:
    """The compiled filter for this profile and capability set, compiled once per host."""
    raw = _profile_bytes(spec)
    if raw is None:
        return None
    # The program depends on the profile, the capabilities (includes/excludes "caps"), the
    # kernel (minKernel) and the machine (archMap): change one and it is another file. The
    # file starts with that key, checked when it is read: the name is only a short checksum
    # of it (hashlib would cost `lab run` 6 ms of OpenSSL start-up).
    uname = os.uname()
    key = b"\0".join([zlib.crc32(raw).to_bytes(4, "big") + len(raw).to_bytes(4, "big"),
                      " ".join(sorted(_cap_names(capabilities))).encode(),
                      uname.release.encode(), uname.machine.encode()]) + b"\n"
    cached = cache_dir / f"{zlib.crc32(key):08x}.bpf"
    try:
        content = cached.read_bytes()
        if content.startswith(key):
            return content[len(key):]
    except FileNotFoundError:
        pass
    program = compile_filter(_parse(raw, spec), capabilities)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    tmp.write_bytes(key + program)
    os.replace(tmp, cached)
    return program


def compile_filter(profile: dict, capabilities: set[str]) -> bytes:
    """The BPF program (struct sock_filter[], as bytes) that enforces profile on this host."""
    capabilities = _cap_names(capabilities)
    lib = _libseccomp()
    default = _action(profile.get("defaultAction"), profile.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise LabError(f"seccomp_init({profile.get('defaultAction')}) failed: is libseccomp too old?")
    try:
        # The runtime sets no_new_privs itself (or not, for --privileged): libseccomp must not.
        _seccomp_check(lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0), "seccomp_attr_set", "CTL_NNP", 0)
        for arch in _architectures(profile):
            _add_arch(lib, ctx, arch)
        for rule in profile.get("syscalls") or []:
            try:
                if _applies(rule, capabilities):
                    _add_rule(lib, ctx, rule, default)
            except (KeyError, TypeError, AttributeError, ValueError) as e:
                raise LabError(f"seccomp profile: a rule in \"syscalls\" is malformed ({type(e).__name__}: "
                               f"{e}): compare it with docker's default.json") from None
        return _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)


def install(program: bytes) -> None:
    """Hand a compiled filter to the kernel: from now on it judges every call of this thread.

    The kernel accepts it only with no_new_privs set, or with CAP_SYS_ADMIN.
    """
    syscalls.seccomp_filter(program)


def _profile_bytes(spec: str | dict | None) -> bytes | None:
    if spec == "unconfined":
        return None
    if isinstance(spec, dict):
        return json.dumps(spec).encode()   # bytes, as the cache key hashes the profile's bytes
    path = pathlib.Path(spec) if spec else DEFAULT_PROFILE
    try:
        return path.read_bytes()
    except OSError as e:
        raise LabError(f"seccomp profile {path}: {e.strerror}: give the path of a JSON profile, "
                       "or 'unconfined'") from None


def _parse(raw: bytes, spec: str | dict | None) -> dict:
    name = "given" if isinstance(spec, dict) else spec or DEFAULT_PROFILE
    try:
        profile = json.loads(raw)
    except ValueError as e:
        raise LabError(f"seccomp profile {name} is not valid JSON ({e}): "
                       "fix it, or start from docker's default.json") from None
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise LabError(f"seccomp profile {name} has no \"defaultAction\": "
                       "it must be a JSON object in docker's format, like docker's default.json")
    return profile


def _cap_names(capabilities: set[str]) -> set[str]:
    # Profiles say "CAP_SYS_ADMIN"; docker's flags accept "SYS_ADMIN" too.
    return {name if name.startswith("CAP_") else "CAP_" + name for name in capabilities}


def _libseccomp() -> ctypes.CDLL:
    # Loaded here, not at import: a cached filter never needs it.
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        raise LabError("libseccomp.so.2 not found: install libseccomp2 (apt-get install "
                       "libseccomp2), or run the container with seccomp 'unconfined'") from None
    ctx = ctypes.c_void_p
    lib.seccomp_init.restype = ctx
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctx]
    lib.seccomp_attr_set.argtypes = [ctx, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.argtypes = [ctx, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctx, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctx, ctypes.c_int]
    return lib


def _seccomp_check(result: int, call: str, *args) -> int:
    # libseccomp returns -errno instead of setting errno.
    if result < 0:
        shown = ", ".join(repr(a) for a in args)
        raise OSError(-result, f"{call}({shown}): {os.strerror(-result)}")
    return result


def _action(name: str, errno: int | None) -> int:
    if name not in ACTIONS:
        raise LabError(f"seccomp profile: unknown action {name!r}: use one of {', '.join(ACTIONS)}")
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        # Like runc: a refused call fails with EPERM unless the profile names another errno.
        return ACTIONS[name] | ((EPERM if errno is None else errno) & 0xFFFF)
    return ACTIONS[name]


def _architectures(profile: dict) -> list[str]:
    """The host's ABIs, as the profile names them: an x86_64 kernel also runs x86 and x32
    programs, each with its own syscall numbers, and the filter needs a branch for each."""
    if profile.get("architectures"):
        return profile["architectures"]
    native = "SCMP_ARCH_" + os.uname().machine.upper()
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == native:
            return [native] + (entry.get("subArchitectures") or [])
    return []


def _add_arch(lib: ctypes.CDLL, ctx, arch: str) -> None:
    token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
    if token == 0:
        return  # an architecture this libseccomp does not know: nothing of ours runs on it
    result = lib.seccomp_arch_add(ctx, token)
    if result != -EEXIST:  # a new context already has the native architecture
        _seccomp_check(result, "seccomp_arch_add", arch)


def _applies(rule: dict, capabilities: set[str]) -> bool:
    """Docker's conditions: a rule may count only on some arches, kernels, or capability sets.
    Any one `excludes` that holds drops the rule; every `includes` must hold to keep it."""
    excludes, includes = rule.get("excludes") or {}, rule.get("includes") or {}
    if HOST_ARCH in (excludes.get("arches") or []):
        return False
    if capabilities & set(excludes.get("caps") or []):
        return False
    if excludes.get("minKernel") and _kernel_at_least(excludes["minKernel"]):
        return False
    if includes.get("arches") and HOST_ARCH not in includes["arches"]:
        return False
    if not set(includes.get("caps") or []) <= capabilities:
        return False
    return not includes.get("minKernel") or _kernel_at_least(includes["minKernel"])


def _kernel_at_least(version: str) -> bool:
    # Like docker, only major.minor count: "6.1.0-18-amd64" is 6.1.
    return syscalls.KERNEL >= tuple(int(n) for n in version.split(".")[:2])


def _add_rule(lib: ctypes.CDLL, ctx, rule: dict, default: int) -> None:
    action = _action(rule.get("action"), rule.get("errnoRet"))
    if action == default:
        return  # it would change nothing, and libseccomp refuses it (EACCES)
    for name in rule.get("names") or [rule["name"]]:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number == NR_SCMP_ERROR:
            continue  # not a system call libseccomp knows: no program can make it
        for comparisons in _comparison_sets(rule.get("args") or []):
            array = (_ArgCmp * len(comparisons))(*comparisons)
            result = lib.seccomp_rule_add_array(ctx, action, number, len(comparisons), array)
            _seccomp_check(result, "seccomp_rule_add", rule["action"], name, *rule.get("args") or [])


def _comparison_sets(args: list[dict]) -> list[list[_ArgCmp]]:
    """One rule with all argument checks ANDed, as the profile means. But libseccomp takes
    one check per argument in a rule, so when two name the same argument, runc makes one
    rule per check, and so do we (they are then ORed)."""
    checks = []
    for arg in args:
        if arg["op"] not in COMPARISONS:
            raise LabError(f"seccomp profile: unknown op {arg['op']!r}: use one of {', '.join(COMPARISONS)}")
        checks.append(_ArgCmp(arg["index"], COMPARISONS[arg["op"]], arg["value"], arg.get("valueTwo", 0)))
    indexes = [arg["index"] for arg in args]
    if len(set(indexes)) < len(indexes):
        return [[check] for check in checks]
    return [checks]


def _export(lib: ctypes.CDLL, ctx) -> bytes:
    # libseccomp writes the program to a file descriptor; a memfd is a file in memory only.
    fd = os.memfd_create("seccomp-bpf")
    try:
        _seccomp_check(lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)
