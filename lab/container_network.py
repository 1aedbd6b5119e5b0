"""A container on networks (chapter 09): its network options, checked when it is created
(--network, -p, --ip, --mac-address, --network-alias, --link, --add-host); what lab prepares in
the host before its start (a lease, the veth's host side, published ports) and undoes after
its end, even after a crash; `network connect` and `disconnect` of a container; and the files
that name its neighbours, /etc/hosts and resolv.conf.

network.py has the networks themselves (records, bridges, rules, leases) and the part you
write: connect(), where the child plugs itself in.
"""
import errno
import ipaddress
import os
import re
from pathlib import Path

from lab import Conflict, LabError, NotFound, names, netlink, store, syscalls
from lab.network import (DEFAULT, LOCALHOST, PREDEFINED, Endpoint, container_exists, find, iptables, lease, leases,
                         locked, parse_subnet, port_rule, release, set_up_bridge, to_int)


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
        if not mode.split(":", 1)[1]:
            raise LabError("--network container: needs the container's name or id after it, e.g. container:web")
        names.check_name(mode.split(":", 1)[1], "container")
        return mode
    if mode not in PREDEFINED:
        find(mode)                                  # (refused now if there is none)
    return mode


def parse_endpoint(mac: str | None, aliases=(), driver_opts: dict | None = None, ip: str | None = None,
                   link_local=()) -> dict | None:
    """--mac-address, --network-alias (names others on a user network also know it by), --ip
    (checked against its network when it starts), --link-local-ip (more addresses of eth0, in
    169.254.0.0/16: reachable on its link only), and the engine's DriverOpts (kept, as docker
    keeps them for the driver; their sysctls are refused: api.check_endpoint)."""
    for address in link_local:
        try:
            if not 169 << 24 | 254 << 16 <= to_int(address) <= 169 << 24 | 254 << 16 | 0xFFFF:
                raise ValueError(address)
        except ValueError:
            raise LabError(f"invalid --link-local-ip {address!r}: use an IPv4 link-local address (169.254.x.y)") from None
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
    if mac is None and not aliases and not driver_opts and ip is None and not link_local:
        return None
    return {"MacAddress": mac and mac.lower(), "Aliases": list(aliases) or None, "DriverOpts": driver_opts or None,
            "IPv4Address": ip, "LinkLocalIPs": list(link_local) or None}


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


def port_key(port: str) -> str:
    """A port as PortBindings and ExposedPorts name it: 80 -> 80/tcp."""
    return port if "/" in port else f"{port}/tcp"


def parse_dns(servers=(), search=(), options=()) -> dict:
    """--dns IP, --dns-search DOMAIN, --dns-option OPTION: what the container's resolv.conf says
    instead of the host's (docker's Dns, DnsSearch, DnsOptions), only those given."""
    for server in servers:
        if not is_address(server):
            raise LabError(f"invalid --dns {server!r}: give a name server's IP address, e.g. --dns 9.9.9.9")
    for flag, words in (("--dns-search", search), ("--dns-option", options)):
        for word in words:
            if not word or any(c.isspace() for c in word):
                raise LabError(f"invalid {flag} {word!r}: one word, e.g. {flag} "
                               f"{'example.com' if flag == '--dns-search' else 'ndots:2'}")
    return {key: list(value) for key, value in (("Dns", servers), ("DnsSearch", search), ("DnsOptions", options)) if value}


