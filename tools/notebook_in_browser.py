#!/usr/bin/env python3
"""Run a notebook the way a learner does: in a real browser, through Jupyter's own page.

    tools/notebook_in_browser.py JUPYTER TOKEN NOTEBOOK SCREENSHOT
    e.g. tools/notebook_in_browser.py http://localhost:8888 workshop notebooks/00_process.ipynb nb.png

JUPYTER is the Jupyter server whose root is this repository (in the course VM, /workshop),
NOTEBOOK a notebook's path in it; its stored outputs are what nbval checks in `make test`. A
headless Chromium logs in with the token, finds the notebook in the folder's listing, opens it,
waits until its kernel has started and answered, and clicks Run > Run All Cells with the mouse.
Once every code cell shows its execution count, the page's outputs are compared with the stored
ones: the same text in every cell but those tagged nbval-ignore-output, and no error anywhere.
The page is saved as a PNG screenshot either way, and what it logged in its console next to it
(SCREENSHOT with .console.log). Against the course VM: `LAB_JUPYTER_IMPL=solutions vagrant up`,
then run this on your machine with http://localhost:8888 (the forwarded port; `apt-get install
chromium` first).

Chromium is driven by its DevTools protocol over a pipe (--remote-debugging-pipe: JSON messages
ending in a NUL byte on file descriptors 3 and 4), so nothing beyond the standard library is needed.
"""
import base64
import json
import re
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RUN_TIMEOUT = 900          # seconds for all cells; the course VM's CPU is emulated


