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
import sys
import time
from pathlib import Path

from lab import Conflict, LabError, NotFound, names, netlink, store

DEFAULT = "bridge"                        # docker's name for the default network
PREDEFINED = ("bridge", "host", "none")
BRIDGE = {"Name": "bridge", "Driver": "bridge", "Bridge": "lab0", "Labels": {}}
# The subnets lab picks from, the first that is free: neither another network's nor one the
# host already routes to (see free_subnet).
BRIDGE_SUBNETS = [*(f"172.{n}.0.0/16" for n in range(30, 15, -1)),     # bridge's: 172.30, 172.29, ...
                  *(f"192.168.{n}.0/20" for n in range(0, 256, 16))]     # then 192.168.0.0/20, ...
USER_SUBNETS = [*(f"172.31.{n}.0/24" for n in range(1, 256)), *(f"192.168.{n}.0/24" for n in range(256))]
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
    into another lab network (lab+: every lab bridge); out of it; into it, the answers to its
    own connections and, from outside, what a published port sent there (conntrack's DNAT);
    nothing else into it, whatever the host's own policy: a neighbour that routes the subnet
    through the host would reach every port of every container. An internal network (network
    create --internal) keeps only the first: nothing goes out of it or comes in."""
    if internal:
        return [["filter", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"],
                ["filter", "FORWARD", "-i", bridge, "-j", "DROP"],
                ["filter", "FORWARD", "-o", bridge, "-j", "DROP"]]
    return [["filter", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"],
            ["filter", "FORWARD", "-i", bridge, "-o", "lab+", "-j", "DROP"],
            ["filter", "FORWARD", "-i", bridge, "-j", "ACCEPT"],
            ["filter", "FORWARD", "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
            ["filter", "FORWARD", "!", "-i", "lab+", "-o", bridge, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"],
            ["filter", "FORWARD", "-o", bridge, "-j", "DROP"]]


def rules_of(record: dict) -> list[list[str]]:
    """A network's NAT and FORWARD rules (an internal one has no way out: no masquerade), and
    the guard of the host's loopback: route_localnet (set_up_bridge) lets the host's packets from
    127.0.0.1 into the bridge, and would let the bridge's packets for 127.0.0.1 in too, to every
    service the host keeps to itself (CVE-2020-8558). The raw table sees them first, still
    unanswered (an answer to the host's own masqueraded packets is for the gateway's address)."""
    internal = record.get("Internal", False)
    nat = [] if internal else network_rules(record["Bridge"], record["Subnet"])
    return [loopback_guard(record["Bridge"])] + nat + forward_rules(record["Bridge"], internal)


RULES = 2    # which rules_of() a bridge has: bump it when they change (obsolete_rules: what goes)


def obsolete_rules(bridge: str) -> list[list[str]]:
    """What an older lab let into a network: anything from outside (RULES 1)."""
    return [["filter", "FORWARD", "!", "-i", "lab+", "-o", bridge, "-j", "ACCEPT"]]


def loopback_guard(bridge: str) -> list[str]:
    return ["raw", "PREROUTING", "-i", bridge, "-d", "127.0.0.0/8", "-j", "DROP"]


def port_rule(host_ip: str, host_port: int, protocol: str, address: str, port: int) -> list[str]:
    """One published port's rule, in lab's chain LAB of the nat table.

    LAB sees every packet sent to one of the host's own addresses (see CHAIN_JUMPS); host_ip
    0.0.0.0 (-p 8080:80) is any of them."""
    # HINT: a published port is a rewrite of the destination of packets that arrive for the host's
    # HINT: port: the container's address and port instead.
    raise NotImplementedError("chapter 09: write port_rule() in lab/network.py: One published port's rule, in lab's chain LAB of the nat table (see chapters/09_network/README.md, 'Your turn')")


# Packets for the host's own addresses go through LAB: those arriving (PREROUTING), and those
# the host sends itself (OUTPUT), so that curl 127.0.0.1:8080 on the host works too.
CHAIN_JUMPS = [["nat", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "LAB"],
               ["nat", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "LAB"]]


# --- addresses --------------------------------------------------------------------------------

def to_int(address: str) -> int:
    """'172.30.0.2' -> its number; ValueError for anything else (010.0.0.1 too: docker's Go reads no
    leading zero, which some readers take for octal)."""
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and int(p) < 256 and (p == "0" or p[0] != "0")
                                  for p in parts):
        raise ValueError(address)
    return int.from_bytes(bytes(int(p) for p in parts), "big")


def to_text(number: int) -> str:
    return ".".join(str(b) for b in number.to_bytes(4, "big"))


def parse_subnet(subnet: str, what: str = "subnet") -> tuple[int, int]:
    """'172.31.1.0/24' -> (its first address as a number, 24); a bad one is a LabError (what: the
    option it came from)."""
    address, _, prefix = subnet.partition("/")
    try:
        base, bits = to_int(address), int(prefix)
        if not 8 <= bits <= 30 or base & ((1 << (32 - bits)) - 1):
            raise ValueError(subnet)
    except ValueError:
        raise LabError(f"invalid {what} {subnet!r}: use ADDRESS/PREFIX with the host bits 0, "
                       "e.g. 172.31.5.0/24 (prefix 8 to 30)") from None
    return base, bits


def overlaps(a: str, b: str) -> bool:
    """Whether two subnets share addresses (read as they are: a host's route may be a /32)."""
    (x, m), (y, n) = [(to_int(s.split("/")[0]), int(s.split("/")[1])) for s in (a, b)]
    bits = min(m, n)
    return x >> (32 - bits) == y >> (32 - bits)


def free_subnet(candidates: list[str], taken: list[str], ignored: str = "") -> str | None:
    """The first candidate that overlaps no subnet taken and no route of the host's (but the
    default route, and those through the interface ignored). A network on a subnet the host
    already reaches another way would take those addresses from it: on a cloud machine whose
    own network is 172.31.0.0/16 (AWS's default), a bridge with 172.31.1.0/24 cuts the host off
    from its neighbours there. Docker skips such subnets in the same way."""
    taken = taken + [route for interface, route in host_routes() if interface != ignored]
    return next((subnet for subnet in candidates if not any(overlaps(subnet, t) for t in taken)), None)


RESERVED = {"0.0.0.0/8": "this network", "127.0.0.0/8": "loopback", "169.254.0.0/16": "link-local",
            "224.0.0.0/3": "multicast and reserved"}


def check_reachable_otherwise(subnet: str) -> None:
    """A subnet given with --subnet is refused where its addresses mean something else already:
    the host's own networks (the bridge's gateway address would become the host's, and the
    host would lose its way to the real ones: its router too), loopback, link-local, multicast."""
    for reserved, what in RESERVED.items():
        if overlaps(subnet, reserved):
            raise LabError(f"the subnet {subnet} overlaps {reserved} ({what}): choose another with --subnet")
    for interface, route in host_routes():
        if not interface.startswith("lab") and overlaps(subnet, route):
            raise Conflict(f"the subnet {subnet} overlaps the host's route to {route} (dev {interface}): a network "
                           "there would cut the host off from it; choose another with --subnet")


def host_routes() -> list[tuple[str, str]]:
    """(interface, subnet) of each route of the main table but the default one, as `ip route`
    shows them. /proc/net/route is that table: addresses and masks in hexadecimal, bytes in the
    order of the machine's memory (network order read as a native number)."""
    def number(field: str) -> int:
        return int.from_bytes(bytes.fromhex(field), sys.byteorder)
    routes = []
    with open("/proc/net/route") as table:
        for line in table.readlines()[1:]:
            interface, destination, _, _, _, _, _, mask = line.split()[:8]
            prefix = bin(number(mask)).count("1")
            if prefix:
                routes.append((interface, f"{to_text(number(destination))}/{prefix}"))
    return routes


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
            subnet = free_subnet(BRIDGE_SUBNETS, [], ignored="lab0")     # (lab0 may outlive its record)
            if subnet is None:
                raise LabError("no subnet left for the default network bridge: the host routes to all of "
                               "172.16.0.0/12 and 192.168.0.0/16 already")
            record = {**BRIDGE, "Subnet": subnet, "Gateway": to_text(parse_subnet(subnet)[0] + 1),
                      "Id": os.urandom(32).hex(), "Created": time.time()}
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


def stored(listing: bool = False) -> list[dict]:
    """The networks' records. A damaged one raises, but for a listing: see store.records."""
    folder = store.networks_dir()
    return store.records(sorted(folder.glob("*.json")), store.read_json, listing) if folder.is_dir() else []


def list_networks(listing: bool = False) -> list[dict]:
    """Every network: the predefined three, then the user's."""
    if not record_path(DEFAULT).exists():
        find(DEFAULT)                           # (which makes bridge's record, on first use)
    found = stored(listing)
    bridge = [n for n in found if n["Name"] == DEFAULT]
    return [*bridge, find("host"), find("none"), *(n for n in found if n["Name"] != DEFAULT)]


def create(name: str, subnet: str | None = None, labels: dict | None = None, internal: bool = False,
           gateway: str | None = None, ip_range: str | None = None, aux: dict | None = None,
           attachable: bool = False) -> dict:
    """`lab network create`: a record, its bridge and its rules. Bad input creates nothing.
    An internal network's containers reach each other and the host, nothing beyond. With a
    subnet: its gateway (default: the first address), the range containers get their
    addresses from (ip_range, default: all of it), and addresses kept for others (aux, docker's
    --aux-address NAME=ADDRESS). attachable is kept and shown only: it matters to swarm's
    networks, and docker compose asks it of every network it makes."""
    names.check_name(name, "network")
    if name in PREDEFINED:
        raise Conflict(f"network {name} is a predefined network: choose another name")
    if subnet is not None:
        parse_subnet(subnet)
        for what, address in [("--gateway", gateway), *((f"--aux-address {k}", v) for k, v in (aux or {}).items())]:
            if address is not None:
                check_host_address(address, subnet, what)
        if ip_range is not None and (parse_subnet(ip_range, "--ip-range")[1] < parse_subnet(subnet)[1]
                                     or not overlaps(ip_range, subnet)):
            raise LabError(f"invalid --ip-range {ip_range}: it must be a part of the subnet {subnet}")
    elif gateway or ip_range or aux:
        raise LabError("--gateway, --ip-range and --aux-address need --subnet: give the subnet they belong to")
    with locked():
        if record_path(name).exists():
            raise Conflict(f"network with name {name} already exists: remove it first (lab network rm {name})")
        taken = [n["Subnet"] for n in [find(DEFAULT), *stored()]]
        if subnet is None:
            subnet = free_subnet(USER_SUBNETS, taken)
            if subnet is None:
                raise LabError("no free subnet left for a new network (other networks or the host's routes "
                               "overlap each 172.31.N.0/24 and 192.168.N.0/24): give one with --subnet")
        elif any(overlaps(subnet, t) for t in taken):
            raise Conflict(f"the subnet {subnet} overlaps another network's: choose another with --subnet")
        else:
            check_reachable_otherwise(subnet)
        base, _ = parse_subnet(subnet)
        network_id = os.urandom(32).hex()
        record = {"Name": name, "Id": network_id, "Driver": "bridge", "Subnet": subnet,
                  "Gateway": gateway or to_text(base + 1), "IPRange": ip_range, "AuxiliaryAddresses": aux or None,
                  "Bridge": f"lab-{network_id[:11]}", "Created": time.time(), "Labels": labels or {},
                  "Internal": internal, "Attachable": attachable}
        store.write_json(record_path(name), record)
        try:
            set_up_bridge(record)
        except BaseException:
            record_path(name).unlink()
            tear_down_bridge(record)
            raise
    store.record_network_event("create", record)
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
    store.record_network_event("destroy", record)
    return record


# --- the bridge and its rules -----------------------------------------------------------------

def set_up_bridge(record: dict, link: netlink.Netlink | None = None) -> None:
    """The network's rules and its bridge with the gateway's address, up; again after a reboot
    (which removes links and rules, not lab's records), and the rest of it after a `network
    create` killed half way: the bridge is brought up last, so an up bridge is a whole one.
    Called under the lock; link: a netlink socket of the host's to use (else one of its own)."""
    rules = CHAIN_JUMPS + rules_of(record)       # (first: network_rules is chapter 09's, maybe unwritten)
    own = link is None
    link = netlink.Netlink() if own else link
    try:
        found = link.get_link(record["Bridge"])
        if found is not None and found[1] & netlink.IFF_UP:
            if record.get("Rules") != RULES:               # a bridge an older lab made: today's
                put_rules(record, rules)                   # rules, once
            return
        if not Path("/proc/sys/net/ipv4/ip_forward").read_text().startswith("1"):
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1")        # the host routes
        iptables("-N", ["nat", "LAB"], missing_ok=True)
        if found is None:
            link.add_bridge(record["Bridge"])
        put_rules(record, rules)
        _, prefix = parse_subnet(record["Subnet"])
        try:
            link.add_address(record["Bridge"], record["Gateway"], prefix)
        except FileExistsError:                            # (given before the kill)
            pass
        # Packets from 127.0.0.1 (curl localhost:8080 on the host) may be routed to the bridge.
        Path(f"/proc/sys/net/ipv4/conf/{record['Bridge']}/route_localnet").write_text("1")
        link.set_link(record["Bridge"])
    finally:
        if own:
            link.close()


def put_rules(record: dict, rules: list[list[str]]) -> None:
    """The network's rules as this lab makes them (each once: -C first), none of an older lab's
    (obsolete_rules), no IPv6 on its bridge; its record says so (Rules), so that a start on it
    checks nothing more until RULES changes."""
    for rule in obsolete_rules(record["Bridge"]):
        iptables("-D", rule, missing_ok=True)
    for rule in rules:
        if not iptables("-C", rule, missing_ok=True):
            iptables("-A", rule)
    without_ipv6(record["Bridge"])
    store.write_json(record_path(record["Name"]), {**record, "Rules": RULES})


def without_ipv6(interface: str) -> None:
    """No IPv6 on interface: lab's networks have none, and an interface with IPv6 takes the
    router advertisements that come to it. A container could send one on its network and become
    the IPv6 router of the host (on the bridge) and of its neighbours (docker's CVE-2020-13401).
    In a container's new namespace, interface "default" is what its interfaces are made with."""
    path = Path(f"/proc/sys/net/ipv6/conf/{interface}/disable_ipv6")
    if path.exists() and path.read_text().strip() != "1":            # (a kernel may have no IPv6)
        path.write_text("1")


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
                 mac: str, link_local=()):
        self.host = host                           # opened by lab, in the host's namespace
        self.veth, self.bridge, self.address, self.prefix, self.gateway = veth, bridge, address, prefix, gateway
        self.mac = mac
        self.link_local = list(link_local)         # more addresses (--link-local-ip), added after connect
