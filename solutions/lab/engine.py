"""Chapter 07: the engine. A daemon that manages containers, and the API to talk to it.

Docker Engine is three parts: a daemon (dockerd) that manages containers, images and volumes;
a REST API, plain HTTP on a Unix socket; and clients of that API: the docker CLI, the Docker
SDKs, curl. `lab daemon` is such a daemon for your runtime. Each handler here turns one API
call into the functions of chapters 00-06, so the stock `docker` command drives your containers.

`docker run` is four calls: create, attach, wait, start; `docker exec` three: create an
exec, start it, inspect it. This module serves them, and what ends a container: stop, kill,
rm. A container outlives the daemon: its supervisor (supervisor.py) holds its process, its
output and its exit status, and the state on disk is the truth, so a restarted daemon finds
everything again. The HTTP plumbing (socket, routes, hijacked connections) is in daemon.py,
the API's vocabulary (versions, errors, docker's JSON) in api.py, the other endpoints in
operations.py, engine_images.py and engine_system.py.
"""
import json
import os

from lab import LabError, NotFound, container, logs, names, relay, store, supervisor, supervisor_client, terminal, views, volumes
from lab.api import (EXEC_KINDS, ApiError, as_binds, check_create_kinds, check_kinds, check_supported, check_volume_driver,
                     console_size, container_json, container_sizes, more_options, restart_policy)
from lab.process import parse_signal


def create_container(body: dict, name: str | None, version: tuple) -> dict:
    """POST /containers/create: docker's container config becomes a lab container.

    Its supervisor (supervisor.py) starts at once, and waits to be told to start it."""
    check_supported(body, version)
    host = as_binds(body, body.get("HostConfig") or {})   # --mount, --volumes-from, -v /path: as -v, --tmpfs
    check_volume_driver(host)
    policy = restart_policy(host)
    console = console_size(host.get("ConsoleSize"))     # (its terminal's first size: -t)
    entrypoint = body.get("Entrypoint")
    if body.get("StopSignal"):
        parse_signal(body["StopSignal"])                # a LabError (400) if it is no signal
    c = container.create(
        body["Image"], body.get("Cmd") or [], name=name, env=body.get("Env") or [],
        entrypoint=[entrypoint] if isinstance(entrypoint, str) else entrypoint, user=body.get("User") or None,
        workdir=body.get("WorkingDir") or None, interactive=bool(body.get("OpenStdin")),
        tty=bool(body.get("Tty")), detach=True, hostname=body.get("Hostname") or None,
        memory=f"{host['Memory']}b" if host.get("Memory") else None,
        cpus=host["NanoCpus"] / 1e9 if host.get("NanoCpus") else None,
        pids_limit=host["PidsLimit"] if (host.get("PidsLimit") or 0) > 0 else None,
        mounts=host.get("Binds") or [], auto_remove=bool(host.get("AutoRemove")), **more_options(body, host),
        more=dict(StdinOnce=bool(body.get("StdinOnce")), Labels=body.get("Labels") or {}, RestartPolicy=policy,
                  StopSignal=body.get("StopSignal") or None, StopTimeout=body.get("StopTimeout"),
                  ExposedPorts=body.get("ExposedPorts") or None, VolumeDriver=host.get("VolumeDriver") or "",
                  ConsoleSize=console))
    supervisor.launch(c, start_it=False)                 # it waits for the start
    return {"Id": c.id, "Warnings": []}