class Browser:
    """A headless Chromium and one page in it, spoken to through the DevTools protocol."""

    def __init__(self, profile):
        to_browser, self._write = os.pipe()        # the browser reads fd 3...
        self._read, from_browser = os.pipe()       # ...and writes fd 4
        self.process = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--window-size=1280,1600", f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            start_new_session=True, pass_fds=(3, 4), preexec_fn=lambda: (os.dup2(to_browser, 3), os.dup2(from_browser, 4)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.session = None
        self.console = []           # what the page logged (its console, its uncaught errors)

    def send(self, method, **params):
        """One command; returns its result (of the events that arrive meanwhile, only the page's
        console messages are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("method") == "Runtime.consoleAPICalled":
                args = reply["params"].get("args", [])
                self.console.append(f"{time.strftime('%H:%M:%S')} {reply['params'].get('type')}: "
                                    + " ".join(str(a.get("value", a.get("description", ""))) for a in args)[:500])
            elif reply.get("method") == "Runtime.exceptionThrown":
                self.console.append(f"{time.strftime('%H:%M:%S')} exception: "
                                    + str(reply["params"]["exceptionDetails"].get("exception", {}).get("description", ""))[:500])
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply["result"]

    def _receive(self):
        while b"\0" not in self._buffer:
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe (did it crash?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def visit(self, url):
        if self.session is None:
            target = self.send("Target.createTarget", url=url)["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.send("Runtime.enable")
        else:
            self.send("Page.navigate", url=url)

    def js(self, expression):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"in the page: {result['exceptionDetails'].get('text')}: {expression[:80]}")
        return result["result"].get("value")

    def click(self, selector, text):
        """A real mouse click (moved, pressed, released) on the element with that text."""
        box = self.js(f"""(() => {{
            const e = [...document.querySelectorAll({json.dumps(selector)})]
                      .find(e => e.textContent.trim() === {json.dumps(text)});
            if (!e) return null;
            const r = e.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2];
        }})()""")
        if box is None:
            raise RuntimeError(f"nothing to click: no {selector} reads {text!r}")
        x, y = box
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def menu(self, title, entry):
        """Open a menu of the menu bar and click one of its entries, as a learner does."""
        self.click(".lm-MenuBar-itemLabel", title)
        self.wait_for(f"the {title} menu", "document.querySelector('.lm-Menu-content') !== null", 10)
        self.click(".lm-Menu-itemLabel", entry)
        self.wait_for(f"the {title} menu closed", "document.querySelector('.lm-Menu-content') === null", 10)

    def wait_for(self, what, expression, timeout, server_says=lambda: True):
        deadline = time.monotonic() + timeout
        while self.answer_kernel_dialog() or not self.js(expression) or not server_says():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page did not show {what} within {timeout} s")
            time.sleep(0.5)

    def answer_kernel_dialog(self) -> bool:
        """Jupyter sometimes asks which kernel to start (when its kernel list came late: the VM is
        slow), in a modal dialog that takes every click. A learner clicks Select (Python 3)."""
        if not self.js("document.querySelector('.jp-Dialog .jp-Dialog-header')?.textContent.includes('Select Kernel') === true"):
            return False
        print("notebook_in_browser: Jupyter asked which kernel to start: Select (Python 3)", flush=True)
        self.click(".jp-Dialog .jp-Dialog-button.jp-mod-accept", "Select")
        return True

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self):
        """Chromium's own shutdown, which ends its renderers too; then its process group."""
        self.session = None
        try:
            self.send("Browser.close")
            self.process.wait(timeout=10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


# Each code cell as the page shows it: its prompt ("[3]:", "[*]:") and its outputs, each with
# its MIME type and text. textContent, not innerText: cells scrolled out of view are not laid out.
CELLS = """[...document.querySelectorAll('.jp-Notebook .jp-Cell')].map(cell => ({
    code: cell.classList.contains('jp-CodeCell'),
    prompt: cell.querySelector('.jp-InputPrompt')?.textContent.trim() || '',
    outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => ({
        mime: o.dataset.mimeType || '', text: o.textContent }))
}))"""
# Run All has started: a code cell waits ([*]:) or has run.
STARTED = f"{CELLS}.some(c => c.code && c.prompt !== '[ ]:')"
# Run All has ended: the kernel is idle, no cell waits ([*]:), and either every code cell ran or
# one shows an error (Jupyter then leaves the cells after it unrun).
RUN_ENDED = f"""(() => {{
    const cells = {CELLS}.filter(c => c.code);
    return document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'
        && !cells.some(c => c.prompt === '[*]:')
        && (cells.every(c => /^\\[\\d+\\]:$/.test(c.prompt))
            || cells.some(c => c.outputs.some(o => o.mime === 'application/vnd.jupyter.stderr')));
}})()"""


def stored_text(cell):
    """What nbval compares: the text of the stored streams and text/plain results."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append("".join(output["text"]))
        elif "text/plain" in output.get("data", {}) and not {"image/png", "text/html"} & set(output["data"]):
            parts.append("".join(output["data"]["text/plain"]))
    return "".join(parts)


def compare(notebook, page_cells):
    """The differences between the stored notebook and the page, one line each."""
    problems = []
    stored = notebook["cells"]
    if len(page_cells) < len(stored):
        return [f"the page shows {len(page_cells)} cells, the notebook has {len(stored)}"]
    for number, (cell, shown) in enumerate(zip(stored, page_cells), 1):
        if cell["cell_type"] != "code":
            continue
        if not re.fullmatch(r"\[\d+\]:", shown["prompt"]):
            problems.append(f"cell {number} did not run (an earlier cell failed?)")
            continue
        errors = [o["text"] for o in shown["outputs"] if o["mime"] == "application/vnd.jupyter.stderr"]
        if errors:
            problems.append(f"cell {number} printed an error: {errors[0].strip()[-600:]}")
            continue
        if "nbval-ignore-output" in cell.get("metadata", {}).get("tags", []):
            continue
        text = "".join(o["text"] for o in shown["outputs"]
                       if o["mime"] in ("application/vnd.jupyter.stdout", "text/plain"))
        if text.rstrip() != stored_text(cell).rstrip():
            problems.append(f"cell {number} shows {text.strip()!r}, the notebook stores {stored_text(cell).strip()!r}")
    return problems


def kernel_states(jupyter, token, path):
    """The execution state of each kernel the server runs for the notebook at path (none known
    while the server is too busy to answer)."""
    try:
        with urllib.request.urlopen(f"{jupyter}/api/sessions?token={token}", timeout=30) as answer:
            sessions = json.load(answer)
    except OSError:
        return []
    return [s["kernel"]["execution_state"] for s in sessions if s.get("path") == path and s.get("kernel")]


def wait_for_server(jupyter, token, timeout=300):
    """Jupyter answers its API (in the course VM it starts slowly: the CPU is emulated)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{jupyter}/api/status?token={token}", timeout=10):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                sys.exit(f"notebook_in_browser: no Jupyter at {jupyter} after {timeout} s: {error}")
            time.sleep(1)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__.split("\n\n")[1])
    jupyter, token, notebook_path, screenshot = sys.argv[1:]
    notebook = json.loads(Path(notebook_path).read_text())
    code_cells = sum(c["cell_type"] == "code" for c in notebook["cells"])
    folder, name = notebook_path.rpartition("/")[::2]
    wait_for_server(jupyter, token)
    with tempfile.TemporaryDirectory(prefix="lab-chromium-") as profile:
        browser = Browser(profile)
        try:
            browser.visit(f"{jupyter}/tree/{folder}?token={token}")        # what a learner opens first
            browser.wait_for(f"{name} in the listing of {folder or 'the top folder'}", f"""
                [...document.querySelectorAll('.jp-DirListing-itemText')]
                .some(e => e.textContent.trim() === {json.dumps(name)})""", 120)
            browser.visit(f"{jupyter}/notebooks/{notebook_path}")             # what its link opens
            # Its kernel started and answered, one kernel, known to the page: cells run earlier would
            # each ask for a kernel of their own while the page still has none (a slow server).
            browser.wait_for("the notebook with its kernel started and idle", f"""
                document.querySelectorAll('.jp-Notebook .jp-CodeCell').length === {code_cells}
                && !['', 'No Kernel'].includes(document.querySelector('.jp-KernelName')?.textContent.trim() ?? '')
                && document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'""", 300,
                server_says=lambda: kernel_states(jupyter, token, notebook_path) == ["idle"])
            # Cleared first, so that the stored prompts ([1]:...) cannot pass for a finished run.
            browser.menu("Edit", "Clear Outputs of All Cells")
            browser.wait_for("the outputs cleared", f"{CELLS}.every(c => !c.code || c.prompt === '[ ]:')", 60)
            started = time.monotonic()
            browser.menu("Run", "Run All Cells")
            try:
                browser.wait_for("the first cell started", STARTED, 60)
                browser.wait_for("the run's end", RUN_ENDED, RUN_TIMEOUT)
            except TimeoutError as error:
                running = [n for n, c in enumerate(browser.js(CELLS), 1) if c["prompt"] == "[*]:"]
                where = f"cell {running[0]} still runs" if running else str(error)
                sys.exit(f"notebook_in_browser: {name}: {where} (screenshot {screenshot})")
            finally:
                browser.screenshot(screenshot)
            page_cells = browser.js(CELLS)
        finally:
            Path(screenshot).with_suffix(".console.log").write_text("".join(line + "\n" for line in browser.console))
            browser.close()
    problems = compare(notebook, page_cells)
    for problem in problems:
        print(f"notebook_in_browser: {name}: {problem}")
    if problems:
        sys.exit(1)
    print(f"notebook_in_browser: {name}: {code_cells} code cells run from the page's Run menu in "
          f"{time.monotonic() - started:.0f} s, outputs as stored; screenshot {screenshot}")


if __name__ == "__main__":
    main()
