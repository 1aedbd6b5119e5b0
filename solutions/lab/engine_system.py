"""Chapter 07, the engine's other objects: volumes, networks (chapter 09), `docker version`,
`info`, `events`, `system df`, `volume prune`, `network prune`, and swarm's two questions.
"""
import json
import os
import platform
from pathlib import Path

from lab import LabError, NotFound, container_network, images, layers, names, network, store, views, volumes
from lab.api import (API_VERSION, LAB_VERSION, MIN_API_VERSION, ApiError, check_endpoint, check_filters, check_kinds,
                     container_sizes, container_summary, dangling, filters, has_labels, virtual_size)


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
    support = host_support()
    return 200, {
        "ID": "lab", "Name": platform.node(), "ServerVersion": LAB_VERSION,
        "Containers": len(everything), "ContainersRunning": running - paused, "ContainersPaused": paused,
        "ContainersStopped": len(everything) - running, "Images": len(images.list_images(listing=True)),
        "Driver": "overlay", "DriverStatus": [["Backing Filesystem", "lab layers"]],
        "DockerRootDir": str(store.lab_root()), "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if cgroups.version() == "v2" else "1",
        **support, "KernelVersion": platform.release(),
        "Debug": False, "ExperimentalBuild": False, "NFd": len(os.listdir("/proc/self/fd")),
        "OperatingSystem": platform.freedesktop_os_release().get("PRETTY_NAME", "Linux"),
        "OSType": "linux", "Architecture": platform.machine(), "NCPU": os.cpu_count(), "MemTotal": memory,
        "Runtimes": {"lab": {"path": "lab"}}, "DefaultRuntime": "lab", "SecurityOptions": [],
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False},
        "Plugins": {"Volume": ["local"], "Network": [], "Log": ["json-file", "none"]},
        "Warnings": [warning for field, warning in HOST_WARNINGS.items() if not support[field]]}


HOST_WARNINGS = {   # what `docker info` says under its table when the host lacks it (dockerd's words)
    "SwapLimit": "WARNING: No swap limit support", "CPUSet": "WARNING: No cpuset support",
    "IPv4Forwarding": "WARNING: IPv4 forwarding is disabled",
    "BridgeNfIptables": "WARNING: bridge-nf-call-iptables is disabled",
    "BridgeNfIp6tables": "WARNING: bridge-nf-call-ip6tables is disabled"}


def host_support() -> dict:
    """What of the limits and the network this host's kernel gives, as dockerd reports it: swap
    limits need v1's memsw files (a kernel booted with swapaccount=1), --cpuset-cpus a cpuset
    hierarchy (v1) or controller (v2); the network's switches are read from /proc/sys (lab
    turns ip_forward on itself when a container first joins a bridge)."""
    from lab import cgroups
    v2 = cgroups.version() == "v2"
    if v2:
        swap, cpuset = True, "cpuset" in cgroups.read(cgroups.ROOT / "cgroup.controllers").split()
    else:
        mounted = {c: Path(mount) for mount, fstype, options in cgroups.mountinfo() if fstype == "cgroup"
                   for c in options.split(",") if c in ("memory", "cpuset")}
        swap = "memory" in mounted and (mounted["memory"] / "memory.memsw.limit_in_bytes").exists()
        cpuset = "cpuset" in mounted
    return {"MemoryLimit": True, "SwapLimit": swap, "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True,
            "CPUSet": cpuset, "PidsLimit": True, "OomKillDisable": not v2,
            "IPv4Forwarding": switched_on("ipv4/ip_forward"),
            "BridgeNfIptables": switched_on("bridge/bridge-nf-call-iptables"),
            "BridgeNfIp6tables": switched_on("bridge/bridge-nf-call-ip6tables")}


def switched_on(name: str) -> bool:
    """Whether the network switch /proc/sys/net/NAME is 1 (the bridge's exist with br_netfilter)."""
    path = Path("/proc/sys/net", name)
    return path.is_file() and path.read_text().strip() == "1"


def ping(req):
    return 200, "OK"


def list_volumes(req):
    """GET /volumes (docker volume ls), with the filters name (a part of it), label, dangling and
    driver (local: lab's only one)."""
    wanted = filters(req)
    check_filters(wanted, ("name", "label", "dangling", "driver"))
    unused = dangling(wanted)
    found = []
    for name in volumes.list_volumes():
        volume = volumes.inspect(name)
        if any(part not in name for part in wanted.get("name", [])) or not has_labels(volume["Labels"], wanted.get("label", [])):
            continue
        if any(driver != "local" for driver in wanted.get("driver", [])):
            continue
        if unused is not None and unused == bool(volume["UsedBy"]):
            continue
        found.append(volume)
    return 200, {"Volumes": found, "Warnings": []}


