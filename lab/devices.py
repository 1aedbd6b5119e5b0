"""Chapter 08: devices, which device files the container may use.

A device file is a door into a driver, and the door's name is not what matters: its type and
major:minor numbers are. A root process can mknod its own /dev/vda (block 254:0, the course
VM's disk) in any folder and read the host's disk through it, however small the /dev chapter
03 gave it. So at every mknod() and open() of a device the kernel asks the cgroup: may you do
this to that device? Containers get docker's allow-list: the harmless character devices (null, zero,
random, tty, ptys...), mknod of any device (images may carry device files; they stay unusable),
nothing else. cgroup v1 has files for it: "a" to devices.deny, one rule a line to
devices.allow. cgroup v2 has no device files: the cgroup runs a small BPF program the runtime
writes itself, which reads the type, the access and the numbers and answers 1 (allow) or 0.
See the kernel's Documentation/admin-guide/cgroup-v1/devices.rst, the "Device controller"
section of Documentation/admin-guide/cgroup-v2.rst, man 2 bpf, and
Documentation/bpf/standardization/instruction-set.rst for the instructions.
"""
import ctypes
import os
import re
import struct
from pathlib import Path

from lab import LabError, syscalls

# A rule: (type, major, minor, access). Type "c" (character) or "b" (block); None is any
# number ("*"); access is some of "r" (read), "w" (write), "m" (mknod). Docker's default.
DEFAULT_RULES = [
    ("c", None, None, "m"),      # mknod any character device...
    ("b", None, None, "m"),      # ...or block device: the file is harmless, opening it is refused
    ("c", 1, 3, "rwm"),          # /dev/null
    ("c", 1, 5, "rwm"),          # /dev/zero
    ("c", 1, 7, "rwm"),          # /dev/full
    ("c", 1, 8, "rwm"),          # /dev/random
    ("c", 1, 9, "rwm"),          # /dev/urandom
    ("c", 5, 0, "rwm"),          # /dev/tty
    ("c", 5, 1, "rwm"),          # /dev/console
    ("c", 5, 2, "rwm"),          # /dev/ptmx
    ("c", 136, None, "rwm"),     # /dev/pts/*: the container's pseudo-terminals
    ("c", 10, 200, "rwm"),       # /dev/net/tun
]


def parse_rule(text: str) -> tuple:
    """docker run --device-cgroup-rule 'c 7:128 rwm' (v1's own line): one more rule."""
    m = re.fullmatch(r"([cb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})", text.strip())
    if not m or len(set(m[4])) != len(m[4]):
        raise LabError(f"invalid --device-cgroup-rule {text!r}: use TYPE MAJOR:MINOR ACCESS, e.g. 'c 7:128 rwm' "
                       "(TYPE c or b; * for any number; ACCESS some of r, w, m)")
    return m[1], None if m[2] == "*" else int(m[2]), None if m[3] == "*" else int(m[3]), m[4]


def rules(more=()) -> list[tuple]:
    """docker's default rules, and more (--device-cgroup-rule's, as typed)."""
    return DEFAULT_RULES + [parse_rule(text) for text in more]


def rule_text(rule) -> str:
    """A rule as cgroup v1 writes it: "c 1:3 rwm", "c 136:* rwm"."""
    kind, major, minor, access = rule
    return f"{kind} {'*' if major is None else major}:{'*' if minor is None else minor} {access}"


def allow_v1(folder: Path, rules, privileged: bool = False) -> None:
    """Give a cgroup v1 devices folder (new: no process in it yet) exactly these rules."""
    # A new folder starts with its parent's list, usually "a *:* rwm": everything.
    if privileged:
        _write(folder / "devices.allow", "a")
        return
    # HINT: v1's device controller keeps an allow list: start from nothing allowed, then allow each
    # HINT: rule.
    raise NotImplementedError("chapter 08: write allow_v1() in lab/devices.py: Give a cgroup v1 devices folder (new: no process in it yet) exactly these rules (see chapters/08_security/README.md, 'Your turn')")


