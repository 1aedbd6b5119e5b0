"""The lessons' shell sessions print what the lessons say they print.

Every ```console block of a checked lesson has a mark on the line before it:

    <!-- run: at chapter 00 -->       a learner's runtime with chapters 00..NN written, later ones blank
    <!-- run: on the skeleton -->     every chapter blank (a learner who has just cloned)
    <!-- run: on the reference -->    solutions/lab
    <!-- not run: WHY -->             a block that cannot run as a test (interactive, destructive...)

and may add `| varies: REGEX` (more than once) for what changes from run to run and is not
already a placeholder below. A lesson's blocks run in order in one bash, in the repository
(its commands are relative to it), as a learner would type them, with LAB_IMPL switched per
block and the busybox image already made; each command's output (stdout and stderr together) must match the lines under it:

  - a line `...` stands for any lines, none included;
  - ids and digests (12 to 64 hex digits), durations (0.88s, 31 ms) and pytest's ===/___ rulers
    match whatever the run prints there, and so do the parts a block's `varies` matches;
  - this repository's path reads /workshop and the venv's bin folder /workshop/.venv/bin, as in
    the course VM where the lessons were recorded.

LAB_RECORD_LESSONS=1 writes what a run printed into the lessons, where it differs (and the lesson
does not elide lines there with `...`); LAB_RECORD_LESSONS=all writes every output again, so that
the ids and pids a lesson shows are one run's throughout. `make vm-lessons` records the cgroup v2 lessons in the
course VM and copies them back; then read the diff.

The lessons in CHECKED are checked; the others are not converted yet (issue 20, item 2).
"""
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import make_skeleton  # noqa: E402

from chapters.harness import IN_COURSE_VM, ROOT, Terminal  # noqa: E402
from lab import cgroups  # noqa: E402

# The lessons checked, each with the cgroup version what it prints depends on: None for
# most; "v2" for those whose sessions show cgroup files, recorded in the course VM (cgroup v2,
# what learners have; the Makefile's V2_LESSONS lists them too): the VM checks those (and skips the others, which CI's host run checks:
# the VM's CPU is emulated),
# and a v1 host skips them.
CHECKED = {"chapters/00_process/README.md": None, "chapters/01_namespaces/README.md": None,
           "chapters/02_cgroups/README.md": "v2", "chapters/03_rootfs/README.md": None,
           "chapters/04_overlay/README.md": None, "chapters/05_volumes/README.md": None,
           "chapters/06_exec/README.md": "v2", "chapters/08_security/README.md": "v2", "README.md": None,
           "chapters/07_engine/README.md": None,
           "chapters/09_network/README.md": None, "chapters/10_images/README.md": None}
# Lessons whose sessions build networks: they run in a network namespace of their own, which
# plays the host, with an interface up0 (198.51.100.2/24) whose way out is 198.51.100.1.
# (Chapter 07's compose project makes a network: in a test session's namespace, where another
# LAB_ROOT's network may have the same subnet, its two containers could not reach each other.)
NETWORKED = {"chapters/07_engine/README.md", "chapters/09_network/README.md", "chapters/10_images/README.md"}
MARK = re.compile(r"<!-- (run: (?P<impl>at chapter \d\d|on the skeleton|on the reference)"
                  r"|not run: (?P<why>.+?))(?P<varies>( \| varies: .+?)*) -->")
PLACEHOLDERS = [r"\b[0-9a-f]{12,64}\b", r"\b\d+(\.\d+)?\s?m?s\b", r"={5,}", r"_{5,}"]
# A session runs in namespaces of its own, IPC and mount: the lessons write where a learner's
# machine has its things (lab's default /var/lib/lab, /tmp/jail, a message queue, the daemon's
# socket in /run/lab), and here those are folders of the test's, seen only by the session:
# /mnt is the test's tmp_path, /tmp its tmp/, /var/lib/lab its lab-root/ and /run/lab its
# run-lab/ (so lab runs without LAB_ROOT, as in a lesson).
# The folders given after tmp_path (this repository, the venv) stay where they are, also when
# they are below /tmp (a clone in /tmp, as CI makes).
PRIVATE = """set -e
mount --bind "$1" /mnt; shift
for keep in "$@"; do mkdir -p "/mnt/keep$keep"; mount --bind "$keep" "/mnt/keep$keep"; done
mount --bind /mnt/tmp /tmp
for keep in "$@"; do mkdir -p "$keep"; mount --bind "/mnt/keep$keep" "$keep"; done
mount --bind /mnt/lab-root /var/lib/lab
mount --bind /mnt/run-lab /run/lab
mount --bind /mnt/run-netns /run/netns
if [ -n "$LAB_LESSON_UPLINK" ]; then     # a network namespace of its own, whose way out is
    unset LAB_LESSON_UPLINK              # 198.51.100.1 (a second namespace, "outside")
    ip link set lo up
    ip netns add outside
    ip link add up0 type veth peer name up1 netns outside
    ip addr add 198.51.100.2/24 dev up0
    ip link set up0 up
    ip -n outside addr add 198.51.100.1/24 dev up1
    ip -n outside link set up1 up
    ip route add default via 198.51.100.1
fi
exec bash --norc --noprofile /mnt/session.sh"""
SEPARATOR = "@@ the next command @@"      # printed before each command, to cut the output apart


