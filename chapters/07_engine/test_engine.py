"""Chapter 07: the engine.   Check your work: pytest chapters/07_engine"""
import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

from chapters.harness import ended, wait_until


def test_start_runs_it_and_wait_answers_its_exit_status(daemon):
    cid = daemon.create({"Image": "busybox", "Cmd": ["sh", "-c", "exit 3"]})
    asked = daemon.connection()                     # not running yet: "not-running" answers at once
    asked.sock.settimeout(30)
    try:
        asked.request("POST", f"/v1.41/containers/{cid}/wait")
        answer = asked.getresponse()
        assert (answer.status, json.loads(answer.read())) == (200, {"StatusCode": 0, "Error": None})
    except TimeoutError:
        raise AssertionError("a wait (condition not-running) on a container never started did not answer") from None
    finally:
        asked.close()
    assert daemon.request("POST", f"/v1.41/containers/{cid}/start")[0] == 204
    assert daemon.request("POST", f"/v1.41/containers/{cid}/wait") == (200, {"StatusCode": 3, "Error": None})
    assert daemon.request("DELETE", f"/v1.41/containers/{cid}")[0] == 204
    cid = daemon.create({"Image": "busybox", "Cmd": ["no-such-command"]})
    assert daemon.request("POST", f"/v1.41/containers/{cid}/start")[0] == 400
    status, body = daemon.request("POST", f"/v1.41/containers/{cid}/wait")      # how it failed, as docker says
    error = (body.get("Error") or {}).get("Message", "") if status == 200 else ""
    assert status == 200 and body["StatusCode"] == 127 and "no-such-command" in error, \
        f"the wait after a failed start answered {body}: wait_container answers views.exit_of(c), its Error too"
    assert daemon.request("DELETE", f"/v1.41/containers/{cid}")[0] == 204


def test_a_wait_asked_before_the_start_sees_the_end(daemon):
    cid = daemon.create({"Image": "busybox", "Cmd": ["sh", "-c", "exit 5"]})
    waiting = daemon.connection()
    waiting.request("POST", f"/v1.41/containers/{cid}/wait?condition=next-exit")
    answer = waiting.getresponse()                  # its headers come at once: docker run goes on
    assert answer.status == 200
    assert daemon.request("POST", f"/v1.41/containers/{cid}/start")[0] == 204
    assert json.loads(answer.read()) == {"StatusCode": 5, "Error": None}     # its body, once it ended
    waiting.close()
    daemon.request("DELETE", f"/v1.41/containers/{cid}")
    # Its process has ended, and its supervisor (stopped here) has not recorded the end yet: a
    # "not-running" wait goes to the supervisor, which answers once it goes on.
    cid = daemon.create({"Image": "busybox", "Cmd": ["sleep", "30"]})
    assert daemon.request("POST", f"/v1.41/containers/{cid}/start")[0] == 204
    state = json.loads(Path(os.environ["LAB_ROOT"], "containers", cid, "state.json").read_text())
    os.kill(state["Supervisor"], signal.SIGSTOP)     # (lab's processes, started by this test)
    try:
        os.kill(state["Pid"], signal.SIGKILL)
        wait_until(lambda: ended(state["Pid"]), what="the end of the container's process")
        waiting = daemon.connection()
        waiting.request("POST", f"/v1.41/containers/{cid}/wait?condition=not-running")
        answer = waiting.getresponse()              # its headers: the engine has taken its course
    finally:
        os.kill(state["Supervisor"], signal.SIGCONT)
    assert json.loads(answer.read()) == {"StatusCode": 137, "Error": None}, (
        "a not-running wait answered before the end was recorded: wait_container answers at once only when "
        "c.state['Status'] is not 'running' (not c.is_running(): a process just ended has no status on disk yet)")
    waiting.close()
    wait_until(lambda: ended(state["Supervisor"]), what="the end of the container's supervisor")
    for condition in ("next-exit", "not-running"):  # no supervisor any more: the answer is its record's
        answer = daemon.request("POST", f"/v1.41/containers/{cid}/wait?condition={condition}")
        assert answer == (200, {"StatusCode": 137, "Error": None}), \
            f"a {condition} wait, the supervisor gone, answered {answer}: wait_container answers views.exit_of(c)"
    daemon.request("DELETE", f"/v1.41/containers/{cid}")
    # A container whose supervisor was killed (it ended with it): the wait answers from its record.
    cid = daemon.create({"Image": "busybox", "Cmd": ["sleep", "30"]})
    assert daemon.request("POST", f"/v1.41/containers/{cid}/start")[0] == 204
    state = json.loads(Path(os.environ["LAB_ROOT"], "containers", cid, "state.json").read_text())
    for pid in (state["Watcher"], state["Pid"]):
        os.kill(pid, signal.SIGKILL)                 # (lab's processes, started by this test)
    status, body = daemon.request("POST", f"/v1.41/containers/{cid}/wait")
    assert status == 200 and isinstance(body.get("StatusCode"), int), (status, body)
    daemon.request("DELETE", f"/v1.41/containers/{cid}?force=1")


