"""The course checks itself: a learner who has just finished chapter NN can run notebook NN, with
the later chapters still blank (test_course.py says why these checks are in three files)."""
import os
import subprocess
import sys

import pytest
from test_course import CHAPTERS, finished

from chapters.harness import ROOT


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_a_learner_who_finished_a_chapter_can_run_its_notebook(chapter, tmp_path):
    notebook = sorted((ROOT / "notebooks").glob(f"{chapter.name[:2]}_*.ipynb"))
    assert notebook, f"chapter {chapter.name} has no notebook"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", str(notebook[0]), "-p", "nbval", "--nbval"],
                         cwd=tmp_path, env={**os.environ, "LAB_IMPL": str(finished(chapter, tmp_path))},
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:]
