#!/usr/bin/env python3
"""Execute notebooks in place with the reference runtime, storing their outputs.

nbval (in `make test`) then checks that a fresh run prints the same, except in cells tagged
nbval-ignore-output (pids, times). Run after editing a notebook: make notebooks
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

os.environ["LAB_IMPL"] = "solutions"
os.environ["LAB_ROOT"] = tempfile.mkdtemp(prefix="lab-root-notebooks-")     # never /var/lib/lab
try:
    for path in map(Path, sys.argv[1:] or sorted(Path(__file__).resolve().parent.parent.glob("notebooks/*.ipynb"))):
        notebook = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(notebook, path)
        print(f"ran {path}")
finally:
    shutil.rmtree(os.environ["LAB_ROOT"])      # also when a notebook fails
