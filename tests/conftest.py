# The same harness as the chapters: LAB_IMPL, a private LAB_ROOT, root check, short failures.
import pytest

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


def pytest_collection_modifyitems(items):
    if not IN_COURSE_VM:
        return
    for item in items:
        why = HOST_ONLY.get(item.path.name) or HOST_ONLY_TESTS.get(getattr(item, "originalname", item.name))
        if why and item.path.parent.name == "tests":
            item.add_marker(pytest.mark.skip(reason=f"checked by CI's host run: {why}"))
