"""Chapter 07: the engine. A daemon that manages containers, and the API to talk to it.

Docker Engine is three parts: a daemon (dockerd) that manages containers, images and volumes;
a REST API, plain HTTP on a Unix socket; and clients of that API: the docker CLI, the Docker
SDKs, curl. `lab daemon` is such a daemon for your runtime. Each handler here turns one API
call into the functions of chapters 00-06, so the stock `docker` command drives your containers.

`docker run` is four calls: create, attach, wait, start. A container outlives the daemon: its
supervisor (supervisor.py) holds its process, its output and its exit status, and the state
on disk is the truth, so a restarted daemon finds everything again. The HTTP plumbing (socket,
routes, versions, error bodies, hijacked connections) is in daemon.py.
"""
import json
import os
import platform

from lab import (Conflict, LabError, NotFound, container, image_commands, images, logs, names, store, supervisor,
                 terminal, views, volumes)
from lab.process import parse_signal

API_VERSION = "1.47"          # the Engine API version lab speaks (Docker 27); clients negotiate down
# Where answers differ by version, the handler looks at req.version: since 1.44 images have no
# VirtualSize (Size says the same).
MIN_API_VERSION = "1.24"
LAB_VERSION = "0.7"
ZERO_TIME = "0001-01-01T00:00:00Z"      # Go's zero time: what docker says for "never"


