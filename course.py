"""The course's own tools, beside the runtime you write (not in it): `lab progress`, `lab hint`
and `lab watch`. The `lab` command (lab_impl.py) hands them to this module before it loads
your lab/.

- `lab progress` runs the chapters' tests quietly (in this process, with pytest) and shows
  each chapter as done, in progress (passed/total) or not started, then the next thing to write.
  A chapter you have not started yet is counted, not run (see progress()).
- `lab hint [NAME]` shows the hints of your next unwritten function (or of NAME), one level
  more each time: the skeleton keeps the first, the reference's `# HINT 2:` ... lines the rest.
- `lab watch [NN]` runs the current chapter's tests again each time a file in lab/ changes,
  and moves on to the next chapter once it passes.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))
import make_skeleton  # noqa: E402   (the one reader of solution blocks and their hints)

BAR = 24
SLOWEST = ("02", "09", "04", "05")   # the chapters whose tests take 4 to 8 s (on the reference), slowest first


USAGE = {"progress": "lab progress          run the chapters' tests on your lab/: how far you are, and what to write next",
         "hint": "lab hint [NAME]       a hint for your next unwritten function (or NAME); again for the next one",
         "watch": "lab watch [NN]        run chapter NN's tests (or your current chapter's) each time lab/ changes"}


def main(tool: str, args: list[str], package: Path) -> int:
    """`lab progress`, `lab hint [NAME]` or `lab watch [NN]` with its arguments (lab_impl.py
    hands them over, with the lab package in use)."""
    usage = "usage: " + USAGE[tool]
    if args[:1] in (["-h"], ["--help"]):
        print(usage)
        return 0
    if len(args) > (tool != "progress") or any(a.startswith("-") for a in args):
        print(f"lab {tool}: unexpected {' '.join(args)!r}\n{usage}", file=sys.stderr)
        return 2
    return progress(package=package) if tool == "progress" else hint(args, package) if tool == "hint" else watch(args, package)


class Collector:
    """A pytest plugin that keeps each test's outcome and first failure message."""

    def __init__(self):
        self.failures: dict[str, str] = {}
        self.tests: list[str] = []
        self.said: dict[str, str] = {}      # what lab (or its daemon) said, for each failure
        self.paths: dict[str, Path] = {}    # each test's file
        self.order: dict[str, int] = {}     # each test's place in its file
        self.root = ROOT

    def pytest_configure(self, config):
        self.root = config.rootpath         # (what reports' locations are relative to)
        config.option.tbstyle = "line"      # only a failure's first line is shown: no traceback to format

    def pytest_xdist_node_collection_finished(self, node, ids):   # (pytest -n: the workers collect)
        for nodeid in ids:
            self.order.setdefault(nodeid, len(self.order))

    def in_folder(self, folder: Path) -> list[str]:
        """The tests that ran from files under folder, in order (parallel sessions report
        them as they finish)."""
        found = [t for t in self.tests if folder in self.paths[t].parents]
        return sorted(found, key=lambda t: self.order.get(t, len(self.order)))

    def add(self, nodeid: str, path: Path, failure: str | None = None, said: str = "") -> None:
        """A test seen (run, counted, or a file that did not import), and its first failure."""
        if nodeid not in self.tests:
            self.tests.append(nodeid)
            self.paths[nodeid] = path
        if failure is not None and nodeid not in self.failures:
            self.failures[nodeid] = failure
            self.said[nodeid] = said

    def pytest_itemcollected(self, item):
        """(--collect-only: a test of a chapter not started, counted without running it)"""
        if item.config.option.collectonly:
            self.order.setdefault(item.nodeid, len(self.order))
            self.add(item.nodeid, Path(item.path), "not started")

    def pytest_collectreport(self, report):
        """A test file that does not import (a syntax error in lab/process.py, say): one failure,
        in its file's place, whose message says where the error is."""
        if report.failed and report.nodeid not in self.tests:
            lines = [line.removeprefix("E").strip() for line in str(report.longrepr).splitlines()]
            where = next((line for line in reversed(lines) if line.startswith('File "')), "")
            self.order[report.nodeid] = -1                    # (first in its chapter)
            self.add(report.nodeid, self.root / report.nodeid, f"{lines[-1]}, {where}" if where else lines[-1])

    def pytest_runtest_logreport(self, report):
        failure, said = None, ""
        if report.failed:
            unfinished = dict(report.user_properties).get("not written yet")
            crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", "")   # the error's own words
            text = (crash or str(report.longrepr)).strip().splitlines()
            failure = unfinished or (text[0 if crash else -1] if text else "failed")
            said = "\n".join(body for name, body in report.sections if name.startswith("what lab"))
        self.add(report.nodeid, self.root / report.location[0], failure, said)


