"""Chapter 07: the Engine API's vocabulary, for the handlers (engine.py and the engine_*.py
beside it) and the HTTP server (daemon.py).

- the API version lab speaks, and the error answers clients print as one line (ApiError);
- docker's container config read: which fields of a `docker create` lab takes (any other
  that is set is refused, never silently ignored), and how they become container.create()'s
  keywords;
- docker's JSON shapes of what lab has: a container as `docker inspect` and `docker ps` show
  it, an image as `docker image inspect` does.
"""
import json
import os

from lab import Conflict, NotFound, store, views, volumes


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
# with something else than its zero value (or a value lab does anyway: AS_LAB_DOES) is refused
# with one line, never silently ignored.
TAKEN = {"Image", "Cmd", "Env", "User", "WorkingDir", "OpenStdin", "Tty", "Hostname", "StdinOnce", "Labels", "Entrypoint",
         "Healthcheck", "Volumes",
         "AttachStdin", "AttachStdout", "AttachStderr", "StopSignal", "StopTimeout", "NetworkDisabled", "HostConfig",
         "ExposedPorts", "NetworkingConfig", "MacAddress"}


HOST_TAKEN = {"Memory", "NanoCpus", "PidsLimit", "Binds", "CapAdd", "CapDrop", "Privileged", "SecurityOpt",
              "AutoRemove", "RestartPolicy", "ConsoleSize", "Tmpfs", "ReadonlyRootfs", "LogConfig", "GroupAdd",
              "Ulimits", "ShmSize", "CpuShares", "MemorySwap", "MemoryReservation", "OomKillDisable", "Mounts",
              "VolumesFrom", "Init", "MemorySwappiness", "NetworkMode", "PortBindings", "PidMode", "UTSMode", "Links",
              "ExtraHosts", "DeviceCgroupRules", "VolumeDriver", "CpusetCpus",
              "ContainerIDFile",      # (--cidfile: the client writes the id there itself; dockerd ignores it too)
              "PublishAllPorts", "Dns", "DnsSearch", "DnsOptions"}


AS_LAB_DOES = {"CgroupnsMode": ("private",), "IpcMode": ("private",), "Isolation": ("default",)}


FLAGS = {"User": "-u/--user", "PortBindings": "-p", "ExposedPorts": "-p/--expose", "Devices": "--device",
         "Mounts": "--mount (use -v)", "VolumesFrom": "--volumes-from", "Links": "--link",
         "Volumes": "an anonymous volume (-v /path: name it, -v NAME:/path)", "NetworkMode": "--network",
         "NetworkingConfig": "--network", "Healthcheck": "--health-cmd", "Init": "--init", "Tmpfs": "--tmpfs",
         "ReadonlyRootfs": "--read-only", "CpuShares": "--cpu-shares", "CpusetCpus": "--cpuset-cpus",
         "CpusetMems": "--cpuset-mems",
         "MemorySwap": "--memory-swap", "MemoryReservation": "--memory-reservation", "Ulimits": "--ulimit",
         "OomKillDisable": "--oom-kill-disable", "LogConfig": "--log-driver/--log-opt", "ShmSize": "--shm-size",
         "GroupAdd": "--group-add", "CgroupnsMode": "--cgroupns", "Domainname": "--domainname",
         "PidMode": "--pid", "IpcMode": "--ipc", "UTSMode": "--uts", "UsernsMode": "--userns", "Dns": "--dns",
         "ExtraHosts": "--add-host", "Sysctls": "--sysctl", "CpuPeriod": "--cpu-period", "CpuQuota": "--cpu-quota",
         "PublishAllPorts": "-P", "Runtime": "--runtime", "OomScoreAdj": "--oom-score-adj"}


ENDPOINT_FLAGS = {"IPAMConfig": "--ip", "IPAddress": "--ip", "GlobalIPv6Address": "--ip6"}
IPAM_FLAGS = {"IPv4Address": "--ip", "IPv6Address": "--ip6", "LinkLocalIPs": "--link-local-ip"}