def post_volume(req):
    body = req.json() or {}
    check_kinds(body, {"Driver": str, "Labels": "labels", "DriverOpts": "labels"})      # (Name: check_name's)
    if (body.get("Driver") or "local") != "local":
        raise ApiError(400, f"lab has the local volume driver only, not {body['Driver']!r}")
    if body.get("DriverOpts"):
        raise ApiError(400, "lab's volumes take no driver options (-o): leave them out")
    name = body.get("Name") or os.urandom(32).hex()
    volumes.create(name, body.get("Labels") or {})
    return 201, volumes.inspect(name)


def get_volume(req):
    if not names.is_name(req.params[0]):       # no volume has such a name: not found (docker inspect goes on)
        raise NotFound(f"no such volume: {names.shown(req.params[0])}")
    return 200, volumes.inspect(req.params[0])


def delete_volume(req):
    """DELETE /volumes/{name} (docker volume rm [-f]): with force, one that is not there is no
    error (as docker's: a cleanup script's `rm -f` succeeds); one in use is refused all the same."""
    try:
        volumes.remove(req.params[0])
    except NotFound:
        if not req.flag("force"):
            raise
    return 204, None


def get_events(req):
    """GET /events (docker events): what happens to containers (create, start, die, kill, stop,
    oom, pause, unpause, restart, rename, update, commit, attach, resize, top, export,
    archive-path and extract-to-dir (docker cp), exec_create, exec_start, exec_die,
    health_status, destroy), images (pull, push, tag, untag, delete, import, load, save), volumes (create,
    mount, unmount, destroy) and networks (create, connect, disconnect, destroy), from the
    store's journal (store.journal), as it happens and from `since` on; `until` ends the
    stream. Filters as docker's: type, event, container, image, volume, network, label."""
    wanted = filters(req)
    check_filters(wanted, ("type", "event", "container", "image", "volume", "network", "label"))
    unknown = sorted(set(wanted.get("type", [])) - {"container", "image", "volume", "network"})
    if unknown:
        raise ApiError(400, f"invalid filter 'type={unknown[0]}': lab reports container, image, volume and network events")
    meaning = "since and until are times in seconds since 1970 (the docker CLI sends them so)"
    since, until = req.number("since", meaning=meaning), req.number("until", meaning=meaning)
    events = store.read_events(since, until)        # (from now: before the answer's headers)
    out = req.stream("application/json", chunked=True)
    req.end_if_client_leaves()                        # (Ctrl-C of docker events: maybe no event for hours)
    for event in events:
        if is_wanted(event, wanted):
            out.write(json.dumps(event).encode() + b"\n")
            out.flush()


FIRST_WORD = {"exec_create", "exec_start", "health_status"}    # event=exec_start: "exec_start: sh -c date" too


def is_wanted(event: dict, wanted: dict) -> bool:
    """Whether the event passes every filter given, as docker's: container, volume and network
    match the start of the actor's id or name (whatever the event's type), image the image's
    id or name, with or without its tag."""
    actor, attributes, action = event["Actor"]["ID"], event["Actor"]["Attributes"], event["Action"]
    named = [actor, attributes.get("name", "")]
    image = attributes.get("name" if event["Type"] == "image" else "image") or ""
    images = {actor, image, untagged(actor), untagged(image)}
    test = {"type": lambda value: value == event["Type"],
            "event": lambda value: value == action or (value in FIRST_WORD and action.startswith(value)),
            "image": lambda value: value in images,
            **dict.fromkeys(("container", "volume", "network"), lambda value: any(n.startswith(value) for n in named))}
    return all(any(map(test[key], values)) for key, values in wanted.items() if key in test) \
        and has_labels(attributes, wanted.get("label", []))


def untagged(ref: str) -> str:
    """busybox:latest -> busybox; an id, or a name without a tag, as it is."""
    name = ref.split("@")[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] and not name.startswith("sha256:") else name


def disk_use() -> int:
    return layers.folder_size(store.layers_dir())


