"""The course checks itself: a chapter test that passes without the learner's code checks nothing.

(That the committed lab/ is exactly the generated skeleton is checked by
`tools/make_skeleton.py --check`, which CI runs: a learner's edited lab/ must not fail `make test`.)

For every chapter NN, with a freshly generated skeleton (in a temporary folder, never your lab/):
- every one of chapter NN's tests fails with everything blank, and with only chapter NN blank;
- they all pass, and notebook NN too, with chapters 00..NN solved and the later ones blank:
  what a learner who has just finished chapter NN has. (That the complete reference passes them all is what
  `make test` runs: the chapters under LAB_IMPL=solutions.)

The skeleton checks are here; the finished chapter's tests in test_course_finished.py and its
notebook in test_course_notebooks.py. Each of the three takes about 45 s, and `make test`'s
parallel sessions take a file at a time: three files run side by side where one would take
the longest session 2.5 minutes alone.

In the course VM (tools/vm-test), the skeleton and finished-chapter checks run only for the
chapters in VERSIONED (the skeleton's with only that chapter blank), and the others not at all
(tests/conftest.py's left_to_the_host): CI's host run does them, and the emulated CPU is 5 to 20 times slower.
"""
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import make_skeleton  # noqa: E402

from chapters.harness import LAB, ROOT, wait_until  # noqa: E402

CHAPTERS = sorted(p for p in (ROOT / "chapters").iterdir() if p.is_dir() and p.name[:2].isdigit())


def finished(chapter: Path, tmp_path: Path) -> Path:
    """What a learner who has just finished chapter NN has: chapters 00..NN solved, the later ones blank
    (the folder to give as LAB_IMPL)."""
    later = {c for c in make_skeleton.chapters_in() if c > chapter.name[:2]}
    make_skeleton.make_skeleton(tmp_path / "impl" / "lab", chapters=later)
    return tmp_path / "impl"


def passing_tests(impl: Path, tests: Path, tmp_path: Path) -> list[str]:
    """Run the tests at `tests` with LAB_IMPL=impl; return the ids of those that passed."""
    report = tmp_path / f"report-{tests.name}.xml"
    env = {**os.environ, "LAB_IMPL": str(impl)}
    env.pop("PYTHONPATH", None)
    # (--tb=no: only the report is read; formatting each failure's traceback took a fifth of a session)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "--tb=no", f"--junitxml={report}", str(tests)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert report.exists(), run.stdout + run.stderr
    cases = ET.parse(report).getroot().iter("testcase")
    results = [(c.get("name"), [child.tag for child in c]) for c in cases]
    assert results, f"no test ran in {tests}:\n{run.stdout}"
    return [name for name, outcome in results if not {"failure", "error", "skipped"} & set(outcome)]


def test_the_drift_check_notices_a_lab_that_is_not_the_generated_skeleton(tmp_path):
    make_skeleton.make_skeleton(tmp_path / "lab")
    assert make_skeleton.drift(tmp_path / "lab") == []
    (tmp_path / "lab" / "process.py").write_text("# edited\n")
    (tmp_path / "lab" / "extra.py").write_text("")
    assert make_skeleton.drift(tmp_path / "lab") == ["extra.py", "process.py"]


def test_what_the_course_vm_runs_is_there(in_the_vm):
    # (a name misspelt in IN_THE_VM would leave that test to nobody: the VM skips what it lacks)
    for module, names in in_the_vm.items():
        defined = set(re.findall(r"^def (test_\w+)", (ROOT / "tests" / module).read_text(), re.M))
        assert set(names or ()) <= defined, f"{module} has no {sorted(set(names) - defined)}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
@pytest.mark.parametrize("blank", ["all chapters blank", "only this chapter blank"])
def test_every_chapter_test_fails_on_the_skeleton(chapter, blank, tmp_path):
    only = {chapter.name[:2]} if blank.startswith("only") else None
    make_skeleton.make_skeleton(tmp_path / "impl" / "lab", chapters=only)
    assert passing_tests(tmp_path / "impl", chapter, tmp_path) == []