# The JSON kinds of the fields lab reads (docker's Go types): a field of another kind is a 400
# that names it, before anything is made. (Stored as it came, a "Cmd": [1, 2] made every
# `docker ps` fail; a "Memory": "1g" was a 500.) "command": a string or a list of strings (Go's
# strslice takes both); "labels": an object of strings.
KIND_WORDS = {str: "a string", int: "an integer", bool: "true or false", dict: "an object", list: "a list",
              "strings": "a list of strings", "command": "a string or a list of strings",
              "labels": "an object whose values are strings", "objects": "a list of objects"}
CONFIG_KINDS = {"Image": str, "Cmd": "command", "Entrypoint": "command", "Env": "strings", "User": str,
                "WorkingDir": str, "Hostname": str, "Domainname": str, "Labels": "labels", "StopSignal": str,
                "StopTimeout": int, "ExposedPorts": dict, "Volumes": dict, "Healthcheck": dict, "Tty": bool,
                "OpenStdin": bool, "StdinOnce": bool, "AttachStdin": bool, "AttachStdout": bool, "AttachStderr": bool,
                "HostConfig": dict, "NetworkingConfig": dict, "MacAddress": str, "NetworkDisabled": bool}
HOST_KINDS = {"Binds": "strings", "PortBindings": dict, "Mounts": "objects", "RestartPolicy": dict, "LogConfig": dict,
              "Memory": int, "MemorySwap": int, "MemoryReservation": int, "MemorySwappiness": int, "NanoCpus": int,
              "CpuShares": int, "CpuPeriod": int, "CpuQuota": int, "PidsLimit": int, "ShmSize": int, "CpusetCpus": str,
              "Privileged": bool, "ReadonlyRootfs": bool, "AutoRemove": bool, "PublishAllPorts": bool, "Init": bool,
              "OomKillDisable": bool, "NetworkMode": str, "PidMode": str, "UTSMode": str, "IpcMode": str,
              "CapAdd": "strings", "CapDrop": "strings", "SecurityOpt": "strings", "GroupAdd": "strings",
              "Dns": "strings", "DnsSearch": "strings", "DnsOptions": "strings", "ExtraHosts": "strings",
              "Links": "strings", "VolumesFrom": "strings", "DeviceCgroupRules": "strings", "Tmpfs": "labels",
              "Ulimits": "objects", "VolumeDriver": str, "ConsoleSize": list}
EXEC_KINDS = {"Cmd": "strings", "Env": "strings", "User": str, "WorkingDir": str, "Tty": bool, "AttachStdin": bool,
              "AttachStdout": bool, "AttachStderr": bool, "Privileged": bool, "DetachKeys": str, "ConsoleSize": list}


def check_kinds(body: dict, kinds: dict, where: str = "") -> None:
    """Each field of body that kinds names is of its kind (None: not given), else a 400."""
    for key, kind in kinds.items():
        if body.get(key) is not None and not store.is_kind(body[key], kind):
            raise ApiError(400, f"invalid {where}{key}: it must be {KIND_WORDS[kind]}, not {json.dumps(body[key])[:60]}")


def check_create_kinds(body: dict) -> None:
    """A create's config, its HostConfig and its NetworkingConfig, each of its fields of its kind."""
    check_kinds(body, CONFIG_KINDS)
    host = body.get("HostConfig") or {}
    check_kinds(host, HOST_KINDS, "HostConfig.")
    for key in ("RestartPolicy", "LogConfig"):
        check_kinds(host.get(key) or {}, {"Name": str, "Type": str, "MaximumRetryCount": int, "Config": "labels"},
                    f"HostConfig.{key}.")
    for port, bindings in (host.get("PortBindings") or {}).items():
        if bindings is not None and not store.is_kind(bindings, "objects"):
            raise ApiError(400, f"invalid HostConfig.PortBindings[{port!r}]: it must be a list of objects")
    for mount in host.get("Mounts") or []:
        check_kinds(mount, {"Type": str, "Source": str, "Target": str, "ReadOnly": bool, "BindOptions": dict,
                            "VolumeOptions": dict, "TmpfsOptions": dict}, "HostConfig.Mounts[].")
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig")
    if endpoints is not None and not (isinstance(endpoints, dict) and all(isinstance(e, (dict, type(None))) for e in endpoints.values())):
        raise ApiError(400, "invalid NetworkingConfig.EndpointsConfig: it must be an object of objects")