FRAME = "frame() in lab/relay.py: the stream in 1 byte, 3 zero bytes, then the data's length in 4 bytes, big-endian"


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """Take a multiplexed stream apart as a docker client does; fail on a malformed header."""
    found = []
    while data:
        assert len(data) >= 8, f"a header of {len(data)} bytes: {data!r}. {FRAME}"
        stream, zeros, size = data[0], data[1:4], struct.unpack(">L", data[4:8])[0]
        assert stream in (1, 2) and zeros == b"\0\0\0" and size <= len(data) - 8, \
            f"not a frame header: {data[:8]!r}, then {len(data) - 8} bytes. {FRAME}"
        found.append((stream, data[8:8 + size]))
        data = data[8 + size:]
    return found


def test_output_comes_framed_stdout_and_stderr_apart(daemon):
    cid = daemon.create({"Image": "busybox", "Cmd": ["sh", "-c", "echo out; echo err >&2"]})
    attached = daemon.connection()                  # attach before the start, as docker run does
    attached.sock.sendall(f"POST /v1.41/containers/{cid}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\n"
                          "Host: lab\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += attached.sock.recv(4096) or b"(the connection closed)\r\n\r\n"
    head, output = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head                # hijacked: raw bytes from here on
    assert daemon.request("POST", f"/v1.41/containers/{cid}/start")[0] == 204
    while data := attached.sock.recv(4096):         # the supervisor hangs up when the container ends
        output += data
    attached.close()
    assert sorted(frames(output)) == [(1, b"out\n"), (2, b"err\n")], f"the attached client got {output!r}. {FRAME}"
    status, logs = daemon.request("GET", f"/v1.41/containers/{cid}/logs?stdout=1&stderr=1")
    assert status == 200 and sorted(frames(logs.encode())) == [(1, b"out\n"), (2, b"err\n")]
    both = daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (both.stdout, both.stderr) == ("out\n", "err\n")   # the docker CLI took them apart
    big = daemon.docker("run", "--rm", "busybox", "sh", "-c", "dd if=/dev/zero bs=300000 count=1 2> /dev/null")
    assert len(big.stdout) == 300000, f"docker run got {len(big.stdout)} of 300000 bytes, in pieces of 64 KiB. {FRAME}"
    daemon.request("DELETE", f"/v1.41/containers/{cid}")


def test_docker_run_drives_your_engine(daemon):
    hello = daemon.docker("run", "--rm", "busybox", "echo", "hello")
    assert (hello.returncode, hello.stdout) == (0, "hello\n"), hello.stderr
    assert daemon.docker("run", "--rm", "busybox", "sh", "-c", "exit 4").returncode == 4
    assert daemon.docker("ps", "-a", "-q").stdout == ""                  # --rm: removed once it ended


def test_only_root_may_talk_to_the_daemon(daemon):
    os.chmod(daemon.folder, 0o711)
    as_nobody = f"""
import os, socket
os.setgroups([]); os.setgid(int(os.environ["GID"])); os.setuid(65534)     # nobody, in group GID only
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({daemon.socket!r})
except PermissionError:
    print("refused by the socket's mode"); raise SystemExit
s.sendall(b"GET /_ping HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
print(s.recv(4096).decode().split("\\r\\n")[0])
"""
    run = lambda gid=65534: subprocess.run([sys.executable, "-c", as_nobody], env={**os.environ, "GID": str(gid)},
                                           capture_output=True, text=True, timeout=30)
    assert oct(os.stat(daemon.socket).st_mode & 0o777) == "0o660"
    assert run().stdout.strip() == "refused by the socket's mode"
    in_roots_group = run(0).stdout.strip()          # (the mode lets it in)
    assert in_roots_group == "HTTP/1.1 403 Forbidden", "nobody in root's group got in: peer_uid()?"
    os.chmod(daemon.socket, 0o666)                  # even then, the daemon asks the kernel who calls
    assert run().stdout.strip() == "HTTP/1.1 403 Forbidden"
    assert daemon.request("GET", "/_ping")[0] == 200                     # and root is welcome