def _write(path: Path, line: str) -> None:
    try:
        path.write_text(f"{line}\n")
    except OSError as e:
        # EPERM here: a cgroup cannot allow what its parent denies (lab inside a container?).
        raise OSError(e.errno, f"write({str(path)!r}, {line!r}): {os.strerror(e.errno)}") from None


# --- cgroup v2: a BPF program, built by hand -------------------------------------------------

# What the kernel tells the program (struct bpf_cgroup_dev_ctx, include/uapi/linux/bpf.h):
# access_type = (access << 16) | type, then major, then minor, three u32.
TYPES = {"b": 1, "c": 2}                 # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
ACCESS = {"m": 1, "r": 2, "w": 4}        # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
ALL_ACCESS = 1 | 2 | 4

# An instruction's opcode is its class | its operation | where the operand comes from.
BPF_LDX, BPF_ALU, BPF_JMP = 0x01, 0x04, 0x05     # classes: load from memory, 32-bit arithmetic, jump
BPF_MEM, BPF_W = 0x60, 0x00                      # load mode: from an address; size: a 32-bit word
BPF_AND, BPF_RSH, BPF_MOV = 0x50, 0x70, 0xb0     # arithmetic operations
BPF_JNE, BPF_EXIT = 0x50, 0x90                   # jump operations
BPF_K, BPF_X = 0x00, 0x08                        # operand: the number in the instruction, or a register
R0, R1, R2, R3, R4, R5 = range(6)                # r0: the answer; r1: the context, on entry

NEXT_RULE = "next rule"     # a jump's target, until rule_block() knows how far away that is


def ldx_w(dst, src, off):
    return (BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)     # dst = the u32 at address src + off


def mov_reg(dst, src):
    return (BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)       # dst = src


def mov_imm(dst, value):
    return (BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, value)     # dst = value


def and_imm(dst, value):
    return (BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, value)     # dst = dst & value


def rsh_imm(dst, bits):
    return (BPF_ALU | BPF_RSH | BPF_K, dst, 0, 0, bits)      # dst = dst >> bits


def jne_imm(dst, value, skip):
    return (BPF_JMP | BPF_JNE | BPF_K, dst, 0, skip, value)  # if dst != value: skip that many instructions


def exit_():                                                 # (exit is a Python builtin)
    return (BPF_JMP | BPF_EXIT, 0, 0, 0, 0)                  # return r0 to the kernel


def device_program(rules) -> list[tuple]:
    """The program: 1 (allow) as soon as a rule matches the access, 0 (deny) if none does."""
    program = [
        ldx_w(R2, R1, 0),       # r2 = ctx->access_type, (access << 16) | type
        mov_reg(R3, R2),        # r3 = the same,
        rsh_imm(R3, 16),        #      shifted right 16 bits: r3 = the access (mknod 1, read 2, write 4)
        and_imm(R2, 0xFFFF),    # r2 = its low 16 bits: the type (block 1, char 2)
        ldx_w(R4, R1, 4),       # r4 = ctx->major
        ldx_w(R5, R1, 8),       # r5 = ctx->minor
    ]
    for rule in rules:
        program += rule_block(rule)
    program += [
        mov_imm(R0, 0),         # no rule matched: r0 = 0, the kernel answers EPERM
        exit_(),
    ]
    return program


def rule_block(rule) -> list[tuple]:
    """One rule's instructions: on a match answer 1, else go on to the next rule's."""
    kind, major, minor, access = rule
    refused = ALL_ACCESS & ~sum(ACCESS[a] for a in access)    # e.g. "m" refuses read and write
    # HINT: each rule is a few eBPF instructions that compare the device being opened with the rule,
    # HINT: and jump to the next rule at the first difference.
    raise NotImplementedError("chapter 08: write rule_block() in lab/devices.py: One rule's instructions: on a match answer 1, else go on to the next rule's (see chapters/08_security/README.md, 'Your turn')")
    # A jump skips instructions counted from the one after it: the next rule starts right
    # after this block's last instruction.
    return [_resolve(insn, len(block) - i - 1) for i, insn in enumerate(block)]


