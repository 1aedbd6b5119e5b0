"""Chapter 09: networks, how a container reaches others and others reach it.

A new network namespace has one interface, lo. To reach anything, a container needs an
interface whose other end is outside: a veth pair (two interfaces joined by a virtual wire),
one end, eth0, in the container's namespace, the other on a bridge (a virtual switch, lab0)
in the host's. The bridge holds the network's first address: the containers' gateway. Then:

- the host routes packets between the bridge and its other interfaces (ip_forward);
- a masquerade rule (source NAT) sends the container's packets out with the host's address,
  and the answers back to the container;
- a published port (-p 8080:80) is a destination NAT rule: what comes to the host's port
  8080 goes to the container's address, port 80.

Docker, podman and Kubernetes' bridge plugin do the same with the same kernel pieces. lab
talks to the kernel's links through netlink (netlink.py), and writes its NAT rules with
iptables, as docker does. See man 4 veth, man 8 ip-link, man 8 iptables-extensions.

Networks: `bridge` (the default, on lab0), `none` (lo only), `host` (the host's own),
`container:NAME` (another container's), and user networks (`lab network create`), each with
a bridge and a subnet of its own, where containers also find each other by name.
"""
import os
import ipaddress
import re
import time
from pathlib import Path

from lab import Conflict, LabError, NotFound, names, netlink, store, syscalls

DEFAULT = "bridge"                        # docker's name for the default network
PREDEFINED = ("bridge", "host", "none")
BRIDGE = {"Name": "bridge", "Driver": "bridge", "Subnet": "172.30.0.0/16", "Gateway": "172.30.0.1",
          "Bridge": "lab0", "Labels": {}}
USER_SUBNETS = "172.31.{}.0/24"           # user networks get the first of these that is free
LOCALHOST = ("127.0.0.1\tlocalhost\n"
             "::1\tlocalhost ip6-localhost ip6-loopback\n")


# --- the parts you write ---------------------------------------------------------------------

def connect(endpoint: "Endpoint") -> None:
    """In the child, in its new network namespace: plug it into the network's bridge.

    endpoint.host is a netlink socket lab opened before the fork: it still speaks to the
    host's namespace. A socket opened now speaks to the container's.
    """
    # HINT: the order is the one you would type with `ip`: first the wire, then each end.
    raise NotImplementedError("chapter 09: write connect() in lab/network.py: In the child, in its new network namespace: plug it into the network's bridge (see chapters/09_network/README.md, 'Your turn')")


def network_rules(bridge: str, subnet: str) -> list[list[str]]:
    """The NAT rules of one network: [table, chain, match and target...] each."""
    # HINT: two NAT rules: one for the packets that leave the network, one for the packets the host
    # HINT: itself sends into it.
    raise NotImplementedError("chapter 09: write network_rules() in lab/network.py: The NAT rules of one network: [table, chain, match and target...] each (see chapters/09_network/README.md, 'Your turn')")


