"""`lab run` imports only what it runs (issue 15): every module outside the package that the
start path of `lab run --rm busybox true` loads is on the list below, with what it is for.
A module that joins the start path fails this test: import it inside the function that uses
it (as `lab run` does for the registry, the daemon, the supervisor), or add it here with its
reason. The time it costs is `make bench`'s business (`-X importtime` there), not a test's.
Nor do the commands that copy and delete nothing load shutil (it loads bz2 and lzma: 2 ms).
"""
import os
import subprocess
import sys

from chapters.harness import LAB

ALLOWED = {   # the first part of each module's name -> why lab run needs it (and what it pulls in)
    "argparse": "the command line",
    "json": "config.json, state.json, image configs",
    "pathlib": "the store's paths; pulls in fnmatch, ntpath, urllib.parse and ipaddress",
    "fnmatch": "pathlib", "ntpath": "pathlib", "urllib": "pathlib", "ipaddress": "pathlib, and chapter 09's addresses",
    "re": "names and ids (names.py), mountinfo; pulls in enum, functools, collections, operator, "
          "keyword, reprlib, types, copyreg",
    "enum": "re", "functools": "re", "collections": "re", "operator": "re", "keyword": "re",
    "reprlib": "re", "types": "re", "copyreg": "re", "itertools": "collections",
    "ctypes": "the kernel calls Python has no wrapper for (syscalls.py); pulls in struct",
    "struct": "ctypes, netlink messages, the BPF device program",
    "fcntl": "the store's locks", "signal": "passing signals on to the container",
    "errno": "telling kernel errors apart", "os": "everything", "stat": "os", "posixpath": "os",
    "genericpath": "os", "warnings": "the interpreter's own",
    "zlib": "the key of seccomp's filter cache (crc32)",
    "select": "copying the container's stdout and stderr to lab's (process.relay_pipes: poll)",
}
IGNORED = ("lab", "lab_impl", "encodings", "codecs", "io", "abc", "marshal", "posix", "time", "zipimport", "nt")


def imported(*args: str) -> set[str]:
    """The first part of the name of every module `lab ARGS` loads."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}            # (the harness's)
    run = subprocess.run([sys.executable, "-S", "-X", "importtime", LAB, *args], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in run.stderr.splitlines()
            if line.startswith("import time:") and "imported package" not in line}


def test_lab_run_imports_only_what_it_runs(lab):
    assert lab("run", "--rm", "--network", "none", "busybox", "true").returncode == 0   # busybox is there now
    loaded = imported("run", "--rm", "--network", "none", "busybox", "true")
    joined = sorted(name for name in loaded if not name.startswith("_") and name not in IGNORED and name not in ALLOWED)
    assert not joined, (f"modules new on lab run's start path: {joined}; import them where they are "
                        "used, or add them to ALLOWED with their reason")
    shown = subprocess.run([sys.executable, "-S", "-c", "import sys, lab.cli; print(sorted({'gettext', 'locale'} & set(sys.modules)))"],
                           cwd="/", capture_output=True, text=True, timeout=60)         # (PYTHONPATH: the lab tested)
    assert shown.stdout == "[]\n", f"lab.cli loads {shown.stdout.strip()}: cli.py hides it while argparse loads{shown.stderr}"


def test_the_commands_that_delete_nothing_leave_shutil_out(lab):
    assert lab("run", "--rm", "--network", "none", "busybox", "true").returncode == 0   # busybox is there now
    assert lab("volume", "create", "kept").returncode == 0
    for args in (["ps", "-a"], ["images"], ["volume", "ls"], ["inspect", "busybox"], ["volume", "inspect", "kept"]):
        assert not imported(*args) & {"shutil", "bz2", "lzma"}, f"lab {' '.join(args)} loads shutil: import it where it is used"
    assert lab("volume", "rm", "kept").returncode == 0