class ApiError(Exception):
    """An answer other than success: the HTTP status, and the message clients print."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# docker create's fields that lab takes (create_container reads them). Any other field sent
# with something else than its zero value (or a value lab does anyway, as "default" for the
# network mode: no network but loopback) is refused with one line, never silently ignored.
TAKEN = {"Image", "Cmd", "Env", "User", "WorkingDir", "OpenStdin", "Tty", "Hostname", "StdinOnce", "Labels", "Entrypoint",
         "Healthcheck", "Volumes",
         "AttachStdin", "AttachStdout", "AttachStderr", "StopSignal", "StopTimeout", "NetworkDisabled", "HostConfig",
         "ExposedPorts", "NetworkingConfig", "MacAddress"}
HOST_TAKEN = {"Memory", "NanoCpus", "PidsLimit", "Binds", "CapAdd", "CapDrop", "Privileged", "SecurityOpt",
              "AutoRemove", "RestartPolicy", "ConsoleSize", "Tmpfs", "ReadonlyRootfs", "LogConfig", "GroupAdd",
              "Ulimits", "ShmSize", "CpuShares", "MemorySwap", "MemoryReservation", "OomKillDisable", "Mounts",
              "VolumesFrom", "Init", "MemorySwappiness", "NetworkMode", "PortBindings", "PidMode", "UTSMode", "Links"}
AS_LAB_DOES = {"CgroupnsMode": ("private",), "IpcMode": ("private",), "Isolation": ("default",)}
FLAGS = {"User": "-u/--user", "PortBindings": "-p", "ExposedPorts": "-p/--expose", "Devices": "--device",
         "Mounts": "--mount (use -v)", "VolumesFrom": "--volumes-from", "Links": "--link",
         "Volumes": "an anonymous volume (-v /path: name it, -v NAME:/path)", "NetworkMode": "--network",
         "NetworkingConfig": "--network", "Healthcheck": "--health-cmd", "Init": "--init", "Tmpfs": "--tmpfs",
         "ReadonlyRootfs": "--read-only", "CpuShares": "--cpu-shares", "CpusetCpus": "--cpuset-cpus",
         "MemorySwap": "--memory-swap", "MemoryReservation": "--memory-reservation", "Ulimits": "--ulimit",
         "OomKillDisable": "--oom-kill-disable", "LogConfig": "--log-driver/--log-opt", "ShmSize": "--shm-size",
         "GroupAdd": "--group-add", "CgroupnsMode": "--cgroupns", "Domainname": "--domainname",
         "PidMode": "--pid", "IpcMode": "--ipc", "UTSMode": "--uts", "UsernsMode": "--userns", "Dns": "--dns",
         "ExtraHosts": "--add-host", "Sysctls": "--sysctl", "CpuPeriod": "--cpu-period", "CpuQuota": "--cpu-quota",
         "PublishAllPorts": "-P", "Runtime": "--runtime", "OomScoreAdj": "--oom-score-adj"}


ENDPOINT_FLAGS = {"IPAMConfig": "--ip", "IPAddress": "--ip", "GlobalIPv6Address": "--ip6"}


def check_supported(body: dict) -> None:
    host = body.get("HostConfig") or {}
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if len(endpoints) > 1:
        raise ApiError(400, "a container is connected to one network when it is created: give one --network")
    for endpoint in endpoints.values():
        for key, value in (endpoint or {}).items():
            if value and key not in ("Aliases", "DriverOpts", "MacAddress", "NetworkID", "EndpointID", "Links"):
                raise ApiError(400, f"lab does not support {ENDPOINT_FLAGS.get(key, key)} on a network: "
                               "run the container without it")
    for fields, taken in ((body, TAKEN), (host, HOST_TAKEN)):
        for key, value in fields.items():
            if key in taken or value in (None, "", 0, False, [], {}, set()) or value in AS_LAB_DOES.get(key, ()):
                continue
            raise ApiError(400, f"lab does not support {FLAGS.get(key, key)}: run the container without it")


def restart_policy(host: dict) -> dict:
    """HostConfig.RestartPolicy, checked: no, always, unless-stopped, on-failure[:N]."""
    policy = host.get("RestartPolicy") or {}
    name, retries = policy.get("Name") or "no", policy.get("MaximumRetryCount") or 0
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise ApiError(400, f"invalid restart policy {name!r}: no, always, unless-stopped or on-failure[:N]")
    if not isinstance(retries, int) or retries < 0 or (retries and name != "on-failure"):
        raise ApiError(400, f"maximum retry count cannot be used with restart policy {name!r}: "
                       "only on-failure:N takes one (N >= 0)")
    if name != "no" and host.get("AutoRemove"):
        raise ApiError(400, "conflicting options: cannot specify both --restart and --rm")
    return {"Name": name, "MaximumRetryCount": retries}


def create_container(body: dict, name: str | None) -> dict:
    """POST /containers/create: docker's container config becomes a lab container.

    Its supervisor (supervisor.py) starts at once, and waits to be told to start it."""
    check_supported(body)
    host = as_binds(body, body.get("HostConfig") or {})   # --mount, --volumes-from, -v /path: as -v, --tmpfs
    policy = restart_policy(host)
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
        mounts=host.get("Binds") or [], **more_options(body, host))
    c.config.update(StdinOnce=bool(body.get("StdinOnce")), AutoRemove=bool(host.get("AutoRemove")),
                    Labels=body.get("Labels") or {}, RestartPolicy=policy,
                    StopSignal=body.get("StopSignal") or None, StopTimeout=body.get("StopTimeout"),
                    ExposedPorts=body.get("ExposedPorts") or None)
    c.save_config()
    supervisor.launch(c, remove=c.config["AutoRemove"], start_it=False)     # it waits for the start
    return {"Id": c.id, "Warnings": []}


def as_binds(body: dict, host: dict) -> dict:
    """HostConfig with --mount (Mounts), --volumes-from (VolumesFrom) and anonymous volumes
    (-v /path: Volumes) written as -v (Binds) and --tmpfs (Tmpfs), which lab's runtime takes:
    the same mounts, said another way. An anonymous volume is a volume named by a random id
    (made on first use, as any): `volume prune` removes it, and so do `rm -v` and `--rm`."""
    binds, tmpfs = list(host.get("Binds") or []), dict(host.get("Tmpfs") or {})

    def anonymous() -> str:
        return os.urandom(32).hex()
    for m in host.get("Mounts") or []:
        kind, target, ro = m.get("Type"), m.get("Target") or "", ":ro" if m.get("ReadOnly") else ""
        if kind == "tmpfs":
            options = m.get("TmpfsOptions") or {}
            size, mode = options.get("SizeBytes"), options.get("Mode")
            tmpfs[target] = ",".join(([f"size={size}"] if size else []) + ([f"mode={mode:o}"] if mode else []))
        elif kind == "volume" and (m.get("VolumeOptions") or {}).get("Subpath"):
            subpath = m["VolumeOptions"]["Subpath"]
            if subpath.startswith("/") or ".." in subpath.split("/"):
                raise ApiError(400, f"invalid volume subpath {subpath!r}: a relative path inside the volume")
            binds.append(f"{volumes.volume_path(m.get('Source') or anonymous())}/{subpath}:{target}{ro}")
        elif kind == "volume":
            binds.append(f"{m.get('Source') or anonymous()}:{target}{ro}")
        elif kind == "bind" and m.get("Source"):
            binds.append(f"{m['Source']}:{target}{ro}")
        else:
            raise ApiError(400, f"lab does not support --mount type={kind}: use bind, volume or tmpfs")
    for ref in host.get("VolumesFrom") or []:
        name, _, mode = ref.partition(":")
        if mode not in ("", "ro", "rw"):
            raise ApiError(400, f"invalid --volumes-from {ref!r}: use CONTAINER[:ro|:rw]")
        for m in store.find_container(name).config.get("Mounts", []):
            ro = mode == "ro" or (not mode and not m["RW"])
            binds.append(f"{m['Name'] or m['Source']}:{m['Destination']}{':ro' if ro else ''}")
    bound = {bind.split(":")[1] for bind in binds if bind.count(":") in (1, 2)} | set(tmpfs)
    for path in body.get("Volumes") or {}:
        if path not in bound:
            binds.append(f"{anonymous()}:{path}")
    return {**host, "Binds": binds, "Tmpfs": tmpfs}


def more_options(body: dict, host: dict) -> dict:
    """The rest of the container's config, as container.create's keywords: tmpfs mounts, a
    read-only root, confinement (chapter 08), the log driver, groups, resource limits,
    /dev/shm's size, an init, the healthcheck."""
    log = host.get("LogConfig") or {}
    return dict(healthcheck=body.get("Healthcheck"), tmpfs=[f"{path}:{options}" for path, options in (host.get("Tmpfs") or {}).items()],
                read_only=bool(host.get("ReadonlyRootfs")), cap_add=host.get("CapAdd") or [],
                cap_drop=host.get("CapDrop") or [], privileged=bool(host.get("Privileged")),
                security_opt=host.get("SecurityOpt") or [], log_driver=log.get("Type") or None,
                log_opts=log.get("Config") or {}, group_add=host.get("GroupAdd") or [],
                ulimits=host.get("Ulimits") or [], shm_size=host.get("ShmSize") or None,
                cpu_shares=host.get("CpuShares") or None, memory_swap=host.get("MemorySwap") or None,
                memory_reservation=host.get("MemoryReservation") or None,
                oom_kill_disable=bool(host.get("OomKillDisable")), init=bool(host.get("Init")),
                memory_swappiness=host.get("MemorySwappiness"),
                network_mode="none" if body.get("NetworkDisabled") else host.get("NetworkMode") or None,
                publish=publish_specs(host.get("PortBindings") or {}), **endpoint_options(body, host),
                pid_mode=host.get("PidMode") or None, uts_mode=host.get("UTSMode") or None)