def forward_rules(bridge: str, internal: bool = False) -> list[list[str]]:
    """What the host forwards for one network (filter FORWARD), in this order: within it; not
    into another lab network (lab+: every lab bridge); out of it; into it, from outside. An
    internal network (network create --internal) keeps only the first: nothing goes out of it
    or comes in, whatever the host's own policy."""
    if internal:
        return [["filter", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"],
                ["filter", "FORWARD", "-i", bridge, "-j", "DROP"],
                ["filter", "FORWARD", "-o", bridge, "-j", "DROP"]]
    return [["filter", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"],
            ["filter", "FORWARD", "-i", bridge, "-o", "lab+", "-j", "DROP"],
            ["filter", "FORWARD", "-i", bridge, "-j", "ACCEPT"],
            ["filter", "FORWARD", "!", "-i", "lab+", "-o", bridge, "-j", "ACCEPT"]]


def rules_of(record: dict) -> list[list[str]]:
    """A network's NAT and FORWARD rules (an internal one has no way out: no masquerade)."""
    internal = record.get("Internal", False)
    nat = [] if internal else network_rules(record["Bridge"], record["Subnet"])
    return nat + forward_rules(record["Bridge"], internal)


def port_rule(host_ip: str, host_port: int, protocol: str, address: str, port: int) -> list[str]:
    """One published port's rule, in lab's chain LAB of the nat table.

    LAB sees every packet sent to one of the host's own addresses (see CHAIN_JUMPS)."""
    # HINT: a published port is a rewrite of the destination of packets that arrive for the host's
    # HINT: port: the container's address and port instead.
    raise NotImplementedError("chapter 09: write port_rule() in lab/network.py: One published port's rule, in lab's chain LAB of the nat table (see chapters/09_network/README.md, 'Your turn')")


# Packets for the host's own addresses go through LAB: those arriving (PREROUTING), and those
# the host sends itself (OUTPUT), so that curl 127.0.0.1:8080 on the host works too.
CHAIN_JUMPS = [["nat", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "LAB"],
               ["nat", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "LAB"]]


# --- addresses --------------------------------------------------------------------------------

def to_int(address: str) -> int:
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise ValueError(address)
    return int.from_bytes(bytes(int(p) for p in parts), "big")


def to_text(number: int) -> str:
    return ".".join(str(b) for b in number.to_bytes(4, "big"))


def parse_subnet(subnet: str) -> tuple[int, int]:
    """'172.31.1.0/24' -> (its first address as a number, 24); a bad one is a LabError."""
    address, _, prefix = subnet.partition("/")
    try:
        base, bits = to_int(address), int(prefix)
        if not 8 <= bits <= 30 or base & ((1 << (32 - bits)) - 1):
            raise ValueError(subnet)
    except ValueError:
        raise LabError(f"invalid subnet {subnet!r}: use ADDRESS/PREFIX with the host bits 0, "
                       "e.g. 172.31.5.0/24 (prefix 8 to 30)") from None
    return base, bits


def overlaps(a: str, b: str) -> bool:
    (x, m), (y, n) = parse_subnet(a), parse_subnet(b)
    bits = min(m, n)
    return x >> (32 - bits) == y >> (32 - bits)


# --- networks on disk -------------------------------------------------------------------------

def locked() -> store.locked:
    """The networks' lock: leases, ports, bridges and records change under it."""
    return store.locked(store.networks_dir() / ".lock")


def record_path(name: str) -> Path:
    return store.networks_dir() / f"{name}.json"


def find(ref: str) -> dict:
    """A network by name, id or id prefix (bridge exists always; its record is made on first use)."""
    if ref == DEFAULT:
        try:
            return store.read_json(record_path(DEFAULT))
        except FileNotFoundError:
            record = {**BRIDGE, "Id": os.urandom(32).hex(), "Created": time.time()}
            store.networks_dir().mkdir(parents=True, exist_ok=True)
            store.write_json(record_path(DEFAULT), record)
            return record
    if ref in ("host", "none"):
        return {"Name": ref, "Id": ref, "Driver": ref, "Subnet": None, "Gateway": None, "Bridge": None,
                "Created": 0, "Labels": {}}
    if names.is_name(ref, names.NETWORK_NAME):
        try:
            return store.read_json(record_path(ref))
        except FileNotFoundError:
            pass
        matches = [n for n in stored() if n["Id"].startswith(ref)] if len(ref) >= 3 else []
        if len(matches) == 1:
            return matches[0]
    raise NotFound(f"network {ref if names.is_name(ref, names.NETWORK_NAME) else names.shown(ref)} not found (lab network ls lists them)")


def stored() -> list[dict]:
    folder = store.networks_dir()
    return [store.read_json(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def list_networks() -> list[dict]:
    """Every network: the predefined three, then the user's."""
    user = [n for n in stored() if n["Name"] != DEFAULT]
    return [find(DEFAULT), find("host"), find("none"), *user]


def create(name: str, subnet: str | None = None, labels: dict | None = None, internal: bool = False,
           gateway: str | None = None, ip_range: str | None = None, aux: dict | None = None) -> dict:
    """`lab network create`: a record, its bridge and its rules. Bad input creates nothing.
    An internal network's containers reach each other and the host, nothing beyond. With a
    subnet: its gateway (default: the first address), the range containers get their
    addresses from (ip_range, default: all of it), and addresses kept for others (aux, docker's
    --aux-address NAME=ADDRESS)."""
    names.check_name(name, "network")
    if name in PREDEFINED:
        raise Conflict(f"network {name} is a predefined network: choose another name")
    if subnet is not None:
        parse_subnet(subnet)
        for what, address in [("--gateway", gateway), *((f"--aux-address {k}", v) for k, v in (aux or {}).items())]:
            if address is not None:
                check_host_address(address, subnet, what)
        if ip_range is not None and (parse_subnet(ip_range)[1] < parse_subnet(subnet)[1] or not overlaps(ip_range, subnet)):
            raise LabError(f"invalid --ip-range {ip_range}: it must be a part of the subnet {subnet}")
    elif gateway or ip_range or aux:
        raise LabError("--gateway, --ip-range and --aux-address need --subnet: give the subnet they belong to")
    with locked():
        if record_path(name).exists():
            raise Conflict(f"network with name {name} already exists: remove it first (lab network rm {name})")
        taken = [n["Subnet"] for n in [find(DEFAULT), *stored()]]
        if subnet is None:
            subnet = next((s for s in (USER_SUBNETS.format(i) for i in range(1, 256))
                           if not any(overlaps(s, t) for t in taken)), None)
            if subnet is None:
                raise LabError("no free subnet left for a new network: give one with --subnet")
        elif any(overlaps(subnet, t) for t in taken):
            raise Conflict(f"the subnet {subnet} overlaps another network's: choose another with --subnet")
        base, _ = parse_subnet(subnet)
        network_id = os.urandom(32).hex()
        record = {"Name": name, "Id": network_id, "Driver": "bridge", "Subnet": subnet,
                  "Gateway": gateway or to_text(base + 1), "IPRange": ip_range, "AuxiliaryAddresses": aux or None,
                  "Bridge": f"lab-{network_id[:11]}", "Created": time.time(), "Labels": labels or {},
                  "Internal": internal}
        store.write_json(record_path(name), record)
        try:
            set_up_bridge(record)
        except BaseException:
            record_path(name).unlink()
            tear_down_bridge(record)
            raise
    return record


def remove(ref: str) -> dict:
    """`lab network rm`: refused while a container is connected; then its bridge and rules go."""
    record = find(ref)
    if record["Name"] in PREDEFINED:
        raise Conflict(f"{record['Name']} is a pre-defined network and cannot be removed")
    with locked():
        users = [store.find_container(cid).name for cid in leases(record).values() if container_exists(cid)]
        if users:
            raise Conflict(f"error while removing network: network {record['Name']} id {record['Id'][:12]} has "
                           f"active endpoints ({', '.join(users)}): remove or stop them first")
        tear_down_bridge(record)
        record_path(record["Name"]).unlink()
        folder = store.networks_dir() / record["Name"]
        for lease in folder.glob("*") if folder.is_dir() else ():
            lease.unlink()
        if folder.is_dir():
            folder.rmdir()
    return record


# --- the bridge and its rules -----------------------------------------------------------------

def set_up_bridge(record: dict, link: netlink.Netlink | None = None) -> None:
    """The bridge with the gateway's address, up, and the network's rules; again after a reboot
    (which removes links and rules, not lab's records). Called under the lock; link: a netlink
    socket of the host's to use (else one of its own)."""
    rules = CHAIN_JUMPS + rules_of(record)
    own = link is None
    link = netlink.Netlink() if own else link
    try:
        if link.index(record["Bridge"]) is not None:
            return                                 # (made last: the rules are there already)
        if not Path("/proc/sys/net/ipv4/ip_forward").read_text().startswith("1"):
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1")        # the host routes
        iptables("-N", ["nat", "LAB"], missing_ok=True)
        for rule in rules:
            if not iptables("-C", rule, missing_ok=True):
                iptables("-A", rule)
        _, prefix = parse_subnet(record["Subnet"])
        link.add_bridge(record["Bridge"])
        link.add_address(record["Bridge"], record["Gateway"], prefix)
        link.set_link(record["Bridge"])
        # Packets from 127.0.0.1 (curl localhost:8080 on the host) may be routed to the bridge.
        Path(f"/proc/sys/net/ipv4/conf/{record['Bridge']}/route_localnet").write_text("1")
    finally:
        if own:
            link.close()


def tear_down_bridge(record: dict) -> None:
    link = netlink.Netlink()
    try:
        link.delete_link(record["Bridge"])
    finally:
        link.close()
    for rule in rules_of(record):
        while iptables("-D", rule, missing_ok=True):
            pass


def iptables(operation: str, rule: list[str], missing_ok: bool = False) -> bool:
    """iptables -w -t TABLE OPERATION CHAIN SPEC...; False when missing_ok and it says no."""
    import subprocess
    table, chain, *spec = rule
    try:
        result = subprocess.run(["iptables", "-w", "-t", table, operation, chain, *spec],
                                capture_output=True, text=True)
    except FileNotFoundError:
        raise LabError("networks need iptables: apt install iptables (make setup installs it), "
                       "or run with --network none") from None
    if result.returncode != 0 and not missing_ok:
        raise LabError(f"iptables -t {table} {operation} {' '.join([chain, *spec])}: {result.stderr.strip()}")
    return result.returncode == 0


# --- leases: one address per container, never two containers on one address --------------------

def leases(record: dict) -> dict[str, str]:
    """The network's leased addresses: address -> container id."""
    folder = store.networks_dir() / record["Name"]
    return {p.name: p.read_text() for p in folder.iterdir()} if folder.is_dir() else {}


def container_exists(container_id: str) -> bool:
    return (store.containers_dir() / container_id).is_dir()


def is_host(number: int, subnet: str) -> bool:
    """Whether an address a host of the subnet may have: in it, neither its first (the network's) nor its last."""
    base, prefix = parse_subnet(subnet)
    return base < number < base + (1 << (32 - prefix)) - 1


def check_host_address(address: str, subnet: str, what: str) -> None:
    try:
        number = to_int(address)
    except ValueError:
        number = -1
    if not is_host(number, subnet):
        raise LabError(f"invalid {what} {address}: not a host address of the subnet {subnet}")


def lease(record: dict, container_id: str, wanted: str | None = None) -> str:
    """The first free address of the network's range, or the one wanted (--ip), leased to the
    container (under the lock). A lease is a file made with O_EXCL; one whose container is gone
    (a crash) is taken back. Never the gateway, nor an address kept for others (--aux-address)."""
    folder = store.networks_dir() / record["Name"]
    folder.mkdir(exist_ok=True)
    kept = {record["Gateway"], *(record.get("AuxiliaryAddresses") or {}).values()}
    if wanted is not None:
        check_host_address(wanted, record["Subnet"], "--ip")
        if wanted in kept:
            raise Conflict(f"address {wanted} is the network {record['Name']}'s gateway or kept for another host")
    base, prefix = parse_subnet(record.get("IPRange") or record["Subnet"])
    numbers = [to_int(wanted)] if wanted else range(base, base + (1 << (32 - prefix)))
    for number in numbers:
        address = to_text(number)
        if address in kept or not is_host(number, record["Subnet"]):
            continue                               # (the gateway, aux addresses, the network, broadcast)
        try:
            fd = os.open(folder / address, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = (folder / address).read_text()
            if holder == container_id and wanted:
                return address                     # (its own already)
            if holder == container_id or container_exists(holder):
                continue
            (folder / address).unlink()                                   # left by a crash
            fd = os.open(folder / address, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(container_id)
        return address
    if wanted:
        raise Conflict(f"Address already in use: {wanted} has another container of network {record['Name']}")
    raise LabError(f"no address left in network {record['Name']} ({record['Subnet']}): remove containers from it")


def release(record: dict, address: str, container_id: str) -> None:
    path = store.networks_dir() / record["Name"] / address
    try:
        if path.read_text() == container_id:
            path.unlink()
    except FileNotFoundError:
        pass


# --- a container's network: made before its start, removed after its end ------------------------

class Endpoint:
    """What the child needs to plug itself in (connect): a netlink socket in the host's
    namespace, the names of its veth and bridge, its address, prefix and gateway."""

    def __init__(self, host: netlink.Netlink, veth: str, bridge: str, address: str, prefix: int, gateway: str,
                 mac: str):
        self.host = host                           # opened by lab, in the host's namespace
        self.veth, self.bridge, self.address, self.prefix, self.gateway = veth, bridge, address, prefix, gateway
        self.mac = mac


def mac_address(address: str) -> str:
    """eth0's MAC address, made from its IPv4 address as docker makes it: 02:42 and the 4 bytes."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in address.split("."))


class Plan:
    """A container's network as its child sees it: a new namespace or not, one to join, an endpoint."""

    def __init__(self, new_namespace: bool = True, join_fd: int | None = None, endpoint: Endpoint | None = None,
                 more: list[dict] = ()):
        self.new_namespace, self.join_fd, self.endpoint = new_namespace, join_fd, endpoint
        self.more = list(more)                     # its other networks (network connect): plug() each

    def close(self) -> None:
        """In lab, after the fork: the child has its copies."""
        if self.join_fd is not None:
            os.close(self.join_fd)
        if self.endpoint is not None:
            self.endpoint.host.close()


def parse_mode(mode: str | None) -> str:
    """--network: bridge (default), none, host, container:NAME, or a user network's name."""
    mode = mode or DEFAULT
    if mode == "default":
        return DEFAULT
    if mode.startswith("container:"):
        names.check_name(mode.split(":", 1)[1] or "?", "container")
        return mode
    if mode not in PREDEFINED:
        find(mode)                                  # (refused now if there is none)
    return mode


def parse_endpoint(mac: str | None, aliases=(), driver_opts: dict | None = None, ip: str | None = None) -> dict | None:
    """--mac-address, --network-alias (names others on a user network also know it by), --ip
    (checked against its network when it starts), and the engine's DriverOpts (kept, as docker
    keeps them for the driver)."""
    if ip is not None:
        try:
            to_int(ip)
        except ValueError:
            raise LabError(f"invalid --ip {ip!r}: use an IPv4 address of the network, e.g. 172.31.5.20") from None
    if mac is not None and not re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", mac):
        raise LabError(f"invalid MAC address {mac!r}: use six hex pairs, e.g. 02:42:ac:11:00:0a")
    if mac is not None and int(mac[:2], 16) & 1:
        raise LabError(f"invalid MAC address {mac!r}: that is a multicast address (the first byte must be even)")
    for alias in aliases:
        names.check_name(alias, "network alias")
    if mac is None and not aliases and not driver_opts and ip is None:
        return None
    return {"MacAddress": mac and mac.lower(), "Aliases": list(aliases) or None, "DriverOpts": driver_opts or None,
            "IPv4Address": ip}


def bridged(mode: str) -> bool:
    """Whether --network mode gives the container a veth on a bridge (not none, host, container:)."""
    return mode not in ("host", "none") and not mode.startswith("container:")


def parse_links(specs) -> list[dict]:
    """--link NAME[:ALIAS], docker's legacy links: the container NAME is known as ALIAS in this
    one's /etc/hosts, and its environment comes as ALIAS_ENV_* variables. On a bridge network."""
    links = []
    for spec in specs:
        name, _, alias = spec.lstrip("/").partition(":")
        alias = alias.rsplit("/", 1)[-1] or name
        try:
            target = store.find_container(name)
        except NotFound:
            raise NotFound(f"could not get container for {name}: --link needs an existing container") from None
        names.check_name(alias, "link alias")
        links.append({"Id": target.id, "Name": target.name, "Alias": alias})
    return links


def parse_extra_hosts(specs) -> list[str]:
    """--add-host HOST:IP (or HOST=IP): more lines in the container's /etc/hosts, kept as docker's
    ExtraHosts ("HOST:IP")."""
    found = []
    for spec in specs:
        m = re.fullmatch(r"([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)[:=]\[?([0-9A-Fa-f.:]+)\]?", spec)
        if not m or not is_address(m[2]):
            raise LabError(f"invalid --add-host {spec!r}: use HOST:IP, e.g. db.local:10.0.0.5")
        found.append(f"{m[1]}:{m[2]}")
    return found


def is_address(text: str) -> bool:
    """An IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def extra_hosts_lines(container: store.Container) -> str:
    """The lines --add-host asked for, each ending in a newline."""
    return "".join(f"{spec.split(':', 1)[1]}\t{spec.split(':', 1)[0]}\n" for spec in container.config.get("ExtraHosts") or [])


def link_environment(name: str, links: list[dict]) -> dict[str, str]:
    """ALIAS_NAME=/name/alias, and ALIAS_ENV_K=V for each of the linked container's variables."""
    env = {}
    for link in links:
        prefix = re.sub(r"[^A-Z0-9]", "_", link["Alias"].upper())
        env[f"{prefix}_NAME"] = f"/{name}/{link['Alias']}"
        target = store.Container(store.containers_dir() / link["Id"])
        for item in target.config.get("Env") or []:
            key, _, value = item.partition("=")
            if key not in ("HOME", "PATH", "HOSTNAME"):
                env[f"{prefix}_ENV_{key}"] = value
    return env


def parse_publish(specs) -> dict[str, list[dict]]:
    """-p [IP:][HOST_PORT:]PORT[/tcp|udp] -> docker's PortBindings: {"80/tcp": [{"HostIp", "HostPort"}]}."""
    bindings: dict[str, list[dict]] = {}
    for spec in specs:
        m = re.fullmatch(r"(?:(?:(\d+\.\d+\.\d+\.\d+):)?(\d*):)?(\d+)(?:/(tcp|udp))?", spec)
        ports = [m.group(2), m.group(3)] if m else []
        if not m or any(p and not 0 < int(p) < 65536 for p in ports):
            raise LabError(f"invalid port {spec!r}: use -p HOST_PORT:PORT, -p IP:HOST_PORT:PORT or -p PORT "
                           "(ports 1-65535, /tcp or /udp after)")
        if m.group(1):
            to_int(m.group(1))
        bindings.setdefault(f"{m.group(3)}/{m.group(4) or 'tcp'}", []).append(
            {"HostIp": m.group(1) or "", "HostPort": m.group(2) or ""})
    return bindings


def prepare(container: store.Container) -> Plan:
    """In lab, before the fork: what the container's network needs from the host's side (its
    bridge, an address, its published ports, its /etc/hosts and resolv.conf), recorded in its
    state (Network) so that disconnect() can undo it, even after a crash."""
    mode = container.config.get("NetworkMode") or DEFAULT
    if mode == "none":
        return Plan()
    if mode == "host":
        container.resolv_conf_file.write_text(host_resolv_conf())
        return Plan(new_namespace=False)
    if mode.startswith("container:"):
        other = store.find_container(mode.split(":", 1)[1])
        if not other.is_running():
            raise Conflict(f"cannot join network of a non running container: {other.name}")
        try:
            return Plan(new_namespace=False, join_fd=os.open(f"/proc/{other.state['Pid']}/ns/net", os.O_RDONLY | os.O_CLOEXEC))
        except FileNotFoundError:
            raise Conflict(f"cannot join network of a non running container: {other.name}") from None
    record = find(mode)
    for link in container.config.get("Links") or []:
        target = store.Container(store.containers_dir() / link["Id"]) if container_exists(link["Id"]) else None
        if target is None or not target.is_running():
            raise Conflict(f"Cannot link to a non running container: /{link['Name']} AS /{container.name}/{link['Alias']}")
    veth = f"veth{container.id[:11]}"
    _, prefix = parse_subnet(record["Subnet"])
    host = netlink.Netlink()                       # the child's way to the host's namespace
    try:
        address, mac = connect_host_side(container, record, host, veth, prefix)
        more = []
        for name, asked in (container.config.get("Networks") or {}).items():
            if name != record["Name"]:             # (its first network, disconnected and connected again)
                other = find(name)
                with locked():
                    more.append(join(container, other, asked, host))
                    write_hosts(other, container)
    except BaseException:
        host.close()
        raise
    return Plan(endpoint=Endpoint(host, veth, record["Bridge"], address, prefix, record["Gateway"], mac), more=more)


def connect_host_side(container: store.Container, record: dict, host: netlink.Netlink, veth: str,
                      prefix: int) -> tuple[str, str]:
    """prepare()'s work in the host: the bridge, a lease, the ports, the files; (address, MAC)."""
    with locked():
        set_up_bridge(record, host)
        endpoint = container.config.get("Endpoint") or {}
        address = lease(record, container.id, endpoint.get("IPv4Address"))
        mac = endpoint.get("MacAddress") or mac_address(address)
        settings = {"Name": record["Name"], "Id": record["Id"], "IPAddress": address, "IPPrefixLen": prefix,
                    "MacAddress": mac,
                    "Gateway": record["Gateway"], "Bridge": record["Bridge"], "Veth": veth, "Ports": {}, "Rules": []}
        container.save_state(Network=settings)     # from here on, disconnect() undoes it
        if container.config.get("PortBindings"):
            publish(container, settings)
            container.save_state(Network=settings)
        write_hosts(record, container)
    container.resolv_conf_file.write_text(container_resolv_conf())
    host.delete_link(veth)                         # its last run's, if the kernel has not yet
    return address, mac


def publish(container: store.Container, settings: dict) -> None:
    """The container's -p ports as DNAT rules; a port another container publishes is refused."""
    taken = [(p["HostIp"], p["HostPort"], key) for c in store.list_containers() if c.id != container.id
             for key, bound in ((c.state.get("Network") or {}).get("Ports") or {}).items() for p in bound]
    for key, bindings in (container.config.get("PortBindings") or {}).items():
        port, protocol = key.split("/")
        for binding in bindings:
            host_ip, host_port = binding.get("HostIp") or "0.0.0.0", binding.get("HostPort") or ""
            host_port = host_port or str(free_port(protocol))
            if any(p == host_port and k.endswith("/" + protocol) and (ip == host_ip or "0.0.0.0" in (ip, host_ip))
                   for ip, p, k in taken):
                raise Conflict(f"Bind for {host_ip}:{host_port} failed: port is already allocated "
                               "(another container publishes it: choose another host port)")
            rule = port_rule(host_ip, int(host_port), protocol, settings["IPAddress"], int(port))
            iptables("-A", rule)
            settings["Rules"].append(rule)
            settings["Ports"].setdefault(key, []).append({"HostIp": host_ip, "HostPort": host_port})
            taken.append((host_ip, host_port, key))


def free_port(protocol: str) -> int:
    """A port nothing on the host uses now, from the kernel's ephemeral range (-p PORT)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def disconnect(container: store.Container) -> None:
    """After the container's end (or for lab rm -f after a crash): its port rules and its lease
    go, and the other containers of its network forget its name.

    Its veth pair goes with its network namespace: when the last process in it ends, the
    kernel removes eth0, and a veth never outlives its peer. (Deleting it here would cost
    ~13 ms of every `lab run`: the kernel waits for readers of the link to finish, which it
    otherwise does in the background.)"""
    for name, settings in endpoints(container).items():
        forget(container, name, settings)


def forget(container: store.Container, name: str, settings: dict) -> None:
    """The host's side of one of its networks undone: its port rules, its lease, its names in
    the other members' /etc/hosts, its record of it."""
    for rule in settings.get("Rules") or ():
        iptables("-D", rule, missing_ok=True)
    try:
        record = find(name)
    except NotFound:
        record = None                              # (its network was removed by hand)
    with locked():
        if record is not None:
            release(record, settings["IPAddress"], container.id)
        leave(container, name)
        if record is not None:
            write_hosts(record, None)


def leave(container: store.Container, name: str) -> None:
    """Its record forgets one of its networks (under the lock)."""
    if (container.state.get("Network") or {}).get("Name") == name:
        container.save_state(Network=None)
    else:
        container.save_state(Connected={k: v for k, v in (container.state.get("Connected") or {}).items() if k != name})


# --- network connect and disconnect: more networks than the first ------------------------------

def connect_container(container: store.Container, ref: str, aliases=(), mac: str | None = None,
                      ip: str | None = None) -> None:
    """`lab network connect NETWORK CONTAINER`: the container is on that network too, from its
    next start (kept in its config: Networks), and at once if it runs: one more interface
    (eth1, eth2...), its veth's other end on the network's bridge, an address of the network's,
    its names in the members' /etc/hosts. No route changes: its default route stays its first
    network's. Its end undoes it all; its next start does it again."""
    record = find(ref)
    parse_endpoint(mac, aliases, ip=ip)            # (checked: a LabError says what is wrong)
    mode = container.config.get("NetworkMode") or DEFAULT
    if not bridged(mode):
        raise Conflict(f"container {container.name} runs with --network {mode}: it has no network of its own to connect")
    running = container.is_running()
    more = container.config.get("Networks") or {}
    on = endpoints(container) if running else {mode: {}, **more}
    if record["Name"] in on:
        raise Conflict(f"endpoint with name {container.name} already exists in network {record['Name']}")
    asked = {"Aliases": list(aliases) or None, "MacAddress": mac and mac.lower(), "IPv4Address": ip}
    container.config["Networks"] = {**more, record["Name"]: asked}
    container.save_config()
    if not running:
        return
    theirs = os.open(f"/proc/{container.state['Pid']}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    host = netlink.Netlink()
    try:
        with locked():
            here = join(container, record, asked, host)
            try:
                plug(host, theirs, here)
            except BaseException:
                host.delete_link(here["Veth"])
                release(record, here["IPAddress"], container.id)
                leave(container, record["Name"])
                raise
            write_hosts(record, container)
    except BaseException:
        container.config["Networks"] = more
        container.save_config()
        raise
    finally:
        host.close()
        os.close(theirs)


def join(container: store.Container, record: dict, asked: dict, host: netlink.Netlink) -> dict:
    """The host's side of one more network (under the lock): the bridge, a lease, the names of
    its veth and of its interface inside, recorded in its state (Connected); its settings."""
    set_up_bridge(record, host)
    address = lease(record, container.id, asked.get("IPv4Address"))
    used = {here.get("Interface", "eth0") for here in endpoints(container).values()}
    here = {"Name": record["Name"], "Id": record["Id"], "IPAddress": address,
            "IPPrefixLen": parse_subnet(record["Subnet"])[1], "MacAddress": asked.get("MacAddress") or mac_address(address),
            "Gateway": record["Gateway"], "Bridge": record["Bridge"], "Veth": f"v{record['Id'][:5]}{container.id[:9]}",
            "Interface": next(f"eth{n}" for n in range(1, 64) if f"eth{n}" not in used),
            "Aliases": asked.get("Aliases") or [], "IPv4Address": asked.get("IPv4Address")}
    container.save_state(Connected={**(container.state.get("Connected") or {}), record["Name"]: here})
    return here


def plug(host: netlink.Netlink, netns_fd: int, here: dict) -> None:
    """One more interface in a container's network namespace (netns_fd), as join() planned it:
    the veth pair from the host's side, its peer made straight in that namespace, the host's end
    on the bridge; the address and the link up through a netlink socket opened in there."""
    host.delete_link(here["Veth"])                 # (a crash's)
    host.add_veth(here["Veth"], here["Interface"], netns_fd, here["MacAddress"])
    host.set_link(here["Veth"], master=here["Bridge"])
    inside = netlink_in(netns_fd)
    try:
        inside.add_address(here["Interface"], here["IPAddress"], here["IPPrefixLen"])
        inside.set_link(here["Interface"])
    finally:
        inside.close()


def plug_here(host: netlink.Netlink, more: list[dict]) -> None:
    """In the child, in its new network namespace, after connect(): its other networks."""
    here = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for settings in more:
            plug(host, here, settings)
    finally:
        os.close(here)


def disconnect_container(container: store.Container, ref: str) -> None:
    """`lab network disconnect NETWORK CONTAINER`: not on that network any more. If it runs, its
    interface there goes (deleting the host's end of a veth deletes both), and so do its
    address, its published ports there and its names in the members' /etc/hosts; its first
    network too, if asked (until its next start)."""
    record = find(ref)
    more = container.config.get("Networks") or {}
    here = endpoints(container).get(record["Name"]) if container.is_running() else None
    if here is None and record["Name"] not in more:
        raise Conflict(f"container {container.name} is not connected to network {record['Name']}")
    if record["Name"] in more:
        container.config["Networks"] = {k: v for k, v in more.items() if k != record["Name"]}
        container.save_config()
    if here is None:
        return
    link = netlink.Netlink()
    try:
        link.delete_link(here["Veth"])
    finally:
        link.close()
    forget(container, record["Name"], here)
    write_hosts_file(container)


def write_hosts_file(container: store.Container, joining: store.Container | None = None,
                     known: dict | None = None) -> None:
    """One container's /etc/hosts again, from the networks it is on now."""
    try:
        container.hosts_file.write_text(LOCALHOST + extra_hosts_lines(container)
                                        + "\n".join(hosts_lines(container, joining, known or {})) + "\n")
    except FileNotFoundError:
        pass                                       # (removed meanwhile)


def netlink_in(netns_fd: int) -> netlink.Netlink:
    """A netlink socket that speaks to another network namespace: a socket belongs to the
    namespace it was made in, so this thread goes there to make it, and comes back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(netns_fd, syscalls.CLONE_NEWNET)
        try:
            return netlink.Netlink()
        finally:
            syscalls.setns(home, syscalls.CLONE_NEWNET)
    finally:
        os.close(home)


def write_hosts(record: dict, joining: store.Container | None) -> None:
    """/etc/hosts of the network's members (and of joining, which is not running yet): written
    again whole, in place (each is bind-mounted in its container), from every network each
    member is on (hosts_lines). On the default bridge, only the joining one's file."""
    known = {record["Name"]: members_of(record, joining)}
    _, members = known[record["Name"]]
    for member in members if record["Name"] != DEFAULT else [joining] if joining else []:
        write_hosts_file(member, joining, known)


def members_of(record: dict, joining: store.Container | None) -> tuple[dict[str, str], list[store.Container]]:
    """A network's leases (container id -> address), and its members now: those running, and
    joining (not running yet). None are listed on the default bridge: no one there knows the others."""
    leased = {cid: address for address, cid in leases(record).items()}
    members = []
    for cid in sorted(leased, key=lambda cid: to_int(leased[cid])) if record["Name"] != DEFAULT else ():
        try:
            member = store.Container(store.containers_dir() / cid)
        except FileNotFoundError:
            continue                               # (a lease left by a crash)
        if member.id == (joining.id if joining else None) or member.is_running():
            members.append(member)
    return leased, members


def hosts_lines(member: store.Container, joining: store.Container | None, known: dict) -> list[str]:
    """A container's /etc/hosts after localhost: its own names with its address on each of its
    networks, its links' (--link), and on user networks every other member's names. known:
    members_of() of the networks read so far (each is read once for all the files written)."""
    lines = []
    for n, here in enumerate(endpoints(member).values()):
        if here["Name"] not in known:
            try:
                known[here["Name"]] = members_of(find(here["Name"]), joining)
            except NotFound:
                continue                           # (its network was removed by hand)
        leased, others = known[here["Name"]]
        lines.append(f"{here['IPAddress']}\t{' '.join(known_as(member, here, hostname=n == 0))}")
        if n == 0:
            lines += [f"{leased[link['Id']]}\t{link['Alias']} {link['Name']}"
                      for link in member.config.get("Links") or [] if link["Id"] in leased]
        for other in others:
            names = known_as(other, endpoints(other).get(here["Name"]) or {}) if other.id != member.id else []
            lines += [f"{leased[other.id]}\t{' '.join(names)}"] if names else []
    return lines


def endpoints(c: store.Container) -> dict[str, dict]:
    """The networks a container is on now, by name: the one it started on (state Network),
    then those `network connect` added (state Connected)."""
    found = {c.state["Network"]["Name"]: c.state["Network"]} if c.state.get("Network") else {}
    return {**found, **(c.state.get("Connected") or {})}


def known_as(member: store.Container, here: dict, hostname: bool = False) -> list[str]:
    """The names a container has on one of its networks (here: its endpoint there): its hostname
    (in its own file), its name, its aliases (those of `network connect --alias`, or of its create)."""
    found = [member.config["Hostname"]] if hostname else []
    found += [member.config["Name"]] if member.config.get("Name") else []
    found += here["Aliases"] if "Aliases" in here else (member.config.get("Endpoint") or {}).get("Aliases") or []
    return list(dict.fromkeys(found))


def host_resolv_conf() -> str:
    """The host's resolv.conf (systemd-resolved's real one rather than its 127.0.0.53 stub)."""
    for path in ("/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"):
        try:
            return Path(path).read_text()
        except OSError:
            continue
    return ""


def container_resolv_conf() -> str:
    """The host's, without nameservers on 127.x (the host's loopback is not the container's);
    none left, docker's fallback: Google's public servers."""
    lines = [line for line in host_resolv_conf().splitlines()
             if not re.match(r"\s*nameserver\s+(127\.|::1)", line)]
    if not any(line.split()[:1] == ["nameserver"] for line in lines):
        lines += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(lines) + "\n"