def _resolve(insn, distance: int) -> tuple:
    code, dst, src, off, imm = insn
    return (code, dst, src, distance if off == NEXT_RULE else off, imm)


def assemble(program) -> bytes:
    """The bytes the kernel loads: struct bpf_insn {u8 code; u8 dst:4, src:4; s16 off; s32 imm}."""
    # dst is the low half of the register byte on little-endian machines (x86_64, aarch64).
    return b"".join(struct.pack("<BBhi", code, dst | src << 4, off, imm)
                    for code, dst, src, off, imm in program)


def allow_v2(folder: Path, rules, privileged: bool = False) -> None:
    """Attach to a cgroup v2 folder the BPF program that allows exactly these rules."""
    if privileged:
        return                  # no program: nothing is checked
    prog_fd = load_program(assemble(device_program(rules)))
    try:
        attach_program(prog_fd, folder)
    finally:
        os.close(prog_fd)       # the cgroup holds the program now; it goes away with the cgroup


# --- the bpf(2) system call (glibc has no wrapper) --------------------------------------------

BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
# Let the processes' own programs in sub-cgroups run too (docker in the container): they can
# only deny more, since every program on the way up must say yes. runc attaches the same way.
BPF_F_ALLOW_MULTI = 2
LOG_SIZE = 1 << 16

class ProgLoadAttr(ctypes.Structure):
    """The start of union bpf_attr for BPF_PROG_LOAD; the kernel takes the rest as zeros."""
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16)]


class ProgAttachAttr(ctypes.Structure):
    """union bpf_attr for BPF_PROG_ATTACH."""
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32)]


def load_program(code: bytes) -> int:
    """Load a BPF_PROG_TYPE_CGROUP_DEVICE program: its file descriptor."""
    insns = ctypes.create_string_buffer(code, len(code))
    licence = ctypes.create_string_buffer(b"Apache-2.0")
    attr = ProgLoadAttr(prog_type=BPF_PROG_TYPE_CGROUP_DEVICE, insn_cnt=len(code) // 8,
                        insns=ctypes.addressof(insns), license=ctypes.addressof(licence),
                        prog_name=b"lab_devices")     # the name bpftool shows
    what = f"BPF_PROG_LOAD, BPF_PROG_TYPE_CGROUP_DEVICE, {attr.insn_cnt} instructions"
    try:
        return syscalls.bpf(BPF_PROG_LOAD, attr, what)
    except OSError as refused:
        err = refused.errno
    # The verifier explains a refusal only when asked to: load again with a log buffer.
    log = ctypes.create_string_buffer(LOG_SIZE)
    attr.log_level, attr.log_size, attr.log_buf = 1, LOG_SIZE, ctypes.addressof(log)
    try:
        return syscalls.bpf(BPF_PROG_LOAD, attr, what)        # it worked the second time: keep it
    except OSError:
        said = log.value.decode(errors="replace").strip()
    raise OSError(err, f"bpf({what}): {os.strerror(err)}" + (f"; the verifier says:\n{said}" if said else ""))


def attach_program(prog_fd: int, folder: Path) -> None:
    """Attach a loaded device program to a cgroup v2 folder."""
    cgroup_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        attr = ProgAttachAttr(target_fd=cgroup_fd, attach_bpf_fd=prog_fd,
                              attach_type=BPF_CGROUP_DEVICE, attach_flags=BPF_F_ALLOW_MULTI)
        syscalls.bpf(BPF_PROG_ATTACH, attr, f"BPF_PROG_ATTACH, {str(folder)!r}, BPF_CGROUP_DEVICE")
    finally:
        os.close(cgroup_fd)