def endpoint_options(body: dict, host: dict) -> dict:
    """The container's MAC address, aliases, driver options and links: in NetworkingConfig's entry
    for its network (an entry for another network is ignored, as docker does), or MacAddress and
    HostConfig's Links (the default bridge's)."""
    mode = host.get("NetworkMode") or "default"
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    mine = endpoints.get(mode) or endpoints.get("bridge" if mode == "default" else mode) or {}
    return dict(mac_address=mine.get("MacAddress") or body.get("MacAddress") or None,
                network_aliases=mine.get("Aliases") or (), driver_opts=mine.get("DriverOpts") or None,
                links=(host.get("Links") or []) + (mine.get("Links") or []))


def publish_specs(bindings: dict) -> list[str]:
    """HostConfig.PortBindings as lab run's -p: [IP:][HOST_PORT:]PORT/PROTOCOL."""
    specs = []
    for port, bound in bindings.items():
        for b in bound or [{}]:
            ip, host_port = b.get("HostIp") or "", b.get("HostPort") or ""
            specs.append(f"{ip}:{host_port}:{port}" if ip else f"{host_port}:{port}" if host_port else port)
    return specs


def start_container(ref: str) -> None:
    """POST /containers/{id}/start: the container's supervisor starts it (chapters 00-05).

    A container that ran and ended starts again (docker start, restart): a new supervisor, the
    same container (its files, its upper layer, its log)."""
    c = store.find_container(ref)
    if c.is_running():
        raise ApiError(304, "")                       # started already: "not modified"
    supervisor_for(c)
    supervisor.start(c)


def supervisor_for(c: store.Container) -> None:
    """Make sure a supervisor waits to start c: the one from its create, or a new one."""
    if not c.waits_for_start():
        c.wait_for_supervisor(10)                     # the one of its last run is on its way out
        supervisor.launch(c, remove=c.config.get("AutoRemove", False), start_it=False)


def wait_container(c: store.Container, condition: str, ready=lambda: None) -> dict:
    """POST /containers/{id}/wait: how the container ended, once it has.

    condition "next-exit": wait for the end; "removed": for the end and for it to be gone too
    (--rm); "not-running": at once if it is not running. Call ready() once the wait is
    registered: the client gets the answer's headers then, and only then starts the container
    (docker run asks before the start, so that it cannot miss the end).
    """
    # HINT: answer once the container has ended and its exit status is on disk, the way docker
    # HINT: answers; mind a container that has just ended.
    # HINT 2: supervisor.wait(c, removed=..., registered=ready) waits for the end; it raises a
    # HINT 2: LabError when the supervisor is gone, and then views.exit_of(c) is the answer.
    # HINT 3: "not-running" answers at once only once the end is recorded (c.state["Status"]):
    # HINT 3: a process that has just ended has no exit status on disk yet.
    # BEGIN SOLUTION 07
    if condition == "not-running" and c.state.get("Status") != "running":
        ready()
        return views.exit_of(c)
    try:
        return supervisor.wait(c, removed=condition == "removed", registered=ready)
    except LabError:                                  # no supervisor: it has ended already
        ready()
        return views.exit_of(c)
    # END SOLUTION