def check_supported(body: dict, version: tuple) -> None:
    """A create's fields are all ones lab takes (version: the client's API version)."""
    host = body.get("HostConfig") or {}
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if len(endpoints) > 1:
        raise ApiError(400, "a container is connected to one network when it is created: give one --network")
    # From API 1.44 docker connects a new container to every network of EndpointsConfig; lab to one
    mode = host.get("NetworkMode") or "default"
    others = sorted(set(endpoints) - {mode, "bridge" if mode == "default" else mode})
    if version >= (1, 44) and others:
        raise ApiError(400, f"a container is connected to one network when it is created, its --network ({mode}), "
                       f"not {', '.join(others)}: connect it to the others after (docker network connect)")
    for endpoint in endpoints.values():
        check_endpoint(endpoint or {}, ENDPOINT_TAKEN, "run the container without it")
    for fields, taken in ((body, TAKEN), (host, HOST_TAKEN)):
        for key, value in fields.items():
            if key in taken or value in (None, "", 0, False, [], {}, set()) or value in AS_LAB_DOES.get(key, ()):
                continue
            raise ApiError(400, f"lab does not support {FLAGS.get(key, key)}: run the container without it")


ENDPOINT_TAKEN = ("Aliases", "DriverOpts", "MacAddress", "NetworkID", "EndpointID", "Links", "IPAMConfig")


def check_endpoint(endpoint: dict, taken: tuple, instead: str, addresses=("IPv4Address", "LinkLocalIPs")) -> None:
    """A container's config on one network (create's NetworkingConfig, network connect's
    EndpointConfig): every field set is one of taken, and its addresses of those kinds."""
    asked = {field for field, value in (endpoint.get("IPAMConfig") or {}).items() if value}
    for field in sorted(asked - set(addresses)):
        raise ApiError(400, f"lab does not support {IPAM_FLAGS.get(field, field)}: {instead}")
    for key, value in endpoint.items():
        if value and key not in taken:
            raise ApiError(400, f"lab does not support {ENDPOINT_FLAGS.get(key, key)} on a network: {instead}")
    options = endpoint.get("DriverOpts") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "an endpoint's DriverOpts is an object of strings: {\"name\": \"value\"}")
    if options.get(SYSCTLS_OPTION):                                 # docker 25 writes them in the container's
        raise ApiError(400, f"lab does not set sysctls (driver-opt {SYSCTLS_OPTION}, --sysctl): {instead}")


SYSCTLS_OPTION = "com.docker.network.endpoint.sysctls"


def check_mount_options(m: dict) -> None:
    """--mount's options lab cannot honour, refused (a bind is recursive, private, and read-only all
    the way down when read-only; a volume is the local driver's, made without labels)."""
    bind, volume = m.get("BindOptions") or {}, m.get("VolumeOptions") or {}
    if (bind.get("Propagation") or "rprivate") not in ("rprivate", "private"):
        raise ApiError(400, f"lab does not support bind-propagation={bind['Propagation']}: its binds are private")
    for key, flag in (("NonRecursive", "bind-recursive=disabled"), ("ReadOnlyNonRecursive", "bind-recursive=writable")):
        if bind.get(key):            # (ReadOnlyForceRecursive is lab's own way: volumes.read_only_below)
            raise ApiError(400, f"lab does not support {flag}: leave it out")
    driver = volume.get("DriverConfig") or {}
    if (driver.get("Name") or "local") != "local" or driver.get("Options"):
        raise ApiError(400, "lab has the local volume driver only, with no options: leave volume-driver and volume-opt out")
    if volume.get("Labels"):
        raise ApiError(400, "lab does not support volume-label in --mount: create the volume first (docker volume create --label)")


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