def post_prune_volumes(req):
    """POST /volumes/prune: volumes no container uses; only anonymous ones (named by a random
    id) unless all=true, as docker since API 1.42. A client of an older API (docker 20.10's CLI
    speaks 1.41) gets what it was promised: every unused volume, as dockerd does for it."""
    wanted = filters(req)
    check_filters(wanted, ("all", "label"))
    every = wanted.get("all", ["false"])[0].lower() in ("true", "1") or req.version < (1, 42)
    deleted, space = [], 0
    for name in volumes.list_volumes():
        if volumes.users(name) or not (every or volumes.is_anonymous(name)):
            continue
        if not has_labels(volumes.inspect(name)["Labels"], wanted.get("label", [])):
            continue                                   # (label=KEY[=VALUE]: only those)
        size = layers.folder_size(volumes.volume_path(name))
        volumes.remove(name)
        deleted.append(name)
        space += size
    return 200, {"VolumesDeleted": deleted or None, "SpaceReclaimed": space}


def system_df(req):
    """GET /system/df (docker system df): what the images, containers and volumes take."""
    everything = store.list_containers()
    users = {}
    for c in everything:
        users[c.config["ImageId"]] = users.get(c.config["ImageId"], 0) + 1
    listed = images.list_images(listing=True)
    # SharedSize: the bytes of an image's layers that other images have too (the CLI counts an
    # image in use as its size less those, and the rest as reclaimable)
    holders = {}
    for image in listed:
        for digest in set(image["Layers"]):
            holders[digest] = holders.get(digest, 0) + 1
    shared = {digest: layers.layer_size(digest) for digest, count in holders.items() if count > 1}
    found = [{"Id": i["Id"], "ParentId": "", "RepoTags": i["RepoTags"] or None, "RepoDigests": [],
              "Created": int(i["Created"]), "Size": i["Size"], **virtual_size(req, i["Size"]),
              "SharedSize": sum(shared.get(digest, 0) for digest in set(i["Layers"])),
              "Labels": {}, "Containers": users.get(i["Id"], 0)} for i in listed]
    shelf = [container_summary(c) | container_sizes(c) for c in everything]
    kept = [{**volumes.inspect(name), "UsageData": {"Size": layers.folder_size(volumes.volume_path(name)),
                                                    "RefCount": len(volumes.users(name))}}
            for name in volumes.list_volumes()]
    return 200, {"LayersSize": disk_use(), "Images": found, "Containers": shelf, "Volumes": kept,
                 "BuildCache": []}


def list_networks(req):
    """GET /networks (docker network ls): filters name, id, label, driver."""
    wanted = filters(req)
    check_filters(wanted, ("name", "id", "label", "driver", "type"))
    shown = []
    for record in network.list_networks(listing=True):
        checks = {"name": lambda v: v in record["Name"], "id": lambda v: record["Id"].startswith(v),
                  "driver": lambda v: v == record["Driver"],
                  "type": lambda v: v == ("builtin" if record["Name"] in network.PREDEFINED else "custom")}
        if all(any(checks[key](v) for v in values) for key, values in wanted.items() if key in checks) \
                and has_labels(record.get("Labels") or {}, wanted.get("label", [])):
            shown.append(views.network(record))
    return 200, shown


def get_network(req):
    return 200, views.network(network.find(req.params[0]))


def post_network(req):
    """POST /networks/create: a bridge network (docker network create [--subnet])."""
    body = req.json() or {}
    check_kinds(body, {"Name": str, "Driver": str, "Labels": "labels", "Internal": bool, "Attachable": bool,
                       "IPAM": dict, "Options": dict})
    ipam = body.get("IPAM") or {}
    check_kinds(ipam, {"Driver": str, "Config": "objects", "Options": "labels"}, "IPAM.")
    for config in ipam.get("Config") or []:
        check_kinds(config, {"Subnet": str, "IPRange": str, "Gateway": str, "AuxiliaryAddresses": "labels"}, "IPAM.Config[].")
    if (body.get("Driver") or "bridge") != "bridge":
        raise ApiError(400, f"lab has the bridge network driver only, not {body['Driver']!r}")
    for key in ("Ingress", "EnableIPv6", "ConfigOnly", "ConfigFrom", "Options"):
        if body.get(key):
            raise ApiError(400, f"lab's networks do not take {key}: leave it out")
    if (body.get("Scope") or "local") != "local":
        raise ApiError(400, f"lab's networks are local, not {body['Scope']!r}: a swarm scope needs a swarm (lab has none)")
    ipam = body.get("IPAM") or {}
    if (ipam.get("Driver") or "default") != "default" or ipam.get("Options"):
        raise ApiError(400, "lab's networks have docker's default IPAM driver only, with no options: leave them out")
    subnets = [c for c in ipam.get("Config") or [] if c]
    if len(subnets) > 1 or any(set(c) - {"Subnet", "Gateway", "IPRange", "AuxiliaryAddresses"} for c in subnets):
        raise ApiError(400, "lab's networks take one IPv4 --subnet (with --gateway, --ip-range, --aux-address): "
                       "leave the others out")
    given = subnets[0] if subnets else {}
    record = network.create(body.get("Name") or "", given.get("Subnet"), body.get("Labels") or {},
                            internal=bool(body.get("Internal")), gateway=given.get("Gateway") or None,
                            ip_range=given.get("IPRange") or None, aux=given.get("AuxiliaryAddresses") or None,
                            attachable=bool(body.get("Attachable")))
    return 201, {"Id": record["Id"], "Warning": ""}


