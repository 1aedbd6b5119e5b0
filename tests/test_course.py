"""The course checks itself: a chapter test that passes without the learner's code checks nothing.

(That the committed lab/ is exactly the generated skeleton is checked by
`tools/make_skeleton.py --check`, which CI runs: a learner's edited lab/ must not fail `make test`.)

For every chapter NN, with a freshly generated skeleton (in a temporary folder, never your lab/):
- every one of chapter NN's tests fails with everything blank, and with only chapter NN blank;
- they all pass, and notebook NN too, with chapters 00..NN solved and the later ones blank:
  what a learner who has just finished chapter NN has. (That the complete reference passes them all is what
  `make test` runs: the chapters under LAB_IMPL=solutions.)
"""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import make_skeleton  # noqa: E402

from chapters.harness import ROOT  # noqa: E402

CHAPTERS = sorted(p for p in (ROOT / "chapters").iterdir() if p.is_dir() and p.name[:2].isdigit())


def passing_tests(impl: Path, tests: Path, tmp_path: Path) -> list[str]:
    """Run the tests at `tests` with LAB_IMPL=impl; return the ids of those that passed."""
    report = tmp_path / f"report-{tests.name}.xml"
    env = {**os.environ, "LAB_IMPL": str(impl)}
    env.pop("PYTHONPATH", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", str(tests)],
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


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
@pytest.mark.parametrize("blank", ["all chapters blank", "only this chapter blank"])
def test_every_chapter_test_fails_on_the_skeleton(chapter, blank, tmp_path):
    only = {chapter.name[:2]} if blank.startswith("only") else None
    make_skeleton.make_skeleton(tmp_path / "impl" / "lab", chapters=only)
    assert passing_tests(tmp_path / "impl", chapter, tmp_path) == []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_a_learner_who_finished_a_chapter_passes_its_tests(chapter, tmp_path):
    later = {c for c in make_skeleton.chapters_in() if c > chapter.name[:2]}
    make_skeleton.make_skeleton(tmp_path / "impl" / "lab", chapters=later)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", str(chapter)],
                         cwd=tmp_path, env={**os.environ, "LAB_IMPL": str(tmp_path / "impl")},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_a_learner_who_finished_a_chapter_can_run_its_notebook(chapter, tmp_path):
    if os.environ.get("LAB_IN_COURSE_VM") == "1":    # set by tools/vm-test
        pytest.skip("checked by CI's host run; in the emulated VM it would add about 8 minutes "
                    "(the VM still runs every notebook on the reference)")
    later = {c for c in make_skeleton.chapters_in() if c > chapter.name[:2]}
    make_skeleton.make_skeleton(tmp_path / "impl" / "lab", chapters=later)
    notebook = sorted((ROOT / "notebooks").glob(f"{chapter.name[:2]}_*.ipynb"))
    assert notebook, f"chapter {chapter.name} has no notebook"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", str(notebook[0]), "--nbval"],
                         cwd=tmp_path, env={**os.environ, "LAB_IMPL": str(tmp_path / "impl")},
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:]


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
