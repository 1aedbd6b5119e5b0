"""What lab shows of its records, in the shapes docker's clients know: `lab inspect` and the
Engine API (chapter 07) print these. The records themselves (store.py) stay lab's own; only
this module knows docker's field names.
"""
import time

from lab import store


def iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


def iso_ns(ns: int) -> str:
    """RFC 3339 with nanoseconds, as docker's timestamps: 2026-11-30T18:00:00.123456789Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def container(c: store.Container) -> dict:
    """`lab inspect CONTAINER`, in docker's shape where docker has one."""
    running = c.is_running()        # first: it may find and record the pid (store.adopt)
    config, state, limits = c.config, c.state, c.config.get("Limits", {})
    restarting = not running and c.restarting()                                     # (--restart)
    cgroup = state.get("Cgroup", {})
    stats = cgroup.get("Stats") or {}
    return {
        "Id": c.id, "Name": c.name, "Created": iso(config["Created"]),
        "Path": config["Cmd"][0], "Args": config["Cmd"][1:], "Image": config["ImageId"], "LogPath": str(c.log),
        "RestartCount": state.get("RestartCount", 0),
        "State": {"Status": ("paused" if state.get("Paused") else "running") if running else
                  "restarting" if restarting else ("exited" if state.get("Status") != "created" else "created"),
                  "Restarting": restarting,
                  "Running": running, "Paused": running and state.get("Paused", False), "Pid": state.get("Pid", 0) if running else 0,
                  "ExitCode": state.get("ExitCode"), "OOMKilled": state.get("OOMKilled", False),
                  "StartedAt": iso(state.get("StartedAt")), "FinishedAt": iso(state.get("FinishedAt")),
                  **({"LogStopped": state["LogStopped"]} if "LogStopped" in state else {}),
                  **({"Health": state["Health"]} if state.get("Health") else {})},
        "Config": {"Hostname": config["Hostname"], "Env": config["Env"], "Cmd": config["Cmd"],
                   "Image": config["Image"], "WorkingDir": config["WorkingDir"],
                   **({"Healthcheck": config["Healthcheck"]} if config.get("Healthcheck") else {})},
        "HostConfig": {"Memory": limits.get("memory") or 0, "AutoRemove": config.get("AutoRemove", False),
                       "NanoCpus": round((limits.get("cpus") or 0) * 1e9),
                       "PidsLimit": limits.get("pids"), "CpuShares": limits.get("cpu_shares") or 0,
                       "MemorySwap": limits.get("memory_swap") or 0, "MemoryReservation": limits.get("memory_reservation") or 0,
                       "OomKillDisable": limits.get("oom_kill_disable", False),
                       "MemorySwappiness": limits.get("memory_swappiness"), "CpusetCpus": limits.get("cpuset_cpus") or "",
                       **security_fields(config.get("Security")),
                       "LogConfig": config.get("LogConfig") or {"Type": "json-file", "Config": {}},
                       "GroupAdd": config.get("GroupAdd") or None, "Ulimits": config.get("Ulimits") or None,
                       "ShmSize": config.get("ShmSize") or 64 << 20, "Init": bool(config.get("Init")),
                       "NetworkMode": config.get("NetworkMode") or "bridge", "PortBindings": config.get("PortBindings") or {}},
        "NetworkSettings": network_settings(c, running),
        "Mounts": [{"Type": m["Type"], **({"Name": m["Name"]} if m["Name"] else {}), "Source": m["Source"],
                    "Destination": m["Destination"], "Mode": store.mount_mode(m), "RW": m["RW"],
                    "Propagation": "rprivate"} for m in config.get("Mounts", [])],
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": lower_dir(config.get("Layers", [])),
            "UpperDir": str(c.upper), "WorkDir": str(c.work), "MergedDir": str(c.merged)}},
        "Cgroup": {"Version": cgroup.get("Version"), "Paths": cgroup.get("Paths", {}),
                   "MemoryPeak": stats.get("MemoryPeak"),
                   "CpuTimeSeconds": stats["CpuUsageNs"] / 1e9 if stats else None,
                   "CpuPeriods": stats.get("CpuPeriods"), "CpuThrottled": stats.get("CpuThrottled"),
                   "PidsRefused": stats.get("PidsRefused")},
    }