def post_network_connect(req):
    """POST /networks/{id}/connect (docker network connect [--alias] [--mac-address])."""
    body = req.json() or {}
    check_kinds(body, {"Container": str, "EndpointConfig": dict})
    endpoint = body.get("EndpointConfig") or {}
    check_kinds(endpoint, {"Aliases": "strings", "MacAddress": str, "IPAMConfig": dict}, "EndpointConfig.")
    check_kinds(endpoint.get("IPAMConfig") or {}, {"IPv4Address": str}, "EndpointConfig.IPAMConfig.")
    check_endpoint(endpoint, ("Aliases", "MacAddress", "NetworkID", "EndpointID", "IPAMConfig"), "connect without it",
                   addresses=("IPv4Address",))
    container_network.connect_container(store.find_container(body.get("Container") or ""), req.params[0],
                            endpoint.get("Aliases") or (), endpoint.get("MacAddress") or None,
                            (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or None)
    return 200, None


def post_network_disconnect(req):
    """POST /networks/{id}/disconnect (docker network disconnect [-f])."""
    body = req.json() or {}
    container_network.disconnect_container(store.find_container(body.get("Container") or ""), req.params[0])
    return 200, None


def delete_network(req):
    network.remove(req.params[0])
    return 204, None


def post_prune_networks(req):
    """POST /networks/prune: the user networks no running container is on (with label=KEY[=VALUE]:
    those of them that have it)."""
    wanted = filters(req)
    check_filters(wanted, ("label",))
    removed = []
    for record in network.list_networks():
        if (record["Name"] not in network.PREDEFINED and not views.network(record)["Containers"]
                and has_labels(record.get("Labels") or {}, wanted.get("label", []))):
            try:
                network.remove(record["Id"])
                removed.append(record["Name"])
            except LabError:
                pass                                   # (a container is on it after all)
    return 200, {"NetworksDeleted": removed}


def swarm_leave(req):
    """Swarm mode answers as a node outside any swarm does (lab has none): clients that clean up
    with `docker swarm leave --force` go on."""
    raise ApiError(503, "This node is not part of a swarm")


def get_swarm(req):
    raise ApiError(503, 'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
                   "to connect this node to swarm and try again.")


ID = r"([^/]+)"
ROUTES = [
    ("GET", r"/_ping", ping), ("HEAD", r"/_ping", ping), ("GET", r"/version", version), ("GET", r"/info", info),
    ("GET", r"/events", get_events), ("GET", r"/system/df", system_df),
    ("GET", r"/volumes", list_volumes), ("POST", r"/volumes/create", post_volume),
    ("GET", rf"/volumes/{ID}", get_volume), ("DELETE", rf"/volumes/{ID}", delete_volume),
    ("POST", r"/volumes/prune", post_prune_volumes),
    ("GET", r"/networks", list_networks), ("POST", r"/networks/create", post_network),
    ("POST", r"/networks/prune", post_prune_networks), ("GET", rf"/networks/{ID}", get_network),
    ("DELETE", rf"/networks/{ID}", delete_network), ("POST", rf"/networks/{ID}/connect", post_network_connect),
    ("POST", rf"/networks/{ID}/disconnect", post_network_disconnect),
    ("POST", r"/swarm/leave", swarm_leave), ("GET", r"/swarm", get_swarm),
]
