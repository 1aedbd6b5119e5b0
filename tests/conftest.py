# The same harness as the chapters: LAB_IMPL, a private LAB_ROOT, root check, short failures.
import contextlib
import os
from pathlib import Path

import pytest

from chapters import conftest as harness
from chapters.conftest import *  # noqa: F401,F403
from chapters.harness import IN_COURSE_VM, ROOT, VERSIONED

# In the course VM (tools/vm-test sets LAB_IN_COURSE_VM=1) the CPU is emulated, 5 to 20 times
# slower than CI's host, which has run the whole suite just before. There the VM runs what can
# differ on its kernel (Debian 12's) and on cgroup v2: every chapter's tests (what a learner runs
# in it), the notebooks of the chapters in VERSIONED (notebook 00 runs in a browser before the
# suite), and of tests/ the modules and tests named here (None: the whole module), those about one
# chapter (the course's checks, the demos) for the chapters in VERSIONED only, and the lessons in
# CHECKED (test_lessons.py) that show cgroup v2. The rest
# checks names, files, images, the API, signals and terminals, the same on either cgroup version:
# CI's host run has them. (On a slow day of 2026-12 the VM's suite took 59 minutes with them.)
IN_THE_VM = {
    "test_course.py": {"test_every_chapter_test_fails_on_the_skeleton",
                       "test_a_runtime_without_chapter_01_changes_no_mount_it_shares"},
    "test_course_finished.py": None,
    "test_lessons.py": None,
    "test_demos.py": None,
    "test_docker_clients.py": {"test_docker_run_options_reach_the_container"},   # (--cpuset-cpus: v2's own code)
    "test_docker_operations.py": {
        "test_docker_top_lists_the_processes_of_the_container", "test_pause_freezes_every_process_and_unpause_lets_them_go_on",
        "test_docker_stats_shows_the_cgroups_counters", "test_a_device_cgroup_rule_lets_the_container_use_those_devices",
        "test_resource_options_reach_the_cgroup_and_the_process", "test_docker_update_changes_the_limits_of_a_running_container"},
    "test_crashes.py": {       # a start, a stop or a test run cut short: are its cgroups removed?
        "test_killing_lab_run_supervisors_and_imports_at_random_moments_leaves_nothing",
        "test_run_d_racing_rm_f_prints_no_traceback_and_leaves_no_supervisor",
        "test_a_container_whose_lab_run_was_killed_is_found_stopped_and_removed",
        "test_a_test_run_removes_the_cgroups_a_killed_run_left",
        "test_a_container_whose_supervisor_was_killed_gives_its_cgroup_back_and_starts_again"},
    "test_lifecycle.py": {     # many cgroups made at once; a container stopped or killed without its supervisor
        "test_twenty_containers_at_once", "test_stop_kills_what_ignores_sigterm_after_the_timeout",
        "test_a_killed_supervisor_leaves_the_container_reachable"},
}


@pytest.fixture
def in_the_vm():
    """IN_THE_VM, for test_course.py (`import conftest` may find another folder's conftest.py)."""
    return IN_THE_VM


def left_to_the_host(item) -> str | None:
    """Why the course VM skips this test (None: it runs it)."""
    if item.path.suffix == ".ipynb" and item.path.name[:2] not in VERSIONED:
        return ("what it shows does not depend on the cgroup version, and its chapter's tests run in the VM "
                "(notebook 00 also runs in a browser before the suite)")
    if item.path.parent.name != "tests":
        return None
    wanted = IN_THE_VM.get(item.path.name, set())
    if wanted is not None and getattr(item, "originalname", item.name) not in wanted:
        return "the same on either cgroup version"
    params = item.callspec.params if hasattr(item, "callspec") else {}
    about = params.get("chapter") or params.get("demo")         # a check of one chapter, or its demo
    if about and about.relative_to(ROOT / "chapters").parts[0][:2] not in VERSIONED:
        return "this chapter's code runs the same on either cgroup version, and its tests run in the VM"
    if params.get("blank") == "all chapters blank":
        return "with every chapter blank, a chapter's tests stop at an earlier chapter's gap before v2's code"
    return None