def bar(done: int, total: int, width: int = BAR) -> str:
    filled = round(width * done / total) if total else 0
    return "#" * filled + "-" * (width - filled)


CHAPTERS = sorted(p for p in (ROOT / "chapters").iterdir() if p.is_dir() and p.name[:2].isdigit())


def load_pytest(tool: str):
    if sys.flags.no_site:             # the `lab` command starts without site: pytest lives there
        import site
        site.main()
    if os.geteuid() != 0:
        sys.exit(f"lab {tool} runs the chapter tests, which need root: sudo -E $(which lab) {tool}")
    import pytest
    return pytest


def not_started(chapters: list[Path], package: Path | None) -> list[Path]:
    """The chapters none of whose functions is written in package yet: each still raises the
    skeleton's NotImplementedError (as `lab hint` sees it), in order."""
    if package is None:
        return []
    todo = set(make_skeleton.unwritten(package))
    gaps = make_skeleton.gaps()
    begun = {g.chapter for g in gaps if (g.chapter, g.module, g.name) not in todo}
    blank = {g.chapter for g in gaps} - begun
    return [c for c in chapters if c.name[:2] in blank]


def does_not_compile(package: Path | None) -> tuple[str, str] | None:
    """The first file of the lab package that Python cannot compile, and why (a SyntaxError, an
    IndentationError): lab imports all its modules, so every test would fail on it, and most
    would not say why."""
    for file in sorted(package.glob("*.py")) if package else []:
        try:
            compile(file.read_bytes(), str(file), "exec")
        except (SyntaxError, ValueError) as e:          # (ValueError: a NUL byte in it)
            shown = file.relative_to(ROOT) if ROOT in file.parents else file
            where = f", line {e.lineno}" if isinstance(e, SyntaxError) else ""
            return str(shown), f'{type(e).__name__}: {getattr(e, "msg", e)}, File "{file}"{where}'
    return None


