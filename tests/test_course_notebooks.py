"""The course checks itself: a learner who has just finished chapter NN can run notebook NN, with
the later chapters still blank (test_course.py says why these checks are in three files)."""
import os
import subprocess
import sys

import pytest
from test_course import CHAPTERS, finished

from chapters.harness import IN_COURSE_VM, ROOT


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_a_learner_who_finished_a_chapter_can_run_its_notebook(chapter, tmp_path):
    if IN_COURSE_VM:
        pytest.skip("checked by CI's host run; in the emulated VM it would add about 8 minutes "
                    "(the VM still runs every notebook on the reference)")
    notebook = sorted((ROOT / "notebooks").glob(f"{chapter.name[:2]}_*.ipynb"))
    assert notebook, f"chapter {chapter.name} has no notebook"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", str(notebook[0]), "-p", "nbval", "--nbval"],
                         cwd=tmp_path, env={**os.environ, "LAB_IMPL": str(finished(chapter, tmp_path))},
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:]