class Command:
    """One `$ ` line of a block (with its `> ` continuation lines) and the lines under it."""

    def __init__(self, block: "Block", text: str, first: int):
        self.block, self.text, self.output, self.first = block, text, [], first    # first: output's line index


class Block:
    def __init__(self, path: Path, line: int, mark: re.Match | None, body: list[str], indent: str):
        self.where = f"{path.relative_to(ROOT)}:{line}"
        self.mark, self.indent = mark, indent
        self.varies = re.findall(r" \| varies: (.+?)(?= \| varies: |$)", mark["varies"]) if mark else []
        self.commands: list[Command] = []
        for index, text in enumerate(body, line):         # (line: the index of the block's first line)
            if text.startswith("$ "):
                self.commands.append(Command(self, text[2:], index + 1))
            elif text.startswith("> ") and self.commands and not self.commands[-1].output:
                self.commands[-1].text += "\n" + text[2:]                  # a continued command
                self.commands[-1].first = index + 1
            elif self.commands:
                self.commands[-1].output.append(text)


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().split("\n")
    found = []
    for number, text in enumerate(lines):
        if text.strip() == "```console":                      # (indented too: a block in a list)
            indent = text[:len(text) - len(text.lstrip())]
            end = next(i for i in range(number + 1, len(lines)) if lines[i].strip() == "```")
            previous = lines[number - 1] if number else ""
            body = [line.removeprefix(indent) for line in lines[number + 1:end]]
            found.append(Block(path, number + 1, MARK.fullmatch(previous.strip()), body, indent))
    return found


def pattern(expected: list[str], varies: list[str]) -> re.Pattern:
    """The regex of a command's expected lines, with the placeholders above as wildcards."""
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        spans = sorted(m.span() for p in PLACEHOLDERS + varies for m in re.finditer(p, line) if m.end() > m.start())
        regex, at = "", 0
        for start, end in spans:
            if start < at:
                continue
            regex += re.escape(line[at:start]) + r"[^\n]+?"
            at = end
        parts.append(regex + re.escape(line[at:].rstrip()) + r"[ \t]*\n")
    return re.compile("".join(parts))


def implementation(mark: re.Match, tmp_path: Path) -> str:
    """LAB_IMPL for a block: its folder as the session sees it (tmp_path is its /mnt)."""
    impl = mark["impl"]
    if impl == "on the reference":
        return "solutions"
    chapters = make_skeleton.chapters_in()
    blank = set(chapters) if impl == "on the skeleton" else {c for c in chapters if c > impl[-2:]}
    folder = tmp_path / ("impl-" + impl.replace(" ", "-"))
    if not folder.exists():
        make_skeleton.make_skeleton(folder / "lab", chapters=blank)
    return f"/mnt/{folder.name}"


def below_tmp(*folders: Path) -> list[str]:
    """Those of the folders that are below /tmp and not inside another one of them."""
    found = sorted({str(f.resolve()) for f in folders if f.resolve().is_relative_to("/tmp")})
    return [f for f in found if not any(f != other and f.startswith(other + "/") for other in found)]


def normalized(output: str, tmp_path: Path) -> str:
    """The output as in the course VM: the repository at /workshop, the session's folders where
    the session sees them (mountinfo shows a bind mount's source by its real path)."""
    venv_bin = str(Path(sys.executable).parent)
    output = re.sub(r"\x1b\[[0-9;]*m", "", output)      # curl -I's bold header names: as they read
    output = output.replace(venv_bin, "/workshop/.venv/bin").replace(str(ROOT), "/workshop")
    for folder, seen in (("lab-root", "/var/lib/lab"), ("tmp", "/tmp"), ("", "/mnt")):
        output = output.replace(str(tmp_path / folder).rstrip("/"), seen)
    return "".join(line.rstrip() + "\n" for line in output.removesuffix("\n").split("\n"))


def test_every_block_of_a_checked_lesson_is_marked():
    unmarked = [b.where for lesson in CHECKED for b in blocks(ROOT / lesson) if not b.mark]
    assert not unmarked, ("these console blocks have no <!-- run: ... --> or <!-- not run: why --> "
                          f"on the line before them: {', '.join(unmarked)}")