def progress(chapters: list[Path] = CHAPTERS, package: Path | None = None) -> int:
    """`lab progress` over chapters, for the lab package at package (lab_impl.py says which)."""
    pytest = load_pytest("progress")
    if importlib.util.find_spec("xdist") is None:
        print("lab progress: the venv has no pytest-xdist, which runs the chapters side by side: run `make setup`")
        return 1
    if broken := does_not_compile(package):
        print(f"lab progress: {broken[0]} does not compile, and every lab command imports it:\n  {broken[1]}\n"
              "Fix it, then run lab progress again.")
        return 1
    collector = Collector()
    # A chapter you have not started cannot pass a test (the course checks that every chapter's
    # tests fail on the skeleton): its tests are counted, not run. The first such chapter runs,
    # since its first failure says what to write next. On the untouched lab/ that is chapter 00
    # alone: lab progress takes 1.2 to 1.5 s instead of 6.6 to 7.4 (2 CPUs).
    counted = not_started(chapters, package)[1:]
    chapters_run = [c for c in chapters if c not in counted]
    # Chapters side by side in parallel sessions (pytest-xdist, a file at a time), the slowest
    # started first. Two sessions per CPU, at most 4: a test spends much of its time waiting (for
    # a container to start or end, for the kernel), when another session can use the CPU. On 2
    # CPUs, with the reference: 16 s; 21 s with one session per CPU, the chapters in their order.
    sessions = min(4, 2 * len(os.sched_getaffinity(0)), len(chapters_run))
    slowest_first = sorted(chapters_run, key=lambda c: SLOWEST.index(c.name[:2]) if c.name[:2] in SLOWEST else len(SLOWEST))
    code = pytest.main([str(c) for c in slowest_first] + ["-p", "no:terminal", "-n", str(sessions),
                                                          "--dist", "loadfile", "--no-loadscope-reorder"], plugins=[collector])
    if counted:
        pytest.main([str(c) for c in counted] + ["--collect-only", "-p", "no:terminal"], plugins=[collector])
    if not collector.tests:
        print(f"lab progress: no chapter test ran (pytest exit status {code}): try pytest chapters")
        return 1
    which = "the reference (solutions/lab)" if os.environ.get("LAB_IMPL") == "solutions" else "your lab/"
    print(f"lab progress: {which}, chapter by chapter\n")
    done, next_up = 0, None
    for chapter in chapters:
        tests = collector.in_folder(chapter)
        failed = [t for t in tests if t in collector.failures]
        passed = len(tests) - len(failed)
        state = "done" if tests and not failed else "not started" if passed == 0 else "in progress"
        number, _, topic = chapter.name.partition("_")
        print(f"  {number} {topic:<12} [{bar(passed, len(tests), 10)}] {passed:>2}/{len(tests):<2}  {state}")
        done += state == "done"
        if failed and next_up is None:
            next_up = (chapter, failed[0], collector.failures[failed[0]])
    print(f"\n  [{bar(done, len(chapters))}] {done} of {len(chapters)} chapters done\n")
    if next_up is None:
        print("Every chapter passes. Your runtime runs containers: lab run busybox sh -c 'echo I am PID $$'")
        return 0
    chapter, test, message = next_up
    where = chapter.relative_to(ROOT) if ROOT in chapter.parents else chapter
    print(f"Next: {test}\n  {message}\n  Read {where / 'README.md'}, then check with: pytest {where}")
    return 0


# lab hint

def hint(args: list[str], package: Path) -> int:
    """`lab hint [NAME]` for the lab package at package (lab_impl.py says which)."""
    # Chapter 02 has a manager for each cgroup version: the one of the machine the course runs on
    # comes first, and alone when lab hint chooses (`lab hint CgroupV2.stats` still shows the other).
    other = "CgroupV1." if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "CgroupV2."
    reference = sorted(make_skeleton.gaps(), key=lambda g: g.name.startswith(other))
    todo = [t for t in make_skeleton.unwritten(package) if not t[2].startswith(other)]
    if args:
        wanted = args[0].removesuffix("()")
        chosen = [g for g in reference if g.name == wanted or g.name.endswith("." + wanted)
                  or f"{g.module.removesuffix('.py')}.{g.name}" == wanted]
        if not chosen:
            names = ", ".join(sorted({g.name.split(".")[-1] for g in reference}))
            print(f"lab hint: no exercise is called {args[0]!r}; the exercises: {names}")
            return 1
        open_ones = [g for g in chosen if (g.chapter, g.module, g.name) in todo]
        gap = (open_ones or chosen)[0]
        others = [f"{g.module.removesuffix('.py')}.{g.name}" for g in chosen if g is not gap]
    elif todo:
        gap, others = next(g for g in reference if (g.chapter, g.module, g.name) == todo[0]), []
    else:
        print("lab hint: every exercise in lab/ is written. If a chapter still fails, `lab progress` "
              "shows its first failing test; `lab hint NAME` shows the hints of one function.")
        return 0
    shown_file = package.parent / ".lab-hints.json"
    try:
        shown = json.loads(shown_file.read_text())
    except (OSError, ValueError):
        shown = {}
    key = f"{gap.module}:{gap.name}"
    levels = sorted(gap.hints)
    level = min(shown.get(key, 0) + 1, len(levels))
    shown[key] = level
    shown_file.write_text(json.dumps(shown, indent=1) + "\n")
    print(f"chapter {gap.chapter}: {gap.name}() in lab/{gap.module}   (hint {level} of {len(levels)})")
    for n in levels[:level]:
        print(textwrap.fill(" ".join(gap.hints[n]), 96, initial_indent=f"  {n}. ", subsequent_indent="     "))
    lesson = make_skeleton.lesson(gap.chapter)
    if level < len(levels):
        print(f"`lab hint` again for the next one. The lesson: {lesson}, 'Your turn'.")
    else:
        print(f"That was the last hint: the rest is yours to write. The lesson: {lesson}, 'Your turn'.")
    if others:
        print(f"(Also called so: {', '.join(others)}; `lab hint {others[0]}` shows its hints.)")
    return 0