def as_binds(body: dict, host: dict) -> dict:
    """HostConfig with --mount (Mounts), --volumes-from (VolumesFrom) and anonymous volumes
    (-v /path: Volumes) written as -v (Binds) and --tmpfs (Tmpfs), which lab's runtime takes:
    the same mounts, said another way. An anonymous volume is a volume named by a random id
    (made on first use, as any): `volume prune` removes it, and so do `rm -v` and `--rm`."""
    def anonymous() -> str:
        return os.urandom(32).hex()

    def as_bind(spec: str) -> str:
        """A -v, in Binds or Volumes alike (docker's ParseMountRaw reads both): a bare path is an
        anonymous volume there (-v /data; the SDK's volumes=["/data"] puts it in Binds too)."""
        return f"{anonymous()}:{spec}" if spec.startswith("/") and ":" not in spec else spec
    binds, tmpfs = [as_bind(spec) for spec in host.get("Binds") or []], dict(host.get("Tmpfs") or {})
    for m in host.get("Mounts") or []:
        kind, target, ro = m.get("Type"), m.get("Target") or "", ":ro" if m.get("ReadOnly") else ""
        check_mount_options(m)
        if kind == "tmpfs":
            options = m.get("TmpfsOptions") or {}
            size, mode = options.get("SizeBytes"), options.get("Mode")
            tmpfs[target] = ",".join(([f"size={size}"] if size else []) + ([f"mode={mode:o}"] if mode else [])
                                     + ["=".join(option) for option in options.get("Options") or []]   # (["exec"], ["uid", "1000"])
                                     + (["ro"] if m.get("ReadOnly") else []))
        elif kind == "volume" and (m.get("VolumeOptions") or {}).get("Subpath"):
            subpath = m["VolumeOptions"]["Subpath"]
            if subpath.startswith("/") or ".." in subpath.split("/"):
                raise ApiError(400, f"invalid volume subpath {subpath!r}: a relative path inside the volume")
            binds.append(f"{volumes.volume_path(m.get('Source') or anonymous())}/{subpath}:{target}{ro}")
        elif kind == "volume":                        # (NoCopy: --mount ...,volume-nocopy=true)
            nocopy = (m.get("VolumeOptions") or {}).get("NoCopy")
            binds.append(volumes.spec({"Name": m.get("Source") or anonymous(), "Source": None, "Destination": target,
                                       "RW": not ro, "CopyData": not nocopy}))
        elif kind == "bind" and m.get("Source"):
            binds.append(f"{m['Source']}:{target}{ro}")
        else:
            raise ApiError(400, f"lab does not support --mount type={kind}: use bind, volume or tmpfs")
    for ref in host.get("VolumesFrom") or []:
        name, _, mode = ref.partition(":")
        if mode not in ("", "ro", "rw"):
            raise ApiError(400, f"invalid --volumes-from {ref!r}: use CONTAINER[:ro|:rw]")
        for m in store.find_container(name).config.get("Mounts", []):
            ro = mode == "ro" or (not mode and not m["RW"])         # (and nocopy, if it was: as docker's)
            binds.append(volumes.spec({**m, "RW": not ro}))
    bound = {bind.split(":")[1] for bind in binds if bind.count(":") in (1, 2)} | set(tmpfs)
    for spec in body.get("Volumes") or {}:           # (the docker CLI sends a repeated -v whole here)
        if ":" in spec or spec not in bound:
            binds.append(as_bind(spec))
    return {**host, "Binds": binds, "Tmpfs": tmpfs}


def check_volume_driver(host: dict) -> None:
    """--volume-driver: the driver of the volumes the container makes. lab has docker's local
    one only; another is refused when a volume would need it (docker asks it only then too)."""
    driver = host.get("VolumeDriver") or "local"
    if driver != "local" and any(not bind.startswith("/") for bind in host["Binds"]):
        raise ApiError(400, f"lab has only the local volume driver, not {driver!r}: leave --volume-driver out")