# make test runs the suite in parallel sessions (pytest-xdist, --dist loadfile): a module's tests
# go to one session and run in their order, as `pytest FILE` runs them (a notebook's cells share
# one kernel). Except the course's own checks: each of their tests is a whole run of its own (a
# lesson's shell session, a skeleton's or a finished chapter's tests, a notebook) and goes to the
# next free session. (Queued in one, the lessons took two minutes, the run's last 30 s alone.)
EACH_ON_ITS_OWN = {"test_lessons.py", "test_course.py", "test_course_finished.py", "test_course_notebooks.py"}
# The longest units start first, so that no session is left alone with one at the end; the rest
# follow in their order. Seconds of one run of make test (2026-12-04); only the order uses them.
LESSON = "tests/test_lessons.py::test_the_lesson_prints_what_it_says"
SLOWEST_FIRST = [
    f"{LESSON}[chapters/08_security/README.md]",    # in the course VM: 80 s (a v1 host skips
    f"{LESSON}[chapters/06_exec/README.md]",        # the cgroup v2 lessons), 77 s
    f"{LESSON}[chapters/02_cgroups/README.md]",     # 66 s
    "tests/test_docker_operations.py",              # on the host: 50 s
    "tests/test_docker_clients.py",                 # 33 s
    f"{LESSON}[chapters/00_process/README.md]",     # 27 s
    "tests/test_crashes.py",                        # 26 s
    "tests/test_registry.py",                       # 21 s
    f"{LESSON}[README.md]",                         # 21 s
    f"{LESSON}[chapters/04_overlay/README.md]",     # 21 s
    "tests/test_faults.py",                         # 17 s
    "tests/test_cli.py",                            # 17 s
    f"{LESSON}[chapters/05_volumes/README.md]",     # 17 s
    "tests/test_demos.py",                          # 16 s
]


def work_unit(nodeid: str) -> str:
    """What one session takes at a time: a module, or one test of EACH_ON_ITS_OWN's."""
    module = nodeid.split("::", 1)[0]
    return nodeid if Path(module).name in EACH_ON_ITS_OWN else module


def pytest_collection_modifyitems(items):
    rank = {unit: place for place, unit in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))     # (stable: the rest keep their order)
    if not IN_COURSE_VM:
        return
    for item in items:
        if why := left_to_the_host(item):
            item.add_marker(pytest.mark.skip(reason=f"checked by CI's host run: {why}"))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndCourseChecks(LoadScopeScheduling):     # (LoadFileScheduling is this, a module a unit)
        def _split_scope(self, nodeid):
            return work_unit(nodeid)

    return ModulesAndCourseChecks(config, log)


# The folders a lesson's shell session mounts folders of its own over (test_lessons.py): made
# when missing, and removed when the whole run ends, not when a lesson does: removing a folder
# detaches the mounts on it in every mount namespace, those of a lesson running in another
# session too (its daemon's socket in /run/lab was gone).
LESSON_MOUNT_POINTS = ("/var/lib/lab", "/run/lab", "/run/netns")


@pytest.fixture
def lesson_mount_points():
    for folder in LESSON_MOUNT_POINTS:
        os.makedirs(folder, exist_ok=True)


def pytest_configure(config):
    harness.pytest_configure(config)            # (this module's replaces the one imported above)
    if not hasattr(config, "workerinput"):      # the run's first process (not one of xdist's workers)
        config.lesson_mount_points_missing = [f for f in LESSON_MOUNT_POINTS if not os.path.isdir(f)]


def pytest_unconfigure(config):
    for folder in config.__dict__.pop("lesson_mount_points_missing", []):
        with contextlib.suppress(OSError):      # (never made, or in use by someone else: not empty)
            os.rmdir(folder)
    harness.pytest_unconfigure(config)
