# The same harness as the chapters: LAB_IMPL, a private LAB_ROOT, root check, short failures.
import contextlib
import os
from pathlib import Path

import pytest

from chapters import conftest as harness
from chapters.conftest import *  # noqa: F401,F403
from chapters.harness import IN_COURSE_VM

# In the course VM (tools/vm-test sets LAB_IN_COURSE_VM=1) the CPU is emulated, about six times
# slower than CI's host, which has run the whole suite just before. There the VM runs what can
# differ on its kernel and cgroup v2: the chapters, the notebooks, the lessons that show cgroup
# v2 and the modules of tests/ that drive cgroups (pause, stats, update, crash recovery, the
# demos). These modules' behaviour does not depend on the cgroup version: they run on the host only.
HOST_ONLY = {
    "test_build.py": "a build's RUN steps are containers like any other",
    "test_registry.py": "pulls, pushes and logins are HTTP and files",
    "test_faults.py": "bad names, paths, limits and requests are refused and change nothing",
    "test_cli.py": "the command line's errors and listings",
    "test_docker_clients.py": "the docker CLI and SDK through the engine (its cgroup operations: test_docker_operations)",
}

# And these tests of test_docker_operations.py, for the same reason (about 5 of its 10 minutes
# in the VM): what they check is files, names, images and the API, not the kernel's cgroups.
HOST_ONLY_TESTS = dict.fromkeys([
    "test_docker_rename_and_the_errors_clients_match_on", "test_commit_tag_history_and_run_the_new_image",
    "test_commit_and_import_with_changes_and_the_image_and_volume_filters",
    "test_prune_removes_what_nothing_uses_and_nothing_else", "test_docker_save_load_and_import_move_images_in_and_out",
    "test_docker_cp_both_ways_and_export_stay_inside_the_container", "test_docker_events_reports_what_happens_to_containers",
    "test_api_versions_up_to_1_47_and_what_changed_in_them", "test_entrypoint_replaces_the_images_entrypoint_and_command",
], "images, names, files and the API")
HOST_ONLY_TESTS.update(dict.fromkeys([
    "test_logs_tail_since_until_and_timestamps", "test_a_rotated_log_stays_under_its_limit_and_logs_reads_across_its_files",
    "test_logs_follow_goes_on_across_rotations"], "a container's log is files"))
HOST_ONLY_TESTS["test_fifty_concurrent_docker_runs_all_succeed_and_leave_nothing"] = (
    "the engine under load (cgroups made at once in the VM: test_lifecycle's twenty containers)")


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
        why = HOST_ONLY.get(item.path.name) or HOST_ONLY_TESTS.get(getattr(item, "originalname", item.name))
        if why and item.path.parent.name == "tests":
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