def more_options(body: dict, host: dict) -> dict:
    """The rest of the container's config, as container.create's keywords: tmpfs mounts, a
    read-only root, confinement (chapter 08), the log driver, groups, resource limits,
    /dev/shm's size, an init, the healthcheck, the network and --add-host's hosts."""
    log = host.get("LogConfig") or {}
    return dict(healthcheck=body.get("Healthcheck"), tmpfs=[f"{path}:{options}" for path, options in (host.get("Tmpfs") or {}).items()],
                read_only=bool(host.get("ReadonlyRootfs")), cap_add=host.get("CapAdd") or [],
                cap_drop=host.get("CapDrop") or [], privileged=bool(host.get("Privileged")),
                security_opt=host.get("SecurityOpt") or [], log_driver=log.get("Type") or None,
                log_opts=log.get("Config") or {}, group_add=host.get("GroupAdd") or [],
                ulimits=host.get("Ulimits") or [], shm_size=host.get("ShmSize") or None,
                cpu_shares=host.get("CpuShares") or None, cpuset_cpus=host.get("CpusetCpus") or None,
                memory_swap=host.get("MemorySwap") or None,
                memory_reservation=host.get("MemoryReservation") or None,
                oom_kill_disable=bool(host.get("OomKillDisable")), init=bool(host.get("Init")),
                memory_swappiness=host.get("MemorySwappiness"),
                network_mode="none" if body.get("NetworkDisabled") else host.get("NetworkMode") or None,
                publish=publish_specs(host.get("PortBindings") or {}), publish_all=bool(host.get("PublishAllPorts")),
                dns=host.get("Dns") or [], dns_search=host.get("DnsSearch") or [], dns_options=host.get("DnsOptions") or [],
                **endpoint_options(body, host),
                pid_mode=host.get("PidMode") or None, uts_mode=host.get("UTSMode") or None,
                extra_hosts=host.get("ExtraHosts") or [], device_cgroup_rules=host.get("DeviceCgroupRules") or [])


def endpoint_options(body: dict, host: dict) -> dict:
    """The container's MAC address, aliases, driver options and links: in NetworkingConfig's entry
    for its network (an entry for another network is ignored, as docker does), or MacAddress and
    HostConfig's Links (the default bridge's)."""
    mode = host.get("NetworkMode") or "default"
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    mine = endpoints.get(mode) or endpoints.get("bridge" if mode == "default" else mode) or {}
    return dict(mac_address=mine.get("MacAddress") or body.get("MacAddress") or None,
                network_aliases=mine.get("Aliases") or (), driver_opts=mine.get("DriverOpts") or None,
                ip=(mine.get("IPAMConfig") or {}).get("IPv4Address") or None,
                link_local_ips=(mine.get("IPAMConfig") or {}).get("LinkLocalIPs") or (),
                links=(host.get("Links") or []) + (mine.get("Links") or []))


