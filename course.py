"""The course's own tools, beside the runtime you write (not in it): `lab progress`.

`lab progress` runs every chapter's tests quietly (in this process, with pytest) and shows
each chapter as done, in progress (passed/total) or not started, then the next thing to write.
The `lab` command (lab_impl.py) hands `lab progress` to this module before it loads your lab/.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

BAR = 24


class Collector:
    """A pytest plugin that keeps each test's outcome and first failure message."""

    def __init__(self):
        self.failures: dict[str, str] = {}
        self.tests: list[str] = []

    def pytest_runtest_logreport(self, report):
        if report.nodeid not in self.tests:
            self.tests.append(report.nodeid)
        if report.failed and report.nodeid not in self.failures:
            unfinished = dict(report.user_properties).get("not written yet")
            text = str(report.longrepr).strip().splitlines()
            self.failures[report.nodeid] = unfinished or (text[-1] if text else "failed")


def bar(done: int, total: int, width: int = BAR) -> str:
    filled = round(width * done / total) if total else 0
    return "#" * filled + "-" * (width - filled)


def progress() -> int:
    if sys.flags.no_site:             # the `lab` command starts without site: pytest lives there
        import site
        site.main()
    import pytest
    if os.geteuid() != 0:
        print("lab progress runs the chapter tests, which need root: sudo -E $(which lab) progress")
        return 1
    chapters = sorted(p for p in (ROOT / "chapters").iterdir() if p.is_dir() and p.name[:2].isdigit())
    collector = Collector()
    code = pytest.main([str(c) for c in chapters] + ["-p", "no:terminal"], plugins=[collector])
    if not collector.tests:
        print(f"lab progress: no chapter test ran (pytest exit status {code}): try pytest chapters")
        return 1
    which = "the reference (solutions/lab)" if os.environ.get("LAB_IMPL") == "solutions" else "your lab/"
    print(f"lab progress: {which}, chapter by chapter\n")
    done, next_up = 0, None
    for chapter in chapters:
        tests = [t for t in collector.tests if t.startswith(chapter.relative_to(ROOT).as_posix() + "/")]
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
    lesson = chapter.relative_to(ROOT) / "README.md"
    print(f"Next: {test}\n  {message}\n  Read {lesson}, then check with: pytest {chapter.relative_to(ROOT)}")
    return 0
