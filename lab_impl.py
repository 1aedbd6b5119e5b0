"""Which `lab` runs: the learner's `lab/` or the reference `solutions/lab/`.

LAB_IMPL=solutions selects the reference; unset (or LAB_IMPL=lab) selects the learner's code;
any other value names a folder that holds a `lab` package (the course's self-check points it
at a freshly generated skeleton). This is the one place that decides: the `lab` command, the
tests and the notebooks call activate(), which puts that folder first on sys.path and on
PYTHONPATH, so every subprocess they start sees the same code.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def folder() -> Path:
    """The folder whose `lab` package is in use."""
    impl = os.environ.get("LAB_IMPL") or "lab"
    if impl == "lab":
        return ROOT
    if impl == "solutions":
        return ROOT / "solutions"
    return Path(impl).resolve()


def activate() -> Path:
    where = folder()
    if not (where / "lab" / "__init__.py").is_file():
        sys.exit(f"lab: error: LAB_IMPL={os.environ.get('LAB_IMPL')!r}: no lab package in {where}"
                 " (use LAB_IMPL=solutions for the reference, or unset it for your lab/)")
    loaded = sys.modules.get("lab")
    if loaded is not None and Path(loaded.__file__).resolve().parent.parent != where:
        raise RuntimeError(f"lab was imported from {loaded.__file__} before LAB_IMPL was applied")
    if os.environ.get("LAB_IMPL") not in (None, "", "lab", "solutions"):
        os.environ["LAB_IMPL"] = str(where)      # subprocesses may start in another folder
    if sys.path[:1] != [str(where)]:
        sys.path.insert(0, str(where))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(where)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(where), *paths])
    return where


def main():
    """The `lab` console script."""
    where = activate()
    if sys.argv[1:2] in (["progress"], ["hint"], ["watch"]):   # the course's tools, not the runtime's
        import course
        try:
            status = course.main(sys.argv[1], sys.argv[2:], where / "lab")
            sys.stdout.flush()
        except BrokenPipeError:                 # lab progress | head: the reader left; that is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            status = 0
        sys.exit(status)
    from lab.cli import main as cli_main
    leave(cli_main())


def leave(status: int):
    """Exit with status, skipping Python's shutdown once the command is done.

    That shutdown takes every module apart and frees its objects one by one: 4 to 6 ms after
    every `lab` command here (of `lab run`'s 50; the README's "How fast is a container?"), for
    memory the kernel takes back whole anyway. Skipping it is safe once what was printed is
    flushed and no thread is still running; lab registers nothing to run at exit. A command
    that left a thread running (none does) gets the normal exit, which waits for it.
    """
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        sys.exit(status)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:             # lab ps | head: the reader left, as the runtime's main() says
        pass
    os._exit(status)