def test_the_check_catches_a_test_that_cannot_fail(tmp_path):
    vacuous = tmp_path / "chapters" / "99_vacuous"
    vacuous.mkdir(parents=True)
    (vacuous / "test_vacuous.py").write_text("def test_nothing():\n    assert True\n")
    make_skeleton.make_skeleton(tmp_path / "impl" / "lab")
    assert passing_tests(tmp_path / "impl", vacuous, tmp_path) == ["test_nothing"]


def test_the_generator_refuses_a_block_that_is_never_closed():
    with pytest.raises(SystemExit, match="no END SOLUTION"):
        make_skeleton.blank("def f():\n    # BEGIN SOLUTION 00\n    return 1\n", "m.py", None)


def test_the_generator_refuses_a_hint_inside_a_solution_block():
    # the skeleton drops the whole block: a hint written inside it would never reach the learner
    with pytest.raises(SystemExit, match="HINT: line inside BEGIN SOLUTION 03"):
        make_skeleton.blank("def f():\n    # BEGIN SOLUTION 03\n    # HINT: mount it\n    pass\n"
                            "    # END SOLUTION\n", "x.py", None)


def test_the_generator_asks_a_nudge_of_every_gap_and_keeps_deeper_hints_out():
    with pytest.raises(SystemExit, match="no # HINT: line above BEGIN SOLUTION 02"):
        make_skeleton.blank("def f():\n    # HINT 2: the answer\n    # BEGIN SOLUTION 02\n    pass\n"
                            "    # END SOLUTION\n", "x.py", None)
    skeleton = make_skeleton.blank("def f():\n    # HINT: a nudge\n    # HINT 2: the idea\n    # BEGIN SOLUTION 02\n"
                                   "    pass\n    # END SOLUTION\n", "x.py", None)
    assert "a nudge" in skeleton and "the idea" not in skeleton
    assert all(len(gap.hints) >= 2 for gap in make_skeleton.gaps()), "every gap: a nudge, then more"