def network_settings(c: store.Container, running: bool) -> dict:
    """Where the container is on its network (chapter 09): docker's NetworkSettings."""
    mode = c.config.get("NetworkMode") or "bridge"
    here = (c.state.get("Network") or {}) if running else {}
    endpoint = network_endpoint(here, c.config.get("Endpoint") or {})
    default = endpoint if mode == "bridge" else {}          # (the top-level fields: the default bridge's)
    disconnected = (running and not here and mode not in ("host", "none")) or (    # its first network:
        not running and (c.config.get("Endpoint") or {}).get("Disconnected"))         # then it is left out
    networks = {} if mode.startswith("container:") or disconnected else {mode: endpoint}
    for name, settings in (c.state.get("Connected") or {}).items() if running else ():
        networks[name] = network_endpoint(settings, settings)   # (network connect's)
    for name, asked in (c.config.get("Networks") or {}).items() if not running else ():
        networks[name] = network_endpoint({}, asked)             # (connected, from its next start)
    return {"Bridge": here.get("Bridge", ""), "SandboxKey": f"/proc/{c.state['Pid']}/ns/net" if running else "",
            "Ports": here.get("Ports") or {}, "IPAddress": default.get("IPAddress", ""),
            "Gateway": default.get("Gateway", ""), "IPPrefixLen": default.get("IPPrefixLen", 0),
            "MacAddress": default.get("MacAddress", ""), "Networks": networks}


def network_endpoint(here: dict, asked: dict) -> dict:
    """One of a container's networks, as docker's NetworkSettings.Networks shows it."""
    return {"NetworkID": here.get("Id", ""), "EndpointID": here.get("Veth", ""), "Gateway": here.get("Gateway", ""),
            "IPAddress": here.get("IPAddress", ""), "IPPrefixLen": here.get("IPPrefixLen", 0),
            "MacAddress": here.get("MacAddress") or asked.get("MacAddress") or "", "Aliases": asked.get("Aliases"),
            "DriverOpts": asked.get("DriverOpts"),
            "IPAMConfig": {key: asked[key] for key in ("IPv4Address", "LinkLocalIPs") if asked.get(key)} or None}


def network(record: dict) -> dict:
    """`lab network inspect`, in docker's shape."""
    ipam = [{"Subnet": record["Subnet"], "Gateway": record["Gateway"],
             **{key: record[key] for key in ("IPRange", "AuxiliaryAddresses") if record.get(key)}}] \
        if record.get("Subnet") else []
    members = {}
    for c in store.list_containers():
        for here in [c.state.get("Network") or {}, *(c.state.get("Connected") or {}).values()]:
            if here.get("Id") == record["Id"] and c.is_running():
                members[c.id] = {"Name": c.name, "EndpointID": here["Veth"], "MacAddress": here.get("MacAddress", ""),
                                 "IPv4Address": f"{here['IPAddress']}/{here['IPPrefixLen']}", "IPv6Address": ""}
    return {"Name": record["Name"], "Id": record["Id"], "Created": iso(record["Created"]), "Scope": "local",
            "Driver": record["Driver"], "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": ipam},
            "Internal": record.get("Internal", False), "Attachable": record.get("Attachable", False), "Ingress": False,
            "Containers": members,
            # (the bridge's name: the default network's only, as docker's; a user network shows the
            # options it was created with, and docker compose recreates one whose options differ)
            "Options": {"com.docker.network.bridge.name": record["Bridge"]} if record["Name"] == "bridge" else {},
            "Labels": record.get("Labels") or {}}


def lower_dir(layers: list[str]) -> str:
    """overlay's lowerdir for these layers (bottom first, as images list them): the top one first."""
    return ":".join(str(store.layer_path(d)) for d in reversed(layers))


def security_fields(options: dict | None) -> dict:
    """HostConfig's fields for chapter 08, as docker shows them."""
    if not options:
        return {}
    seccomp = options.get("Seccomp")
    opts = (["no-new-privileges"] if options.get("NoNewPrivileges") else []) + \
        (["seccomp=unconfined"] if seccomp == "unconfined" else ["seccomp=<profile>"] if seccomp else [])
    return {"Privileged": options.get("Privileged", False), "CapAdd": options.get("CapAdd") or None,
            "CapDrop": options.get("CapDrop") or None, "SecurityOpt": opts or None,
            "Capabilities": options.get("Capabilities"), "DeviceCgroupRules": options.get("DeviceCgroupRules")}


def exit_of(c: store.Container) -> dict:
    """How the container ended, as the Engine API's wait answers it."""
    c.reload()
    error = c.state.get("Error")
    return {"StatusCode": c.state.get("ExitCode", 0), "Error": {"Message": error} if error else None}


def image(i: dict) -> dict:
    """`lab inspect IMAGE`, in docker's shape."""
    return {"Id": i["Id"], "RepoTags": i["RepoTags"], "Parent": i.get("Parent", ""), "Created": iso(i["Created"]),
            "Size": i["Size"], "Config": {"Cmd": None, "Entrypoint": None, "User": "", "Labels": None, **i["Config"]},
            "RootFS": {"Type": "layers", "Layers": i["Layers"]}, "RepoDigests": i.get("RepoDigests", []),
            "Os": i.get("Os", "linux"), "Architecture": i.get("Architecture") or "amd64"}