# lab watch

def run_chapter(chapter: Path) -> dict:
    """Run one chapter's tests in a fresh process (your lab/ as it is now on disk): the tests,
    the failures in order, and what lab said for them."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        subprocess.run([sys.executable, __file__, "--report", out.name, str(chapter)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            return json.load(out)
        except ValueError:
            return {"tests": [], "failures": {}, "said": {}}


def snapshot(package: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in package.rglob("*.py")
            if "__pycache__" not in p.parts}


def watch(args: list[str], package: Path) -> int:
    """`lab watch [NN]` for the lab package at package (lab_impl.py says which)."""
    load_pytest("watch")
    numbers = [c.name[:2] for c in CHAPTERS]
    if args and args[0] not in numbers:
        print(f"lab watch: no chapter {args[0]!r}; the chapters: {' '.join(numbers)}")
        return 1
    todo = make_skeleton.unwritten(package)
    current = numbers.index(args[0] if args else todo[0][0] if todo else numbers[0])
    clear = "\033[H\033[2J" if sys.stdout.isatty() else ""
    try:
        while True:
            chapter = CHAPTERS[current]
            before = snapshot(package)            # (a change while the tests run: another run)
            began = time.monotonic()
            print(f"{clear}lab watch: running {chapter.relative_to(ROOT)} ...", flush=True)
            result = run_chapter(chapter)
            tests, failures = result["tests"], result["failures"]
            passed = len(tests) - len(failures)
            number, _, topic = chapter.name.partition("_")
            print(f"chapter {number} {topic}  [{bar(passed, len(tests), 10)}] {passed}/{len(tests)} passed"
                  f"  ({time.monotonic() - began:.1f} s)")
            if tests and not failures and current + 1 < len(CHAPTERS):
                later = [c for c, _, _ in make_skeleton.unwritten(package) if c > number]
                current = numbers.index(later[0]) if later else current + 1
                print(f"chapter {number} passes: on to chapter {numbers[current]}", flush=True)
                continue
            if not tests:
                print("  no test ran: try pytest " + str(chapter.relative_to(ROOT)))
            elif failures:
                test, message = next(iter(failures.items()))
                print(f"\nfirst failure: {test}\n  {message}")
                if said := result["said"].get(test):
                    print("  " + said.replace("\n", "\n  "))
            else:
                print("every chapter from here on passes")
            print("\nwatching lab/ for changes (Ctrl-C to stop; `lab hint` for a hint)", flush=True)
            while snapshot(package) == before:
                time.sleep(0.3)
    except KeyboardInterrupt:
        print()
        return 0


def report(out: str, chapter: str) -> int:
    """The child of run_chapter: run the chapter's tests, write what came of them to out."""
    pytest = load_pytest("watch")
    collector = Collector()
    pytest.main([chapter, "-p", "no:terminal", "-p", "no:cacheprovider"], plugins=[collector])
    failures = {t: collector.failures[t] for t in collector.tests if t in collector.failures}
    Path(out).write_text(json.dumps({"tests": collector.tests, "failures": failures, "said": collector.said}))
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--report"]:
    sys.exit(report(*sys.argv[2:4]))