# The rest of the API: each handler gets the request (see daemon.Request) and returns
# (HTTP status, JSON body), or answers itself (streams, hijacked connections).

def container_json(c: store.Container) -> dict:
    """GET /containers/{id}/json: lab's inspect, completed to docker's shape."""
    info, config = views.container(c), c.config
    state = info["State"]
    return {**info, "Name": "/" + c.name, "Driver": "overlay", "Platform": "linux",
            "HostnamePath": str(c.hostname_file),
            "HostsPath": str(c.hosts_file), "ResolvConfPath": str(c.resolv_conf_file), "ExecIDs": None,
            "State": {**state, "Dead": False,
                      "Error": c.state.get("Error", ""), "ExitCode": state["ExitCode"] or 0,
                      "StartedAt": state["StartedAt"] or ZERO_TIME, "FinishedAt": state["FinishedAt"] or ZERO_TIME},
            "Config": {**info["Config"], "Tty": config.get("Tty", False), "OpenStdin": config["Interactive"],
                       "StdinOnce": config.get("StdinOnce", False), "AttachStdin": False,
                       "AttachStdout": True, "AttachStderr": True, "Labels": config.get("Labels", {}),
                       "Entrypoint": config.get("Entrypoint") or None, "User": config.get("User") or "",
                       **({"ExposedPorts": config["ExposedPorts"]} if config.get("ExposedPorts") else {}),
                       **({"StopSignal": config["StopSignal"]} if config.get("StopSignal") else {}),
                       **({"StopTimeout": config["StopTimeout"]} if config.get("StopTimeout") is not None else {})},
            "HostConfig": {**info["HostConfig"], "AutoRemove": config.get("AutoRemove", False),
                           "Binds": [f"{m['Name'] or m['Source']}:{m['Destination']}{'' if m['RW'] else ':ro'}"
                                     for m in config.get("Mounts", [])] or None,
                           "VolumesFrom": config.get("VolumesFrom"),
                           "Isolation": config.get("Isolation", ""), "CgroupnsMode": "private", "IpcMode": "private",
                           "PidMode": config.get("PidMode") or "", "UTSMode": config.get("UTSMode") or "",
                           "UsernsMode": "", "Links": [f"/{link['Name']}:/{c.name}/{link['Alias']}"
                                                       for link in config.get("Links") or []] or None,
                           "PublishAllPorts": False, "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None,
                           "Runtime": "lab",
                           "Tmpfs": config.get("Tmpfs") or None, "ReadonlyRootfs": config.get("ReadOnly", False),
                           "RestartPolicy": config.get("RestartPolicy") or {"Name": "no", "MaximumRetryCount": 0}}}


def container_summary(c: store.Container) -> dict:
    """One row of GET /containers/json (docker ps)."""
    info = container_json(c)
    return {"Id": c.id, "Names": ["/" + c.name], "Image": c.config["Image"], "ImageID": c.config["ImageId"],
            "Command": " ".join(c.config["Cmd"]), "Created": int(c.config["Created"]),
            "Ports": [{"IP": b["HostIp"], "PrivatePort": int(key.split("/")[0]), "PublicPort": int(b["HostPort"]),
                       "Type": key.split("/")[1]} for key, bound in info["NetworkSettings"]["Ports"].items() for b in bound],
            "Labels": c.config.get("Labels", {}), "State": info["State"]["Status"], "Status": c.status_text(),
            "HostConfig": {"NetworkMode": info["HostConfig"]["NetworkMode"]},
            "NetworkSettings": {"Networks": info["NetworkSettings"]["Networks"]}, "Mounts": info["Mounts"]}


def post_create(req):
    body = req.json()
    if not isinstance(body.get("Image"), str) or not body["Image"]:
        raise ApiError(400, "the container config has no Image: give the image to run")
    name = req.query.get("name", "").removeprefix("/") or None
    # An Env entry without "=" is a name the client did not give a value: docker keeps it in
    # the config and the process does not get it (the CLI's -e NAME takes the value client-side;
    # lab's own -e NAME takes lab's, which here would be the daemon's).
    bare = [item for item in body.get("Env") or [] if "=" not in item]
    created = create_container({**body, "Env": [item for item in body.get("Env") or [] if "=" in item]}, name)
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
    req.out.write(json.dumps(ended).encode() + b"\n")