def start_container(ref: str) -> None:
    """POST /containers/{id}/start: the container's supervisor starts it (chapters 00-05).

    A container that ran and ended starts again (docker start, restart): a new supervisor, the
    same container (its files, its upper layer, its log)."""
    import fcntl
    c = store.find_container(ref)
    # Two starts at once: one starts it, the other then finds it running. A POSIX lock (lockf):
    # a supervisor forked meanwhile does not inherit it, as it would flock's.
    try:
        lock = os.open(c.path / ".start.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    except FileNotFoundError:                         # removed meanwhile
        raise NotFound(f"no such container: {ref}") from None
    try:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        c.reload()
        if c.is_running():
            raise ApiError(304, "")                   # started already: "not modified"
        supervisor_for(c)
        supervisor_client.start(c)
    finally:
        os.close(lock)


def supervisor_for(c: store.Container) -> None:
    """Make sure a supervisor waits to start c: the one from its create, or a new one."""
    if not c.whole("start").waits_for_start():
        c.wait_for_supervisor(10)                     # the one of its last run is on its way out
        supervisor.launch(c, start_it=False, new=False)


def wait_container(c: store.Container, condition: str, ready=lambda: None) -> dict:
    """POST /containers/{id}/wait: how the container ended, once it has.

    condition "next-exit": wait for the end; "removed": for the end and for it to be gone too
    (--rm); "not-running": at once if its end is recorded (its state's Status is not "running"),
    else as "next-exit". Call ready() once the wait is registered: the client gets the answer's
    headers then, and only then starts the container (docker run asks before the start, so that
    it cannot miss the end).
    """
    # HINT: answer once the container has ended and its exit status is on disk, the way docker
    # HINT: answers; mind a container that has just ended.
    # HINT 2: supervisor_client.wait(c, removed=..., registered=ready) waits for the end; it raises a
    # HINT 2: LabError when the supervisor is gone, and then views.exit_of(c) is the answer.
    # HINT 3: "not-running" answers at once only once the end is recorded (c.state["Status"]):
    # HINT 3: a process that has just ended has no exit status on disk yet.
    # BEGIN SOLUTION 07
    if condition == "not-running" and c.state.get("Status") != "running":
        ready()
        return views.exit_of(c)
    try:
        return supervisor_client.wait(c, removed=condition == "removed", registered=ready)
    except LabError:                                  # no supervisor: it has ended already
        ready()
        return views.exit_of(c)
    # END SOLUTION


# The handlers: each gets the request (see daemon.Request) and returns (HTTP status, JSON
# body), or answers itself (streams, hijacked connections).


def post_create(req):
    body = req.json()
    check_create_kinds(body)
    for key in ("Cmd", "Entrypoint"):                 # (a string is a command of one word, as docker's)
        if isinstance(body.get(key), str):
            body[key] = [body[key]]
    if not isinstance(body.get("Image"), str) or not body["Image"]:
        raise ApiError(400, "the container config has no Image: give the image to run")
    name = req.query.get("name", "").removeprefix("/") or None
    asked = req.query.get("platform") or ""                      # (docker run --platform)
    if asked and not names.runs_here(asked):
        raise ApiError(400, f"image with reference {body['Image']} was found but does not match the specified "
                       f"platform: wanted {asked}, actual: linux/{names.host_arch()}")
    # An Env entry without "=" is a name the client did not give a value: docker keeps it in
    # the config and the process does not get it (the CLI's -e NAME takes the value client-side;
    # lab's own -e NAME takes lab's, which here would be the daemon's).
    bare = [item for item in body.get("Env") or [] if "=" not in item]
    created = create_container({**body, "Env": [item for item in body.get("Env") or [] if "=" in item]}, name, req.version)
    host = body.get("HostConfig") or {}
    if bare or host.get("VolumesFrom") or host.get("Isolation"):    # what inspect shows as it was asked
        c = store.find_container(created["Id"])
        c.config["Env"] += bare
        c.config.update(VolumesFrom=host.get("VolumesFrom") or None, Isolation=host.get("Isolation") or "")
        c.save_config()
    return 201, created


def post_start(req):
    start_container(req.params[0])
    return 204, None


def post_wait(req):
    c = store.find_container(req.params[0])
    condition = req.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise ApiError(400, f"invalid condition {condition!r}: not-running, next-exit or removed")
    def ready():                                  # the headers now: the client goes on (to start it)
        req.stream("application/json")
        req.end_if_client_leaves()
    ended = wait_container(c, condition, ready)
    if req.out is None:
        raise ApiError(500, "wait_container() never called ready()")
    req.answering()
    req.out.write(json.dumps(ended).encode() + b"\n")


def get_container(req):
    c = store.find_container(req.params[0])
    return 200, container_json(c) | (container_sizes(c) if req.flag("size") else {})


def post_attach(req):
    """POST /containers/{id}/attach: with logs=1, what it has written so far first; with
    stream=1 (lab's default; the API's is 0, and the docker CLI sends 1), what it writes from now on."""
    c = store.find_container(req.params[0])
    if not c.config.get("Tty"):
        relay.check_frame()
    live = req.query.get("stream", "1").lower() not in ("0", "false", "no")
    if live and not c.is_running():
        supervisor_for(c)                     # docker start -a attaches first, then starts
    streams = [n for n, key in ((relay.STDOUT, "stdout"), (relay.STDERR, "stderr")) if req.flag(key)]
    keys = checked_detach_keys(req.query.get("detachKeys"))
    with_logs = req.flag("logs") and (c.config.get("LogConfig") or {}).get("Type") != "none" and c.log.exists()
    if not live:                              # what it wrote, and no more
        client = req.hijack()
        if with_logs:
            relay.send_log(c, client, set(streams))
        client.close()
        return
    client, answer = req.upgrade()            # the supervisor answers, once the client is attached
    store.record_event(c, "attach")
    supervisor_client.request(c, {"attach": streams, "stdin": req.flag("stdin"), "detach_keys": list(keys),
                           "logs": with_logs, "answer": answer.decode("latin-1")}, client)


def checked_detach_keys(text: str | None) -> bytes:
    """?detachKeys= (docker's --detach-keys, or the client's config file): ctrl-p,ctrl-q if none."""
    try:
        return terminal.detach_keys(text or terminal.DETACH_KEYS)
    except ValueError as e:
        raise ApiError(400, str(e)) from None


def window_size(req) -> list[int]:
    try:
        rows, columns = int(req.query.get("h", 0)), int(req.query.get("w", 0))
    except ValueError:
        rows = columns = -1
    if not (0 <= rows < 65536 and 0 <= columns < 65536):
        raise ApiError(400, "invalid terminal size: h and w are 0 to 65535")
    return [rows, columns]


def post_resize(req):
    c = store.find_container(req.params[0])
    rows, columns = window_size(req)
    supervisor_client.request(c, {"resize": [rows, columns]})
    store.record_event(c, "resize", height=str(rows), width=str(columns))
    return 200, None


def get_logs(req):
    """GET /containers/{id}/logs: one frame per line, as docker sends them; --tail N (the last N
    lines), --since and --until (seconds since the epoch), --timestamps, -f."""
    c = store.find_container(req.params[0])
    wanted = {n for n, key in ((relay.STDOUT, "stdout"), (relay.STDERR, "stderr")) if req.flag(key)}
    try:
        since, until = (req.number(key, 0) * 1e9 for key in ("since", "until"))
        tail = None if req.query.get("tail", "all") in ("all", "") else int(req.query["tail"])
        tail = None if tail is not None and tail < 0 else tail          # (-1: all, as docker's)
    except ValueError:
        raise ApiError(400, "since and until are seconds since the epoch, tail a number of lines or all") from None

    def lines(records):
        for stream, data, when in records:
            if until and when > until:            # (-f ends there too, as docker's: at the first one after)
                return
            if stream in wanted and when >= since:
                for line in data.splitlines(keepends=True):
                    yield stream, line, when
    records = logs.follow(c, req.flag("follow"))        # (a log that cannot be read: 400, before the stream)
    skip = max(0, sum(1 for _ in lines(logs.follow(c, False))) - tail) if tail is not None else 0
    tty = c.config.get("Tty", False)
    if not tty:
        relay.check_frame()
    out = req.stream("application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream")
    if req.flag("follow"):
        req.end_if_client_leaves()                    # (Ctrl-C of docker logs -f: a quiet container writes nothing)
    for n, (stream, line, when) in enumerate(lines(records)):
        if n < skip:
            continue
        if req.flag("timestamps"):
            line = f"{views.iso_ns(when)} ".encode() + line
        out.write(line if tty else relay.frame(stream, line))
        out.flush()


def post_stop(req):
    c = store.find_container(req.params[0])
    if not c.is_running() and not c.restarting():    # (a restarting one: stop ends its restarts)
        raise ApiError(304, "")
    container.stop(c, stop_timeout(req, c), stop_signal(req))
    return 204, None


def stop_timeout(req, c: store.Container) -> float:
    """?t=SECONDS, else the container's --stop-timeout, else docker's 10 s."""
    given = req.number("t")
    return given if given is not None else c.config.get("StopTimeout") or 10


def stop_signal(req) -> int | None:
    """?signal=NAME (docker stop -s, restart -s), else None: the container's own --stop-signal."""
    return parse_signal(req.query["signal"]) if req.query.get("signal") else None


def post_kill(req):
    c = store.find_container(req.params[0])
    if not c.is_running():
        raise ApiError(409, f"container {c.name} is restarting, wait until the container is running" if c.restarting()
                       else f"container {c.name} is not running")
    container.kill(c, parse_signal(req.query.get("signal") or "KILL"))
    return 204, None


def delete_link(req):
    """DELETE /containers/{id}/{alias}?link=1 (docker rm --link): the container forgets the link."""
    c = store.find_container(req.params[0])
    if not req.flag("link"):
        raise ApiError(400, f"{req.params[0]}/{req.params[1]} is not a container: to remove a link, use rm --link")
    links = c.config.get("Links") or []
    if not any(link["Alias"] == req.params[1] for link in links):
        raise ApiError(404, f"could not find link {req.params[1]} of container {c.name}")
    c.config["Links"] = [link for link in links if link["Alias"] != req.params[1]]
    c.save_config()
    return 204, None


def delete_container(req):
    """DELETE /containers/{id} (docker rm [-f] [-v]): -v takes its anonymous volumes too."""
    c = store.find_container(req.params[0])
    container.remove(c, force=req.flag("force"))
    if req.flag("v"):
        volumes.remove_anonymous(c.config.get("Mounts", []))
    return 204, None


def post_exec_create(req):
    c = store.find_container(req.params[0]).whole("exec in")
    body = req.json()
    check_kinds(body, EXEC_KINDS)
    if isinstance(body.get("Cmd"), str):
        body["Cmd"] = [body["Cmd"]]
    if not c.is_running():
        raise ApiError(409, f"container {c.name} is not running")
    if c.state.get("Paused"):
        raise ApiError(409, f"container {c.name} is paused, unpause the container before exec")
    if not body.get("Cmd"):
        raise ApiError(400, "exec needs a command (Cmd)")
    if body.get("Privileged"):
        raise ApiError(400, "lab does not support exec --privileged")
    body.setdefault("DetachKeys", body.get("detachKeys"))      # (the SDK sends it so; docker's JSON is case-blind)
    exec_id = os.urandom(32).hex()
    config = {"ID": exec_id, "ContainerID": c.id, "Cmd": body["Cmd"], "Env": body.get("Env") or [],
              "WorkingDir": body.get("WorkingDir") or "", "User": body.get("User") or "", "Tty": bool(body.get("Tty")),
              "AttachStdin": bool(body.get("AttachStdin")), "AttachStdout": bool(body.get("AttachStdout", True)),
              "AttachStderr": bool(body.get("AttachStderr", True)), "Running": False, "ExitCode": None, "Pid": 0,
              "DetachKeys": list(checked_detach_keys(body.get("DetachKeys"))),
              "ConsoleSize": console_size(body.get("ConsoleSize"))}
    c.execs.mkdir(exist_ok=True)
    store.write_json(c.exec_record(exec_id), config)
    store.record_event(c, store.exec_action("exec_create", config["Cmd"]), execID=exec_id)
    return 201, {"Id": exec_id}


def find_exec(exec_id: str) -> tuple[store.Container, dict]:
    names.check_id(exec_id, "exec")                 # before it becomes a file name (exec_record)
    for c in store.list_containers():
        if c.exec_record(exec_id).exists():
            return c, supervisor.read_exec(c, exec_id)
    raise NotFound(f"no such exec instance: {exec_id}")


def post_exec_start(req):
    c, config = find_exec(req.params[0])
    if config["Running"] or config["ExitCode"] is not None:
        raise ApiError(409, f"exec {config['ID'][:12]} has been started already")
    body = req.json() or {}
    if body.get("Detach"):
        answer = supervisor_client.request(c, {"exec": config["ID"]})
        if "error" in answer:
            raise ApiError(500, answer["error"])
        return 200, None
    framed = not body.get("Tty", config["Tty"])         # the start's Tty says how to frame, as docker's
    if framed:
        relay.check_frame()
    if body.get("ConsoleSize"):                          # (its terminal's first size: a later one than create's)
        supervisor.update_exec(c, config["ID"], ConsoleSize=console_size(body["ConsoleSize"]))
    supervisor_client.request(c, {"exec": config["ID"], "framed": framed}, req.hijack())


def get_exec(req):
    c, config = find_exec(req.params[0])
    return 200, {"ID": config["ID"], "ContainerID": c.id, "Running": config["Running"],
                 "ExitCode": config["ExitCode"], "Pid": config["Pid"], "OpenStdin": config["AttachStdin"],
                 "OpenStdout": True, "OpenStderr": True, "CanRemove": False, "DetachKeys": "",
                 "ProcessConfig": {"entrypoint": config["Cmd"][0], "arguments": config["Cmd"][1:],
                                   "tty": config["Tty"], "privileged": False, "user": ""}}


def post_exec_resize(req):
    c, config = find_exec(req.params[0])
    supervisor_client.request(c, {"resize": window_size(req), "exec_id": config["ID"]})
    return 200, None


ID = r"([^/]+)"
ROUTES = [
    ("POST", r"/containers/create", post_create),
    ("GET", rf"/containers/{ID}/json", get_container), ("POST", rf"/containers/{ID}/start", post_start),
    ("POST", rf"/containers/{ID}/wait", post_wait), ("POST", rf"/containers/{ID}/attach", post_attach),
    ("POST", rf"/containers/{ID}/resize", post_resize), ("GET", rf"/containers/{ID}/logs", get_logs),
    ("POST", rf"/containers/{ID}/stop", post_stop), ("POST", rf"/containers/{ID}/kill", post_kill),
    ("DELETE", rf"/containers/{ID}", delete_container), ("DELETE", rf"/containers/{ID}/{ID}", delete_link),
    ("POST", rf"/containers/{ID}/exec", post_exec_create), ("POST", rf"/exec/{ID}/start", post_exec_start),
    ("GET", rf"/exec/{ID}/json", get_exec), ("POST", rf"/exec/{ID}/resize", post_exec_resize),
]