def not_checked_here(lesson: str) -> str | None:
    """Why this machine does not check the lesson; None when it does."""
    if IN_COURSE_VM and not CHECKED[lesson]:
        return "what this lesson prints does not depend on the cgroup version: CI's host run checks it"
    if CHECKED[lesson] and cgroups.version() != CHECKED[lesson]:
        return (f"this lesson shows cgroup {CHECKED[lesson]}'s files, as in the course VM "
                f"(`make vm-test` checks it); this machine has cgroup {cgroups.version()}")
    return None


def lesson_showing_it_pass(chapter: str) -> str | None:
    """The lesson checked here whose session runs `pytest chapters/<chapter>` at that chapter and
    shows every test passing: what test_course_finished.py checks, so it need not run it again."""
    for lesson in CHECKED:
        if not_checked_here(lesson):
            continue
        for block in blocks(ROOT / lesson):
            if block.mark and block.mark["impl"] == f"at chapter {chapter[:2]}" and any(
                    c.text == f"pytest chapters/{chapter}" and c.output and re.fullmatch(r"=+ \d+ passed in \S+ =+", c.output[-1])
                    for c in block.commands):
                return lesson
    return None


@pytest.mark.quotes_lab
@pytest.mark.parametrize("lesson", CHECKED)
def test_the_lesson_prints_what_it_says(lesson, tmp_path, lesson_mount_points):
    if not_checked_here(lesson):
        pytest.skip(not_checked_here(lesson))
    runnable = [b for b in blocks(ROOT / lesson) if b.mark and b.mark["impl"]]
    assert runnable, f"{lesson} has no block to run"
    # A learner has made the busybox image by the time a lesson runs lab (its first run makes it).
    script = ["cd " + str(ROOT), "exec 2>&1", "LAB_IMPL=solutions lab run --rm busybox true >/dev/null"]
    commands = [c for block in runnable for c in block.commands]
    for command in commands:
        if command is command.block.commands[0]:
            script.append(f"export LAB_IMPL={implementation(command.block.mark, tmp_path)}")
        script += [f"echo '{SEPARATOR}'", command.text]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "PYTHONUNBUFFERED": "1", "DOCKER_CONFIG": "/mnt/docker-config", "TERM": "dumb"}
    # (vm-test's --durations=25 among PYTEST_ADDOPTS; a parallel session's own cgroup parent, which
    # the lesson's paths would show, in LAB_CGROUP_PARENT)
    for name in ("PYTHONPATH", "LAB_ROOT", "PYTEST_ADDOPTS", "LAB_CGROUP_PARENT"):
        env.pop(name, None)
    (tmp_path / "session.sh").write_text("\n".join(script) + "\n")
    for folder in ("tmp", "lab-root", "run-lab", "run-netns"):      # (mounted over lesson_mount_points)
        (tmp_path / folder).mkdir()
    # On a terminal of 24 x 80, as the lessons were recorded: lab's notes, ls's columns and
    # pytest's layout depend on it (TERM=dumb turns the colours off).
    if lesson in NETWORKED:
        env["LAB_LESSON_UPLINK"] = "1"
    session = Terminal([shutil.which("unshare"), "--ipc", "--mount", "--propagation", "private",
                        *(["--net"] if lesson in NETWORKED else []),
                        "sh", "-c", PRIVATE, "sh", str(tmp_path), *below_tmp(ROOT, Path(sys.prefix))],
                       env, rows=24, cols=80)
    session.close(timeout=600)
    output = session.text
    shown = normalized(output, tmp_path).split(SEPARATOR + "\n")[1:]
    assert len(shown) == len(commands), f"the session stopped early:\n{output[-2000:]}"
    wrong = [(c, printed) for c, printed in zip(commands, shown)
             if not pattern(c.output, c.block.varies).fullmatch(printed)]
    if os.environ.get("LAB_RECORD_LESSONS") == "all":     # every output again, from this one run: one
        record(ROOT / lesson, list(zip(commands, shown)))  # session's ids and pids throughout
    elif wrong and os.environ.get("LAB_RECORD_LESSONS") == "1":
        record(ROOT / lesson, wrong)
    if wrong:                                        # every difference at once, in the lesson's order
        pytest.fail("\n\n".join(f"{c.block.where}: `{c.text}` printed\n{printed}\nbut the lesson shows\n"
                                + "\n".join(c.output) for c, printed in wrong), pytrace=False)


def record(lesson: Path, wrong: list) -> None:
    """LAB_RECORD_LESSONS=1: write what the run printed into the lesson, in place of what it
    showed, except where the lesson elides lines with `...` (those are left for you to edit)."""
    lines = lesson.read_text().split("\n")
    for command, printed in reversed(wrong):
        if "..." not in (line.strip() for line in command.output):
            lines[command.first:command.first + len(command.output)] = [
                (command.block.indent + line).rstrip() for line in printed.removesuffix("\n").split("\n") if printed]
    lesson.write_text("\n".join(lines))