def get_container(req):
    return 200, container_json(store.find_container(req.params[0]))


def post_attach(req):
    """POST /containers/{id}/attach: with logs=1, what it has written so far first; with
    stream=1 (the default), what it writes from now on."""
    c = store.find_container(req.params[0])
    live = req.query.get("stream", "1").lower() not in ("0", "false", "no")
    if live and not c.is_running():
        supervisor_for(c)                     # docker start -a attaches first, then starts
    streams = [n for n, key in ((supervisor.STDOUT, "stdout"), (supervisor.STDERR, "stderr")) if req.flag(key)]
    keys = checked_detach_keys(req.query.get("detachKeys"))
    with_logs = req.flag("logs") and (c.config.get("LogConfig") or {}).get("Type") != "none" and c.log.exists()
    if not live:                              # what it wrote, and no more
        client = req.hijack()
        if with_logs:
            supervisor.send_log(c, client, set(streams))
        client.close()
        return
    client, answer = req.upgrade()            # the supervisor answers, once the client is attached
    supervisor.request(c, {"attach": streams, "stdin": req.flag("stdin"), "detach_keys": list(keys),
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
    supervisor.request(c, {"resize": window_size(req)})
    return 200, None


def get_logs(req):
    """GET /containers/{id}/logs: one frame per line, as docker sends them; --tail N (the last N
    lines), --since and --until (seconds since the epoch), --timestamps, -f."""
    c = store.find_container(req.params[0])
    wanted = {n for n, key in ((supervisor.STDOUT, "stdout"), (supervisor.STDERR, "stderr")) if req.flag(key)}
    try:
        since, until = (float(req.query.get(key) or 0) * 1e9 for key in ("since", "until"))
        tail = None if req.query.get("tail", "all") in ("all", "") else int(req.query["tail"])
    except ValueError:
        raise ApiError(400, "since and until are seconds since the epoch, tail a number of lines or all") from None

    def lines(records):
        for stream, data, when in records:
            if stream in wanted and when >= since and (not until or when <= until):
                for line in data.splitlines(keepends=True):
                    yield stream, line, when
    records = logs.follow(c, req.flag("follow"))        # (a log that cannot be read: 400, before the stream)
    skip = max(0, sum(1 for _ in lines(logs.follow(c, False))) - tail) if tail is not None else 0
    tty = c.config.get("Tty", False)
    out = req.stream("application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream")
    for n, (stream, line, when) in enumerate(lines(records)):
        if n < skip:
            continue
        if req.flag("timestamps"):
            line = f"{views.iso_ns(when)} ".encode() + line
        out.write(line if tty else supervisor.frame(stream, line))
        out.flush()


def post_stop(req):
    c = store.find_container(req.params[0])
    if not c.is_running():
        raise ApiError(304, "")
    container.stop(c, stop_timeout(req, c))
    return 204, None


def stop_timeout(req, c: store.Container) -> float:
    """?t=SECONDS, else the container's --stop-timeout, else docker's 10 s."""
    given = req.query.get("t")
    return float(given if given not in (None, "") else c.config.get("StopTimeout") or 10)


def post_kill(req):
    c = store.find_container(req.params[0])
    if not c.is_running():
        raise ApiError(409, f"container {c.name} is not running")
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
    c = store.find_container(req.params[0])
    body = req.json()
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
              "AttachStdin": bool(body.get("AttachStdin")), "Running": False, "ExitCode": None, "Pid": 0,
              "DetachKeys": list(checked_detach_keys(body.get("DetachKeys")))}
    c.execs.mkdir(exist_ok=True)
    store.write_json(c.exec_record(exec_id), config)
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
        answer = supervisor.request(c, {"exec": config["ID"]})
        if "error" in answer:
            raise ApiError(500, answer["error"])
        return 200, None
    framed = not body.get("Tty", config["Tty"])         # the start's Tty says how to frame, as docker's
    supervisor.request(c, {"exec": config["ID"], "framed": framed}, req.hijack())


def get_exec(req):
    c, config = find_exec(req.params[0])
    return 200, {"ID": config["ID"], "ContainerID": c.id, "Running": config["Running"],
                 "ExitCode": config["ExitCode"], "Pid": config["Pid"], "OpenStdin": config["AttachStdin"],
                 "OpenStdout": True, "OpenStderr": True, "CanRemove": False, "DetachKeys": "",
                 "ProcessConfig": {"entrypoint": config["Cmd"][0], "arguments": config["Cmd"][1:],
                                   "tty": config["Tty"], "privileged": False, "user": ""}}


def post_exec_resize(req):
    c, config = find_exec(req.params[0])
    supervisor.request(c, {"resize": window_size(req), "exec_id": config["ID"]})
    return 200, None


def virtual_size(req, size: int) -> dict:
    """VirtualSize, for the clients older than 1.44 that still read it."""
    return {"VirtualSize": size} if req.version < (1, 44) else {}


def image_json(req, image: dict) -> dict:
    return {**views.image(image), "Author": "", "Comment": "", "DockerVersion": "", **virtual_size(req, image["Size"]),
            "GraphDriver": {"Name": "overlay", "Data": {
                "LowerDir": views.lower_dir(image["Layers"])}},
            "Metadata": {"LastTagTime": ZERO_TIME}}


def list_images(req):
    """GET /images/json (docker images), with the filters reference (NAME[:TAG], wildcards as
    docker's), dangling and label; ?filter=NAME (older clients) is a reference."""
    import fnmatch
    wanted = json.loads(req.query.get("filters") or "{}")
    if req.query.get("filter"):
        wanted.setdefault("reference", []).append(req.query["filter"])

    def shown(i: dict) -> bool:
        tags = i["RepoTags"] or []
        if wanted.get("reference") and not any(
                fnmatch.fnmatch(tag, ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:*")
                for ref in wanted["reference"] for tag in tags):
            return False
        if "dangling" in wanted and (wanted["dangling"][0] in ("true", "1")) == bool(tags):
            return False
        return matches_labels(i["Config"].get("Labels") or {}, wanted)
    return 200, [{"Id": i["Id"], "ParentId": i.get("Parent", ""), "RepoTags": i["RepoTags"] or [],
                  "RepoDigests": [], "Created": int(i["Created"]), "Size": i["Size"], **virtual_size(req, i["Size"]),
                  "SharedSize": -1, "Labels": i["Config"].get("Labels") or {}, "Containers": -1}
                 for i in images.list_images() if shown(i) and not images.is_intermediate(i)]


def get_image(req):
    return 200, image_json(req, images.find(req.params[0]))


def delete_image(req):
    """DELETE /images/{name} (docker rmi): untag, and delete what no tag and no other image needs."""
    done = image_commands.remove_image(req.params[0])
    return 200, [dict([line.split(": ", 1)]) for line in done]      # [{"Untagged": ...}, {"Deleted": ...}]


def post_pull(req):
    """POST /images/create (docker pull): lab pull, its progress as JSON lines the client draws.
    An image lab made itself (busybox, an import, a commit) is not looked for in a registry."""
    if "fromImage" not in req.query:
        raise ApiError(400, "lab does not import images through the API: use lab image import FILE NAME")
    tag = req.query.get("tag") or "latest"
    ref = req.query["fromImage"] + ("@" if tag.startswith("sha256:") else ":") + tag
    platform_asked = req.query.get("platform") or ""
    try:
        image = images.resolve(ref)
        if not image.get("RepoDigests"):
            os_name, _, arch = platform_asked.partition("/")
            if platform_asked and (os_name != "linux" or arch.split("/")[0] not in ("", "amd64", platform.machine())):
                raise ApiError(400, f"invalid platform {platform_asked!r}: unknown operating system or architecture "
                               f"(lab made {ref} here, for linux/{platform.machine()})")
            out = req.stream("application/json")
            out.write(json.dumps({"status": f"{ref}: lab made it here (not pulled): it is up to date"}).encode() + b"\n")
            out.write(json.dumps({"status": f"Status: Image is up to date for {ref}"}).encode() + b"\n")
            return
    except NotFound:
        pass
    from lab import pull
    progress = JSONProgress(req)
    try:
        pull.pull(ref, platform_asked or None, progress=progress, login=registry_login(req))
    except LabError as e:
        if progress.out is None:             # nothing sent yet: an error status docker shows as is
            raise
        progress.write({"errorDetail": {"message": str(e)}, "error": str(e)})


def post_push(req):
    """POST /images/{name}/push (docker push): lab push, its progress as JSON lines."""
    from lab import push
    tag = req.query.get("tag") or ""
    ref = req.params[0] + (f":{tag}" if tag else "")
    images.find(ref)                          # no such image: 404, before any stream
    progress = JSONProgress(req)
    try:
        push.push(ref, progress=progress, login=registry_login(req))
    except LabError as e:
        if progress.out is None:
            raise
        progress.write({"errorDetail": {"message": str(e)}, "error": str(e)})


def post_build(req):
    """POST /build (docker build, the legacy builder: DOCKER_BUILDKIT=0): the context arrives
    as a tar; `lab build` runs on it as a child process (its RUN steps write to their stdout),
    and every line it prints goes to the client as {"stream": line}."""
    import subprocess
    import sys
    import tempfile
    from lab import build
    if req.query.get("remote"):
        raise ApiError(400, "lab builds from a context sent with the request, not from a remote URL")
    if req.query.get("version") == "2":
        raise ApiError(400, "lab builds with the legacy builder only: DOCKER_BUILDKIT=0 docker build ...")
    with tempfile.TemporaryDirectory(prefix="lab-build-") as work:
        context = os.path.join(work, "context")
        os.mkdir(context)
        build.unpack_context(req.body, context)
        command = [sys.executable, "-m", "lab", "build", "--iidfile", os.path.join(work, "id"),
                   "-f", os.path.join(context, req.query.get("dockerfile") or "Dockerfile")]
        for tag in req.values("t"):
            command += ["-t", tag]
        for key, value in json.loads(req.query.get("buildargs") or "{}").items():
            command += ["--build-arg", f"{key}={value}"]
        if req.query.get("nocache") in ("1", "true", "True"):
            command.append("--no-cache")
        if req.query.get("networkmode") not in (None, "", "default"):
            command += ["--network", req.query["networkmode"]]
        package = os.path.dirname(os.path.dirname(os.path.abspath(build.__file__)))
        child = subprocess.Popen(command + [context], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,   # (cwd: -m
                                 stderr=subprocess.STDOUT, cwd=work, env={**os.environ, "PYTHONPATH": package})  # finds this lab)
        out = req.stream("application/json", chunked=True)
        said = ""
        for line in child.stdout:
            text = line.decode(errors="replace")
            if text.startswith("lab: error: "):
                said = text.removeprefix("lab: error: ").strip()
                continue
            out.write(json.dumps({"stream": text}).encode() + b"\n")
        if child.wait() != 0:
            message = said or f"lab build exited with status {child.returncode}"
            out.write(json.dumps({"errorDetail": {"message": message}, "error": message}).encode() + b"\n")
        elif os.path.exists(os.path.join(work, "id")):
            with open(os.path.join(work, "id")) as f:
                out.write(json.dumps({"aux": {"ID": f.read().strip()}}).encode() + b"\n")


def post_auth(req):
    """POST /auth (docker login): the daemon tries the login on the registry; the client keeps it."""
    from lab import registry
    body = req.json() or {}
    server = registry.server_name(body.get("serveraddress") or registry.DOCKER_HUB)
    if not body.get("username") or not body.get("password"):
        raise ApiError(400, "docker login needs a user name and a password")
    registry.check_login(server, body["username"], body["password"])
    return 200, {"Status": "Login Succeeded", "IdentityToken": ""}


def registry_login(req) -> tuple[str, str] | None:
    """The client's login for the registry (docker login's, sent as X-Registry-Auth: base64 JSON)."""
    import base64
    sent = req.handler.headers.get("X-Registry-Auth")
    try:
        auth = json.loads(base64.urlsafe_b64decode(sent + "=" * (-len(sent) % 4))) if sent else {}
    except ValueError:
        raise ApiError(400, "X-Registry-Auth is not base64-encoded JSON") from None
    return (auth["username"], auth["password"]) if isinstance(auth, dict) and auth.get("username") else None


class JSONProgress:
    """lab pull's progress as the Engine API streams it: one JSON object a line, e.g.
    {"status": "Downloading", "progressDetail": {"current": 1024, "total": 4096}, "id": "1a2b3c"}."""

    def __init__(self, req):
        import threading
        self.req, self.out, self.lock = req, None, threading.Lock()

    def write(self, message: dict) -> None:
        with self.lock:
            if self.out is None:
                self.out = self.req.stream("application/json", chunked=True)
            self.out.write(json.dumps(message).encode() + b"\n")

    def line(self, text: str) -> None:
        self.write({"status": text})

    def update(self, short: str, state: str, done: int = 0, total: int = 0) -> None:
        self.write({"status": state, "progressDetail": {"current": done, "total": total} if total else {}, "id": short})


def list_volumes(req):
    """GET /volumes (docker volume ls), with the filters name (a part of it), label and dangling."""
    wanted = json.loads(req.query.get("filters") or "{}")
    found = []
    for name in volumes.list_volumes():
        volume = volumes.inspect(name)
        if any(part not in name for part in wanted.get("name", [])) or not matches_labels(volume["Labels"], wanted):
            continue
        if "dangling" in wanted and (wanted["dangling"][0] in ("true", "1")) == bool(volume["UsedBy"]):
            continue
        found.append(volume)
    return 200, {"Volumes": found, "Warnings": []}


def matches_labels(labels: dict, wanted: dict) -> bool:
    """filters={"label": ["KEY", "KEY=VALUE"]}: every one of them is on the object."""
    def has(spec):
        key, sep, value = spec.partition("=")
        return key in labels and (not sep or labels[key] == value)
    return all(has(spec) for spec in wanted.get("label", []))


def post_volume(req):
    body = req.json() or {}
    if (body.get("Driver") or "local") != "local":
        raise ApiError(400, f"lab has the local volume driver only, not {body['Driver']!r}")
    if body.get("DriverOpts"):
        raise ApiError(400, "lab's volumes take no driver options (-o): leave them out")
    name = body.get("Name") or os.urandom(32).hex()
    volumes.create(name, body.get("Labels") or {})
    return 201, volumes.inspect(name)


def get_volume(req):
    return 200, volumes.inspect(req.params[0])


def delete_volume(req):
    volumes.remove(req.params[0])
    return 204, None


def version(req=None):
    kernel = platform.release()
    engine = {"Version": LAB_VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
              "GitCommit": "lab", "GoVersion": f"python{platform.python_version()}", "Os": "linux",
              "Arch": "amd64", "KernelVersion": kernel, "BuildTime": "", "Experimental": "false"}
    return 200, {**engine, "Experimental": False, "Platform": {"Name": "lab (a container runtime you write yourself)"},
                 "Components": [{"Name": "Engine", "Version": LAB_VERSION, "Details": engine}]}


def info(req):
    from lab import cgroups
    everything = store.list_containers()
    running = sum(c.is_running() for c in everything)
    paused = sum(c.is_running() and c.state.get("Paused", False) for c in everything)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 200, {
        "ID": "lab", "Name": platform.node(), "ServerVersion": LAB_VERSION,
        "Containers": len(everything), "ContainersRunning": running - paused, "ContainersPaused": paused,
        "ContainersStopped": len(everything) - running, "Images": len(images.list_images()),
        "Driver": "overlay", "DriverStatus": [["Backing Filesystem", "lab layers"]],
        "DockerRootDir": str(store.lab_root()), "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if cgroups.version() == "v2" else "1",
        "MemoryLimit": True, "SwapLimit": False, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "PidsLimit": True, "OomKillDisable": cgroups.version() == "v1", "KernelVersion": platform.release(),
        "Debug": False, "ExperimentalBuild": False, "NFd": len(os.listdir("/proc/self/fd")),
        "OperatingSystem": platform.freedesktop_os_release().get("PRETTY_NAME", "Linux"),
        "OSType": "linux", "Architecture": platform.machine(), "NCPU": os.cpu_count(), "MemTotal": memory,
        "Runtimes": {"lab": {"path": "lab"}}, "DefaultRuntime": "lab", "SecurityOptions": [],
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False},
        "Plugins": {"Volume": ["local"], "Network": [], "Log": ["json-file", "none"]},
        "Warnings": ["lab: containers have no network but their own loopback (no -p, no bridge)"]}


def ping(req):
    return 200, "OK"


ID = r"([^/]+)"
ROUTES = [
    ("GET", r"/_ping", ping), ("HEAD", r"/_ping", ping), ("GET", r"/version", version), ("GET", r"/info", info),
    ("POST", r"/containers/create", post_create),
    ("GET", rf"/containers/{ID}/json", get_container), ("POST", rf"/containers/{ID}/start", post_start),
    ("POST", rf"/containers/{ID}/wait", post_wait), ("POST", rf"/containers/{ID}/attach", post_attach),
    ("POST", rf"/containers/{ID}/resize", post_resize), ("GET", rf"/containers/{ID}/logs", get_logs),
    ("POST", rf"/containers/{ID}/stop", post_stop), ("POST", rf"/containers/{ID}/kill", post_kill),
    ("DELETE", rf"/containers/{ID}", delete_container), ("DELETE", rf"/containers/{ID}/{ID}", delete_link), ("POST", rf"/containers/{ID}/exec", post_exec_create),
    ("POST", rf"/exec/{ID}/start", post_exec_start), ("GET", rf"/exec/{ID}/json", get_exec),
    ("POST", rf"/exec/{ID}/resize", post_exec_resize),
    ("GET", r"/images/json", list_images), ("GET", r"/images/(.+)/json", get_image),
    ("POST", r"/images/create", post_pull), ("POST", r"/images/(.+)/push", post_push), ("POST", r"/auth", post_auth),
    ("POST", r"/build", post_build),
    ("DELETE", r"/images/(.+)", delete_image),
    ("GET", r"/volumes", list_volumes), ("POST", r"/volumes/create", post_volume),
    ("GET", rf"/volumes/{ID}", get_volume), ("DELETE", rf"/volumes/{ID}", delete_volume),
]


def error_status(error: Exception) -> int:
    """The HTTP status of a lab error, as docker's for the same case."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    return 400
