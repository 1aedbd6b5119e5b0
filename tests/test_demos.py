"""`make demo CHAPTER=NN`: each chapter's live demo (chapters/NN_*/demo.txt) runs as written, and
`make demo`'s tour (tools/demo.sh) too.

tools/demo.sh shows each line, runs it, and exits 1 when one of them failed: an instructor's
demo that breaks in front of a class is caught here first (with the reference runtime, in the
session's LAB_ROOT and network namespace).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chapters.harness import ROOT, children, wait_until

DEMOS = sorted(ROOT.glob("chapters/*/demo.txt"))


def test_every_chapter_has_a_demo():
    chapters = sorted(p.name for p in (ROOT / "chapters").iterdir() if p.is_dir() and p.name[:2].isdigit())
    assert [p.parent.name for p in DEMOS] == chapters


@pytest.mark.parametrize("demo", [*DEMOS, None], ids=lambda p: p.parent.name[:2] if p else "tour")
def test_the_demo_runs_as_written(demo, tmp_path):
    # (None: `make demo` alone, the tour whose transcript the README shows)
    # (chapter 10's logs in to a registry: docker's config.json goes to a folder of the test's)
    env = {**os.environ, "VENV": str(Path(sys.executable).parent.parent), "DEMO_TYPING": "0",
           "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    run = subprocess.run(["bash", str(ROOT / "tools" / "demo.sh"), *([demo.parent.name[:2]] if demo else [])],
                         env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    # What a demo started in the background (07's daemon) was stopped by it, and is ending.
    wait_until(lambda: all(state == "Z" for state, _ in children().values()), timeout=10,
               what="the demo's background processes ending")
    assert "$ lab run" in run.stdout or "$ DOCKER_HOST" in run.stdout