def course_tool(impl: Path, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "LAB_IMPL": str(impl)}
    env.pop("PYTHONPATH", None)
    return subprocess.Popen([LAB, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_lab_hint_gives_the_next_gap_one_level_more_each_time(tmp_path):
    make_skeleton.make_skeleton(tmp_path / "lab", {"01", "02"})
    gap = next(g for g in make_skeleton.gaps() if g.chapter == "01")        # the first one left blank
    said = [course_tool(tmp_path, "hint").communicate(timeout=30)[0] for _ in range(len(gap.hints) + 1)]
    assert said[0].startswith(f"chapter 01: {gap.name}() in lab/{gap.module}   (hint 1 of {len(gap.hints)})")
    first, deepest = " ".join(gap.hints[1])[:40], " ".join(gap.hints[max(gap.hints)])[:40]
    assert first in said[0] and deepest not in said[0]
    assert first in said[-2] and deepest in said[-2] and "the last hint" in said[-2]
    assert said[-1] == said[-2]                                 # the last level stays the last
    (tmp_path / "lab" / gap.module).write_text((ROOT / "solutions" / "lab" / gap.module).read_text())
    nxt = course_tool(tmp_path, "hint").communicate(timeout=30)[0]   # written: the next gap, from its nudge
    assert nxt.startswith("chapter 02: Cgroup.join() in lab/cgroups.py   (hint 1 of")
    here, other = ("V2", "V1") if Path("/sys/fs/cgroup/cgroup.controllers").exists() else ("V1", "V2")
    for asked, shown in (("stats", here), (f"Cgroup{other}.stats", other)):    # this machine's manager first
        said = course_tool(tmp_path, "hint", asked).communicate(timeout=30)[0]
        assert said.startswith(f"chapter 02: Cgroup{shown}.stats() in lab/cgroups.py"), said


def test_a_skipped_chapter_s_note_never_goes_into_a_container_s_log(tmp_path):
    """The child's stderr is a pipe: a note it writes there (chapter 08's apply() not written,
    the rest of it written) is copied to lab's terminal in the foreground, and would go into the
    log of a detached container (whose supervisor was forked from a lab on a terminal): the
    supervisor notes nothing."""
    import shutil
    shutil.copytree(ROOT / "solutions" / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    security = tmp_path / "lab" / "security.py"
    security.write_text(security.read_text() + "\n\ndef apply(*args, **kwargs):\n"
                        "    raise NotImplementedError('chapter 08: write apply()')\n")
    env = {**os.environ, "LAB_IMPL": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    for args in (["run", "--rm", "--network", "none", "busybox", "echo", "hi"],
                 ["run", "-d", "--name", "noted", "--network", "none", "busybox", "echo", "hi"]):
        shown = subprocess.run(["script", "-qec", " ".join([LAB, *args]), "/dev/null"], env=env, capture_output=True,
                               text=True, timeout=60).stdout
        if "-d" not in args:                     # (the foreground's, on lab's terminal)
            assert "chapter 08 (security) is not written yet" in shown, shown
    try:
        wait_until(lambda: subprocess.run([LAB, "inspect", "-f", "{{.State.Status}}", "noted"], env=env,
                                          capture_output=True, text=True).stdout == "exited\n", what="noted ended")
        logs = subprocess.run([LAB, "logs", "noted"], env=env, capture_output=True, text=True, timeout=60)
        assert (logs.stdout, logs.stderr) == ("hi\n", ""), logs.stdout + logs.stderr
        subprocess.run([LAB, "run", "-d", "--name", "noted-exec", "--network", "none", "busybox", "sleep", "60"], env=env,
                       capture_output=True, timeout=60)
        for flags in ("", "-t "):          # (exec's helper's note: through the command's stderr pipe; with -t,
            shown = subprocess.run(["script", "-qec", f"{LAB} exec {flags}noted-exec echo there", "/dev/null"], env=env,
                                   capture_output=True, text=True, timeout=60).stdout      # through a pipe of its own)
            assert "chapter 08 (security) is not written yet" in shown and "there" in shown, (flags, shown)
    finally:
        subprocess.run([LAB, "rm", "-f", "noted", "noted-exec"], env=env, capture_output=True)


def one_unwritten(tmp_path: Path, module: str, function: str, chapter: str) -> Path:
    """The reference with one function as the skeleton has it, not written yet (in tmp_path/lab):
    a learner half way through its chapter. Returns the folder to give as LAB_IMPL."""
    import shutil
    shutil.copytree(ROOT / "solutions" / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    ours = tmp_path / "lab" / module
    def body(text: str) -> str:
        found = re.search(rf"\ndef {function}\(.*?(?=\n\n\n)", text, re.S)
        assert found, f"no function {function}() in lab/{module}"
        return found.group(0)
    unwritten = body(make_skeleton.blank(ours.read_text(), module, {chapter}))
    assert "raise NotImplementedError" in unwritten, f"{function}() is no exercise of chapter {chapter}"
    ours.write_text(ours.read_text().replace(body(ours.read_text()), unwritten))
    return tmp_path


def test_a_half_written_chapter_03_stops_and_says_what_to_write(tmp_path):
    """A learner half way through chapter 03: enter(), pivot_root() and mount_kernel_filesystems()
    written, make_dev() not. The child has made the image its / before it meets make_dev(), so
    chapter 03 can no longer be skipped: lab stops there and says what to write. (It noted
    "chapter 03 is not written yet: running without it", then ran on with an empty /dev until
    chapter 08's masks failed on a missing /dev/null.)"""
    env = {**os.environ, "LAB_IMPL": str(one_unwritten(tmp_path, "rootfs.py", "make_dev", "03"))}
    for name in ("PYTHONPATH", "LAB_CHAPTER"):
        env.pop(name, None)
    run = subprocess.run(["script", "-qec", f"{LAB} run --rm --network none busybox ls /dev; echo status $?",
                          "/dev/null"], env=env, capture_output=True, text=True, timeout=60)
    assert "write make_dev() in lab/rootfs.py" in run.stdout and "status 125" in run.stdout, run.stdout
    assert "running without it" not in run.stdout, run.stdout
    left = subprocess.run([LAB, "ps", "-aq"], env=env, capture_output=True, text=True, timeout=60)
    assert left.stdout == "", left.stdout


def test_a_frame_not_written_yet_is_named_not_lost(tmp_path, monkeypatch):
    """Chapter 07 begun, frame() not written yet: docker run, docker exec and docker logs of a
    container without a terminal fail, docker logs saying what to write, and so does the
    daemon's log (docker's client shows no more than "unable to upgrade to tcp, received 500"
    for an attach or exec). The supervisor met the NotImplementedError before: docker run printed
    nothing and exited 0."""
    from chapters.harness import DOCKER, Daemon
    monkeypatch.setenv("LAB_IMPL", str(one_unwritten(tmp_path, "relay.py", "frame", "07")))
    for name in ("PYTHONPATH", "LAB_CHAPTER"):
        monkeypatch.delenv(name, raising=False)
    daemon = Daemon()

    def docker(*args):      # (not the harness's: it turns the "write ..." line this test expects into a failure)
        return subprocess.run([DOCKER, *args], env=daemon.env, capture_output=True, text=True, timeout=60)
    try:
        run = docker("run", "--rm", "--network", "none", "busybox", "echo", "hi")
        assert run.returncode != 0 and "hi" not in run.stdout, (run.returncode, run.stdout)
        assert "write frame() in lab/relay.py" in daemon.log.read_text(), daemon.log.read_text()
        started = docker("run", "-d", "--name", "unframed", "--network", "none", "busybox", "sleep", "60")
        assert started.returncode == 0, started.stderr
        exec_ = docker("exec", "unframed", "echo", "in")
        assert exec_.returncode != 0 and "in" not in exec_.stdout, (exec_.returncode, exec_.stdout)
        logs = docker("logs", "unframed")
        assert logs.returncode != 0 and "write frame() in lab/relay.py" in logs.stderr, logs.stderr
    finally:
        try:
            docker("rm", "-f", *docker("ps", "-aq").stdout.split())
        finally:
            daemon.close()


def test_lab_watch_runs_the_chapter_again_when_lab_changes_and_moves_on(tmp_path):
    make_skeleton.make_skeleton(tmp_path / "lab")            # all blank: a learner at chapter 00
    out = tmp_path / "watch.out"
    with open(out, "w") as sink:
        env = {**os.environ, "LAB_IMPL": str(tmp_path)}
        env.pop("PYTHONPATH", None)
        watch = subprocess.Popen([LAB, "watch"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "watching lab/" in out.read_text(), timeout=120, what="lab watch's first run",
                   seen=out.read_text)
        assert "chapter 00 process  [----------] 0/" in out.read_text()
        assert "not written yet" in out.read_text() or "write spawn() in lab/process.py" in out.read_text()
        (tmp_path / "process.py").write_text((ROOT / "solutions" / "lab" / "process.py").read_text())
        os.replace(tmp_path / "process.py", tmp_path / "lab" / "process.py")      # as an editor saves
        wait_until(lambda: "on to chapter 01" in out.read_text() and out.read_text().count("watching lab/") == 2,
                   timeout=240, what="lab watch: chapter 00 passing, then chapter 01's run", seen=out.read_text)
        text = out.read_text()
        assert "chapter 01 namespaces  [----------] 0/" in text and "write unshare_pid_namespace()" in text
    finally:
        watch.kill()
        watch.wait()


def test_a_runtime_without_chapter_01_changes_no_mount_it_shares(tmp_path):
    # Chapter 01 not written: the container shares lab's mount namespace, so a mount made in it
    # (chapter 08's masks, a read-only cgroupfs) would land on the host. Checked in a mount
    # namespace of this test's own, where such a mount stays if the runtime makes it.
    make_skeleton.make_skeleton(tmp_path / "lab", {"01"})
    env = {**os.environ, "LAB_IMPL": str(tmp_path), "LAB_CHAPTER": "00"}
    env.pop("PYTHONPATH", None)
    script = (f"cat /proc/self/mountinfo > {tmp_path}/before; {LAB} run --rm --network none busybox true; "
              f"echo status $?; cat /proc/self/mountinfo > {tmp_path}/after")
    run = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         env=env, capture_output=True, text=True, timeout=60)
    before, after = ({line.split()[4] for line in (tmp_path / name).read_text().splitlines()} for name in ("before", "after"))
    assert after == before, f"mounts made in the namespace lab shares: {sorted(after - before)}"
    assert "status 0" in run.stdout, run.stderr
