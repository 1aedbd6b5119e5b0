"""Healthchecks (docker run --health-cmd ...): is the container's service working, not just
its process running?

Every interval, the container's supervisor runs the check's command inside the container, as
`lab exec` would. Exit status 0 is a success: the container is healthy. A failure counts
toward `retries`; that many in a row and it is unhealthy. Failures in the start period (the
first seconds after the start) do not count, but a success there makes it healthy at once. A
check that runs longer than its timeout is killed, and fails. The state goes to state.json
as docker shows it: State.Health = {"Status": "starting" | "healthy" | "unhealthy",
"FailingStreak": N, "Log": the last 5 checks}, and `ps` says "(healthy)". `docker events`
shows each check as an exec, as docker's does: exec_create, exec_start, exec_die.
"""
import os
import re
import time

from lab import LabError, store, views

SECOND = 10**9                               # docker gives the durations in nanoseconds
DEFAULTS = {"Interval": 30 * SECOND, "Timeout": 30 * SECOND, "StartPeriod": 0, "Retries": 3}
KEPT = 5                                     # checks in State.Health.Log
OUTPUT = 4096                                # bytes of a check's output kept


def duration(text: str, flag: str) -> int:
    """'30s', '1m30s', '500ms' -> nanoseconds (docker's duration syntax)."""
    units = {"ms": 10**6, "s": SECOND, "m": 60 * SECOND, "h": 3600 * SECOND}
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise LabError(f"invalid {flag} {text!r}: use a duration such as 30s, 1m30s or 500ms")
    return round(sum(float(n) * units[u] for n, u in parts))


def config(cmd=None, interval=None, timeout=None, start_period=None, retries=None, none=False) -> dict | None:
    """--health-cmd and its options (durations as text): docker's Healthcheck (without a Test if
    no command: the options then change the image's, see merged), or None."""
    if none:
        return {"Test": ["NONE"]}
    if cmd is None and all(v is None for v in (interval, timeout, start_period, retries)):
        return None
    check = {"Test": ["CMD-SHELL", cmd]} if cmd is not None else {}
    for key, value, flag in (("Interval", interval, "--health-interval"), ("Timeout", timeout, "--health-timeout"),
                             ("StartPeriod", start_period, "--health-start-period")):
        if value is not None:
            check[key] = duration(value, flag)
    if retries is not None:
        check["Retries"] = int(retries) if str(retries).isdigit() else -1
    return check


def merged(asked: dict | None, image: dict | None) -> dict | None:
    """The container's healthcheck, checked: what run asked over the image's HEALTHCHECK, field by
    field, as docker merges them (--health-interval 5s alone keeps the image's test)."""
    if not asked:
        return image or None
    if asked.get("StartInterval"):
        raise LabError("lab does not support --health-start-interval: leave it out (checks start at --health-interval)")
    combined = {**(image or {}), **{key: value for key, value in asked.items() if value}}
    if not combined.get("Test"):
        raise LabError("--health-interval, --health-timeout, --health-start-period and --health-retries "
                       "need --health-cmd (or an image with a HEALTHCHECK)")
    return checked(combined)


def checked(check: dict | None) -> dict | None:
    """A Healthcheck as the engine receives it (Test, and durations in ns), checked."""
    if not check or not check.get("Test"):
        return None
    test = check["Test"]
    if not isinstance(test, list) or test[0] not in ("CMD", "CMD-SHELL", "NONE") or \
            (test[0] != "NONE" and len(test) < 2) or (test[0] == "CMD-SHELL" and len(test) != 2):
        raise LabError(f"invalid healthcheck test {test!r}: use [\"CMD\", ARG...], [\"CMD-SHELL\", COMMAND] or [\"NONE\"]")
    for key in ("Interval", "Timeout", "StartPeriod"):
        value = check.get(key) or 0
        if not isinstance(value, int) or (value and value < (0 if key == "StartPeriod" else 10**6)):
            raise LabError(f"invalid healthcheck {key} {value!r}: at least 1ms (in ns: 1000000), or 0 for the default")
    if not isinstance(check.get("Retries") or 0, int) or (check.get("Retries") or 0) < 0:
        raise LabError(f"invalid healthcheck retries {check.get('Retries')!r}: a whole number, 0 for the default")
    return {key: check[key] for key in ("Test", "Interval", "Timeout", "StartPeriod", "Retries") if check.get(key)}


def command(check: dict) -> list[str]:
    """The command a check runs: CMD's as it is, CMD-SHELL's through the container's sh."""
    return check["Test"][1:] if check["Test"][0] == "CMD" else ["/bin/sh", "-c", check["Test"][1]]


class Health:
    """One run's health: when the next check is due, and what the checks said."""

    def __init__(self, container: store.Container, check: dict):
        self.container, self.command = container, command(check)
        self.interval, self.timeout, self.start_period, self.retries = (
            (check.get(key) or DEFAULTS[key]) / (SECOND if key != "Retries" else 1)
            for key in ("Interval", "Timeout", "StartPeriod", "Retries"))
        self.started = time.monotonic()
        self.due = self.started + self.interval              # the first check, one interval after the start
        self.probe = None                                    # the check running now (a supervisor.Process)
        self.deadline, self.timed_out = 0.0, False
        self.state = {"Status": "starting", "FailingStreak": 0, "Log": []}
        container.save_state(Health=self.state)

    def wait(self) -> float:
        """Seconds until something is to be done (a check to start, or one to kill)."""
        return max(0.0, (self.deadline if self.probe else self.due) - time.monotonic())

    def begin(self) -> None:
        """A check starts now (the supervisor sets self.probe once it runs)."""
        self.began_at, self.timed_out = time.time_ns(), False
        self.deadline = time.monotonic() + self.timeout
        self.exec_id = os.urandom(32).hex()
        for verb in ("exec_create", "exec_start"):
            store.record_event(self.container, store.exec_action(verb, self.command), execID=self.exec_id)

    def ended(self, exit_code: int, output: bytes) -> None:
        """Record a check's result; the next one is due an interval after this one's end."""
        now, was = time.monotonic(), self.state["Status"]
        store.record_event(self.container, "exec_die", execID=self.exec_id, exitCode=str(exit_code))
        if self.timed_out:                                   # (the supervisor killed it)
            exit_code, output = -1, f"Health check exceeded timeout ({self.timeout:g}s)".encode()
        if exit_code == 0:
            self.state.update(Status="healthy", FailingStreak=0)
        elif now - self.started >= self.start_period:       # (failures in the start period do not count)
            self.state["FailingStreak"] += 1
            if self.state["FailingStreak"] >= self.retries:
                self.state["Status"] = "unhealthy"
        self.state["Log"] = (self.state["Log"] + [{
            "Start": views.iso_ns(self.began_at), "End": views.iso_ns(time.time_ns()), "ExitCode": exit_code,
            "Output": output[:OUTPUT].decode(errors="replace")}])[-KEPT:]
        self.probe, self.due = None, now + self.interval
        self.container.save_state(Health=self.state)
        if self.state["Status"] != was:
            store.record_event(self.container, f"health_status: {self.state['Status']}")