def publish_specs(bindings: dict) -> list[str]:
    """HostConfig.PortBindings as lab run's -p: [IP:][HOST_PORT:]PORT/PROTOCOL."""
    specs = []
    for port, bound in bindings.items():
        for b in bound or [{}]:
            ip, host_port = b.get("HostIp") or "", b.get("HostPort") or ""
            specs.append(f"{ip}:{host_port}:{port}" if ip else f"{host_port}:{port}" if host_port else port)
    return specs


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
            "HostConfig": {**info["HostConfig"],
                           "Binds": [volumes.spec(m) for m in config.get("Mounts", [])] or None,
                           "VolumesFrom": config.get("VolumesFrom"), "VolumeDriver": config.get("VolumeDriver", ""),
                           "Isolation": config.get("Isolation", ""), "CgroupnsMode": "private", "IpcMode": "private",
                           "PidMode": config.get("PidMode") or "", "UTSMode": config.get("UTSMode") or "",
                           "UsernsMode": "", "Links": [f"/{link['Name']}:/{c.name}/{link['Alias']}"
                                                       for link in config.get("Links") or []] or None,
                           "PublishAllPorts": bool(config.get("PublishAllPorts")), "Dns": config.get("Dns") or [],
                           "DnsOptions": config.get("DnsOptions") or [], "DnsSearch": config.get("DnsSearch") or [],
                           "ExtraHosts": config.get("ExtraHosts"),
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


def container_sizes(c: store.Container) -> dict:
    """docker ps -s, docker inspect --size: the bytes the container wrote (its upper folder) and
    all it sees (those and its image's)."""
    from lab import layers
    written = layers.folder_size(c.upper)
    try:
        image = store.read_json(store.image_path(c.config["ImageId"]))["Size"]
    except (OSError, ValueError, KeyError):   # (its image's record gone or damaged: what it wrote, then)
        image = 0
    return {"SizeRw": written, "SizeRootFs": written + image}


def virtual_size(req, size: int) -> dict:
    """VirtualSize, for the clients older than 1.44 that still read it."""
    return {"VirtualSize": size} if req.version < (1, 44) else {}


def image_json(req, image: dict) -> dict:
    shown = views.image(image)
    # ContainerConfig (the config of the container a step was built in; lab's: the image's own)
    # went in API 1.45; docker-compose 1.x still reads its Volumes when it recreates a container
    older = {"Container": "", "ContainerConfig": shown["Config"]} if req.version < (1, 45) else {}
    return {**shown, "Author": image.get("Author", ""), "Comment": image.get("Comment", ""), "DockerVersion": "",
            **virtual_size(req, image["Size"]), **older,
            "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": views.lower_dir(image["Layers"])}},
            "Metadata": {"LastTagTime": ZERO_TIME}}


def error_status(error: Exception) -> int:
    """The HTTP status of a lab error, as docker's for the same case."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    return 400


def filters(req) -> dict[str, list[str]]:
    """?filters={"label": ["a=b"], "status": ["exited"]} (older clients send {"label": {"a=b": true}})."""
    try:
        given = json.loads(req.query.get("filters") or "{}")
    except ValueError:
        raise ApiError(400, "filters is not valid JSON: send {\"name\": [\"web\"]}") from None
    if not isinstance(given, dict):
        raise ApiError(400, "filters must be a JSON object: {\"name\": [\"web\"]}")
    for key, values in given.items():            # (a list, or an older client's {"a=b": true})
        if not (isinstance(values, (list, dict)) and all(isinstance(v, str) for v in values)):
            raise ApiError(400, f"invalid filter {key!r}: its values are a list of strings, as {{\"{key}\": [\"...\"]}}")
    return {key: list(values) for key, values in given.items()}


def check_filters(found: dict, known: tuple) -> None:
    if unknown := sorted(set(found) - set(known)):
        raise ApiError(400, f"invalid filter {unknown[0]!r}: " + (f"lab filters by {', '.join(known)}" if known
                                                                    else "lab takes no filter here"))


def console_size(value) -> list[int] | None:
    """ConsoleSize (docker run -t, exec -t: its terminal's [rows, columns]), checked: [40] is
    [40, 0], as docker's JSON reads it."""
    if not value:
        return None
    if not (isinstance(value, list) and len(value) <= 2
            and all(isinstance(n, int) and 0 <= n <= 0xFFFF for n in value)):
        raise ApiError(400, f"invalid ConsoleSize {value!r}: [rows, columns], each 0 to 65535")
    return [*value, 0, 0][:2]


def dangling(found: dict) -> bool | None:
    """The filter dangling=true or false (1 or 0), None if not given; as docker's, anything else,
    or both, is refused."""
    if "dangling" not in found:
        return None
    given = set(found["dangling"])
    if not given <= {"true", "false", "1", "0"} or len({v in ("true", "1") for v in given}) != 1:
        raise ApiError(400, f"invalid filter 'dangling={','.join(sorted(given))}': use dangling=true or dangling=false")
    return given <= {"true", "1"}


def has_labels(labels: dict, wanted: list[str]) -> bool:
    """label=KEY or label=KEY=VALUE: every one given must match."""
    for item in wanted:
        key, _, value = item.partition("=")
        if key not in labels or ("=" in item and labels[key] != value):
            return False
    return True