def is_address(text: str) -> bool:
    """An IPv4 or IPv6 address; an IPv6 one's zone (fe80::1%eth0) one word: Python's ipaddress
    takes any text after the %, a newline too, which would be a line of its own in resolv.conf."""
    if not text.isprintable() or any(c.isspace() for c in text):
        return False
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def extra_hosts_lines(config: dict) -> str:
    """The lines a container's --add-host asked for (config: its config.json), each ending in a newline."""
    return "".join(f"{spec.split(':', 1)[1]}\t{spec.split(':', 1)[0]}\n" for spec in config.get("ExtraHosts") or [])


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
            try:
                to_int(m.group(1))
            except ValueError:
                raise LabError(f"invalid IP address {m.group(1)!r} in -p {spec}: use an address of the host's, "
                               "e.g. -p 127.0.0.1:8080:80") from None
        bindings.setdefault(port_key(m.group(3) + (f"/{m.group(4)}" if m.group(4) else "")), []).append(
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
    if (container.config.get("Endpoint") or {}).get("Disconnected"):     # (see disconnect_container)
        if container.config.get("Networks"):
            raise LabError(f"container {container.name} was disconnected from its first network, {mode}, and lab "
                           "cannot start a container on its other networks without its first: connect it again "
                           f"(lab network connect {mode} {container.name})")
        return Plan()                              # on no network: its own namespace, with lo only
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
    link_local = (container.config.get("Endpoint") or {}).get("LinkLocalIPs") or []
    return Plan(endpoint=Endpoint(host, veth, record["Bridge"], address, prefix, record["Gateway"], mac, link_local),
                more=more)


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
        write_hosts(record, container)
    container.resolv_conf_file.write_text(container_resolv_conf(container.config))
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
            check_unused(host_ip, int(host_port), protocol)
            rule = port_rule(host_ip, int(host_port), protocol, settings["IPAddress"], int(port))
            settings["Rules"].append(rule)
            settings["Ports"].setdefault(key, []).append({"HostIp": host_ip, "HostPort": host_port})
            container.save_state(Network=settings)   # recorded before it is made: killed in between,
            iptables("-A", rule)                     # rm -f still deletes it (a rule never made: no harm)
            taken.append((host_ip, host_port, key))


def check_unused(host_ip: str, host_port: int, protocol: str) -> None:
    """A port a program of the host listens on (sshd's 22) is not published: the DNAT rule would
    take its connections from outside and hand them to the container. Binding a socket there
    says whether one does (SO_REUSEADDR: a closed connection's TIME_WAIT is no use)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host_ip, host_port))
        except OSError as e:
            why = ("a program on the host uses it: choose another host port" if e.errno == errno.EADDRINUSE
                   else f"{host_ip} is not an address of the host's")
            raise Conflict(f"Bind for {host_ip}:{host_port} failed: {e.strerror.lower()} ({why})") from None


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
    first = container.config.get("Endpoint") or {}
    on = set(endpoints(container)) if running else set(more) | (set() if first.get("Disconnected") else {mode})
    if record["Name"] in on:
        raise Conflict(f"endpoint with name {container.name} already exists in network {record['Name']}")
    asked = {"Aliases": list(aliases) or None, "MacAddress": mac and mac.lower(), "IPv4Address": ip}
    if record["Name"] == mode and first.get("Disconnected"):
        # its first network again, as this connect asks it (docker compose disconnects each container
        # it creates from its network, then connects it with the service's name as an alias): from
        # its next start; and at once too if it runs (below)
        container.config["Endpoint"] = {key: value for key, value in asked.items() if value} or None
        if not running:
            container.save_config()
            return
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
    store.record_network_event("connect", record, container=container.id)


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


def plug_here(endpoint: Endpoint, more: list[dict]) -> None:
    """In the child, in its new network namespace, after connect(): eth0's link-local addresses,
    then its other networks."""
    if endpoint.link_local:
        inside = netlink.Netlink()
        try:
            for address in endpoint.link_local:
                inside.add_address("eth0", address, 16)
        finally:
            inside.close()
    here = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for settings in more:
            plug(endpoint.host, here, settings)
    finally:
        os.close(here)


def disconnect_container(container: store.Container, ref: str) -> None:
    """`lab network disconnect NETWORK CONTAINER`: not on that network any more. If it runs, its
    interface there goes (deleting the host's end of a veth deletes both), and so do its
    address, its published ports there and its names in the members' /etc/hosts; its first
    network too, if asked (until its next start)."""
    record = find(ref)
    more = container.config.get("Networks") or {}
    first = container.config.get("Endpoint") or {}
    mode = container.config.get("NetworkMode") or DEFAULT
    if not container.is_running() and record["Name"] == mode and bridged(mode) and not first.get("Disconnected"):
        # its first network, while it does not run: it starts without it (lo only, if it is on no
        # other network) until a connect gives it back; Disconnected in its Endpoint says so
        container.config["Endpoint"] = first | {"Disconnected": True}
        container.config["Networks"] = {k: v for k, v in more.items() if k != mode}   # (connected again once)
        container.save_config()
        return
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
    store.record_network_event("disconnect", record, container=container.id)


def write_hosts_file(container: store.Container, joining: store.Container | None = None,
                     known: dict | None = None) -> None:
    """One container's /etc/hosts again, from the networks it is on now."""
    try:
        container.hosts_file.write_text(LOCALHOST + extra_hosts_lines(container.config)
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


def container_resolv_conf(config: dict) -> str:
    """The host's, without nameservers on 127.x (the host's loopback is not the container's);
    none left, docker's fallback: Google's public servers. --dns, --dns-search and --dns-option
    replace the host's nameserver, search and options lines."""
    given = {"nameserver": config.get("Dns"), "search": config.get("DnsSearch"), "options": config.get("DnsOptions")}
    lines = [line for line in host_resolv_conf().splitlines()
             if not re.match(r"\s*nameserver\s+(127\.|::1)", line) and not given.get((line.split() or [""])[0])]
    if not any(line.split()[:1] == ["nameserver"] for line in lines) and not given["nameserver"]:
        lines += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    lines += [f"nameserver {server}" for server in given["nameserver"] or []]
    lines += [f"{key} {' '.join(words)}" for key, words in given.items() if key != "nameserver" and words]
    return "\n".join(lines) + "\n"
