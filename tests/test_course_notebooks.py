"""The course checks itself: a learner who has just finished chapter NN can run notebook NN, with
the later chapters still blank (test_course.py says why these checks are in three files)."""
import json
import os
import re
import subprocess
import sys

import pytest
from test_course import CHAPTERS, finished, make_skeleton

from chapters.harness import ROOT


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_a_learner_who_finished_a_chapter_can_run_its_notebook(chapter, tmp_path):
    notebook = sorted((ROOT / "notebooks").glob(f"{chapter.name[:2]}_*.ipynb"))
    assert notebook, f"chapter {chapter.name} has no notebook"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", str(notebook[0]), "-p", "nbval", "--nbval"],
                         cwd=tmp_path, env={**os.environ, "LAB_IMPL": str(finished(chapter, tmp_path))},
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:]


def test_each_lesson_and_notebook_names_every_function_its_chapter_leaves_to_write():
    # A "Your turn" that names fewer functions than the skeleton leaves blank sends the learner
    # to the chapter's tests with work they were not told of (four notebooks once did).
    untold = []
    for gap in make_skeleton.gaps():
        chapter = next(c for c in CHAPTERS if c.name.startswith(gap.chapter))
        lesson = re.search(r"^## Your turn\n(.*?)(?=^## |\Z)", (chapter / "README.md").read_text(), re.S | re.M)
        notebook = next((ROOT / "notebooks").glob(f"{gap.chapter}_*.ipynb"))
        last_words = ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "markdown"][-1]
        name = "`" + gap.name.split(".")[-1]                    # (Cgroup.join: `join()`)
        untold += [f"{where} does not name {gap.name}()" for where, text in
                   ((f"{chapter.name}/README.md's Your turn", lesson[1] if lesson else ""),
                    (f"{notebook.name}'s last words", last_words)) if name not in text]
    assert not untold, "\n".join(untold)
