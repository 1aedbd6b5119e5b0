#!/usr/bin/env python3
"""Execute notebooks in place with the reference runtime, storing their outputs.

nbval (in `make test`) then checks that a fresh run prints the same, except in cells tagged
nbval-ignore-output (pids, times). Run after editing a notebook: make notebooks
"""
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

# Their containers get networks (chapter 09): the bridges and rules go in a network namespace
# of this run's own, as in `make test`, never on this machine's network.
if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:          # CLONE_NEWNET
    sys.exit(f"run_notebooks: no network namespace of its own: {os.strerror(ctypes.get_errno())} (run it as root)")
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
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
