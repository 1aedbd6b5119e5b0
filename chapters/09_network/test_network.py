"""Chapter 09: networks, how a container reaches others.   Check your work: pytest chapters/09_network

These tests never touch the machine's own network. The whole test session runs in a network
namespace of its own, which plays the host (chapters/conftest.py): lab0, the NAT rules and
the published ports live there. A second namespace plays "the internet": a web server at
203.0.113.1 (an address kept for documentation, RFC 5737) that answers with the address it
sees the request come from; the host reaches it as 203.0.113.2.
"""
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chapters.harness import LAB, check_unfinished, inspect, wait_running, wait_until
from lab import netlink, syscalls

INTERNET, HOST = "203.0.113.1", "203.0.113.2"


class Internet:
    """A network namespace with one server, joined to the host's by a veth pair (inet0-inet1)."""

    def __init__(self):
        self.host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        syscalls.unshare(syscalls.CLONE_NEWNET)                   # (this thread only goes there)
        self.ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            inside = netlink.Netlink()
            syscalls.setns(self.host_ns, syscalls.CLONE_NEWNET)
            host = netlink.Netlink()
            host.add_veth("inet0", "inet1", self.ns, "02:00:cb:00:71:01")
            host.add_address("inet0", HOST, 24)
            host.set_link("inet0")
            host.close()
            inside.set_link("lo")
            inside.add_address("inet1", INTERNET, 24)
            inside.set_link("inet1")
            inside.close()
            self.server = self.socket()
        finally:
            syscalls.setns(self.host_ns, syscalls.CLONE_NEWNET)
        # A host whose firewall drops what it forwards unless told otherwise (as docker's hosts'
        # do): the network's own FORWARD rules must let its packets through.
        subprocess.run(["iptables", "-w", "-P", "FORWARD", "DROP"], check=True)
        self.server.bind((INTERNET, 8000))
        self.server.listen(16)
        threading.Thread(target=self.serve, daemon=True).start()

    def socket(self) -> socket.socket:
        """A TCP socket of the internet's namespace (a socket stays in the one it was made in)."""
        syscalls.setns(self.ns, syscalls.CLONE_NEWNET)
        try:
            return socket.socket()
        finally:
            syscalls.setns(self.host_ns, syscalls.CLONE_NEWNET)

    def serve(self) -> None:
        while True:
            try:
                client, (peer, _) = self.server.accept()
            except OSError:
                return
            with client:
                client.recv(4096)
                client.sendall(f"HTTP/1.0 200 OK\r\n\r\n{peer}\n".encode())

    def get(self, address: str, port: int, path: str = "/") -> str:
        """What an HTTP GET from the internet to address:port answers (a published port's)."""
        with self.socket() as s:
            s.settimeout(10)
            try:
                s.connect((address, port))
            except OSError as e:
                rules = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "LAB"], capture_output=True, text=True)
                pytest.fail(f"from the internet, {address}:{port} did not reach the container ({e}): the published "
                            "port's rule in lab's chain LAB rewrites what comes for the host's port to the container's "
                            f"address and port; iptables -t nat -S LAB shows:\n{rules.stdout}{rules.stderr}")
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            return b"".join(iter(lambda: s.recv(4096), b"")).decode().split("\r\n\r\n", 1)[1]

    def close(self) -> None:
        subprocess.run(["iptables", "-w", "-P", "FORWARD", "ACCEPT"], check=True)
        self.server.close()
        link = netlink.Netlink()
        link.delete_link("inet0")
        link.close()
        os.close(self.ns)
        os.close(self.host_ns)


@pytest.fixture(scope="module")
def internet():
    world = Internet()
    yield world
    world.close()


def http_get(address: str, port: int, path: str = "/") -> str:
    """An HTTP GET from the host; the body."""
    with socket.create_connection((address, port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        return b"".join(iter(lambda: s.recv(4096), b"")).decode().split("\r\n\r\n", 1)[1]


def answers(address: str, port: int, path: str = "/hostname"):
    """The body of a GET, or None while nothing answers (for wait_until)."""
    try:
        return http_get(address, port, path)
    except OSError:
        return None


def wget(lab, url: str, *flags: str, seconds: int = 5):
    """`wget URL` in a new container (lab run FLAGS): what it fetched. The shell stays PID 1
    (`; exit`), so that timeout's SIGTERM reaches wget: PID 1 would ignore it."""
    return lab("run", "--rm", *flags, "busybox", "sh", "-c", f"timeout {seconds} wget -q -O- {url}; exit $?")


# A CGI script for busybox httpd: the address its client connects from, as httpd saw it.
PEER = (r"""mkdir /etc/cgi-bin && printf '%s\n' '#!/bin/sh' 'printf "Content-Type: text/plain\r\n\r\n%s\n" "$REMOTE_ADDR"' """
        "> /etc/cgi-bin/peer && chmod +x /etc/cgi-bin/peer")


def web_server(detached, name: str, *flags: str) -> str:
    """A container serving its /etc with busybox httpd on port 80 (/cgi-bin/peer: the client's
    address); its address, once it answers."""
    detached(name, *flags, "busybox", "sh", "-c", f"{PEER} && exec httpd -f -p 80 -h /etc")
    address = inspect(name)["NetworkSettings"]["Networks"]
    address = next(iter(address.values()))["IPAddress"]
    wait_until(lambda: answers(address, 80), 10, f"{name}'s httpd answering on {address}:80")
    return address


def links() -> set[str]:
    """This network namespace's interfaces (/proc/net is the reader's own; /sys/class/net is not)."""
    with open("/proc/net/dev") as f:
        return {line.split(":")[0].strip() for line in f.readlines()[2:]}


def veths() -> set[str]:
    return {name for name in links() if name.startswith("veth")}


def port_rules() -> list[str]:
    rules = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "LAB"], capture_output=True, text=True).stdout
    return [line for line in rules.splitlines() if line.startswith("-A LAB")]


def test_a_container_gets_an_address_and_a_route_through_the_bridge(lab):
    result = lab("run", "--rm", "--hostname", "box09", "--mac-address", "02:42:de:ad:be:ef", "busybox", "sh", "-c",
                 "ip -4 -o addr show eth0; ip route; cat /etc/hosts; ip -o link show eth0; ping -c 1 -W 2 172.30.0.1")
    assert result.returncode in (0, 1), result.stderr
    assert "link/ether 02:42:de:ad:be:ef " in result.stdout, "eth0 has not the MAC address asked (--mac-address)"
    address = re.search(r"inet (172\.30\.\d+\.\d+)/16", result.stdout)
    assert address, f"eth0 has no address of lab0's subnet, 172.30.0.0/16 (with its /16 prefix):\n{result.stdout}"
    assert "default via 172.30.0.1 dev eth0" in result.stdout, \
        f"no default route through lab0 (172.30.0.1) on eth0: the container reaches only its subnet:\n{result.stdout}"
    assert " 1 packets received" in result.stdout, ("the container does not reach its gateway, lab0's "
                                                    "172.30.0.1: is the host's end of its veth on the bridge, and up?")
    assert f"{address.group(1)}\tbox09\n" in result.stdout           # its /etc/hosts knows its address
    wait_until(lambda: not veths(), 5, "its veth gone with its namespace")     # the host's end too


def test_containers_reach_each_other_and_the_host_reaches_them(lab, detached):
    address = web_server(detached, "web09")
    result = wget(lab, f"http://{address}/hostname")
    assert result.returncode == 0 and result.stdout == inspect("web09")["Config"]["Hostname"] + "\n", result.stderr
    assert http_get(address, 80, "/hostname") == result.stdout


def test_a_container_reaches_the_internet_with_the_hosts_address(lab, internet):
    result = wget(lab, f"http://{INTERNET}:8000/")
    rules = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"], capture_output=True, text=True).stdout
    assert result.returncode == 0, (f"the container did not reach {INTERNET}:8000 in 5 s ({result.stderr.strip()}): "
                                    "lab0's masquerade sends its packets out with the host's address; "
                                    f"iptables -t nat -S POSTROUTING shows:\n{rules}")
    assert result.stdout == f"{HOST}\n"          # masqueraded: the internet sees the host, not 172.30.x
    # and only what leaves the network so, or what the host itself sends into it: a masquerade
    # without -s would rewrite what the host forwards for anyone else too
    assert sorted(line for line in rules.splitlines() if "MASQUERADE" in line and "lab0" in line) == [
        "-A POSTROUTING -o lab0 -m addrtype --src-type LOCAL -j MASQUERADE",
        "-A POSTROUTING -s 172.30.0.0/16 ! -o lab0 -j MASQUERADE"], (
        "lab0's masquerades should be the lesson's two, the subnet's packets leaving by another interface "
        f"and the host's own into lab0, nothing wider; iptables -t nat -S POSTROUTING shows:\n{rules}")


def test_a_published_port_answers_on_the_hosts_addresses_and_localhost(lab, detached, internet):
    web_server(detached, "pub09", "-p", "8080:80")
    assert lab("port", "pub09").stdout == "80/tcp -> 0.0.0.0:8080\n"
    hostname = inspect("pub09")["Config"]["Hostname"] + "\n"
    assert internet.get(HOST, 8080, "/hostname") == hostname              # from outside,
    seen = internet.get(HOST, 8080, "/cgi-bin/peer").strip()         # seen with its own address
    assert seen.removeprefix("[::ffff:").removesuffix("]") == INTERNET, f"the container saw the client as {seen}"
    assert http_get("127.0.0.1", 8080, "/hostname") == hostname           # from the host itself
    assert http_get(HOST, 8080, "/hostname") == hostname
    # A neighbour that routes the containers' subnet through the host (a LAN's router may) reaches
    # the published port only, not the container's own ports, even where the host's policy
    # forwards everything (this course's machines: FORWARD ACCEPT).
    address = inspect("pub09")["NetworkSettings"]["IPAddress"]
    subprocess.run(["nsenter", f"--net=/proc/self/fd/{internet.ns}", "ip", "route", "add", "172.16.0.0/12",
                    "via", HOST], check=True, pass_fds=(internet.ns,))
    subprocess.run(["iptables", "-w", "-P", "FORWARD", "ACCEPT"], check=True)
    try:
        with internet.socket() as direct:
            direct.setblocking(False)
            direct.connect_ex((address, 80))          # its SYN goes first, through the host as the next:
            assert internet.get(HOST, 8080, "/hostname") == hostname        # once the published port answered,
            _, connected, _ = select.select([], [direct], [], 0.1)          # the first has had its turn (before), and 0.1 s
            assert not connected or direct.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), \
                f"the neighbour reached the container's own port 80 at {address}"
    finally:
        subprocess.run(["iptables", "-w", "-P", "FORWARD", "DROP"], check=True)
        subprocess.run(["nsenter", f"--net=/proc/self/fd/{internet.ns}", "ip", "route", "del", "172.16.0.0/12"],
                       pass_fds=(internet.ns,))


# Sent from the container's network namespace (nsenter, with the host's Python: busybox has no
# raw sockets): a TCP SYN to each ADDRESS:PORT, by hand, in an Ethernet frame for the gateway's
# MAC (what a container's root may do: CAP_NET_RAW is docker's default). The last address is
# the control, which must answer, and is sent last: once a segment has come back from it
# (a SYN-ACK, or a reset), the others, sent before it on the same way (the kernel takes them
# in turn), have had their turn, and 0.1 s more. Prints, for each address, "answered" or
# "silence" (10 s without the control's answer).
RAW_SYN = r"""
import random, socket, struct, sys, time
port, gateway, me, addresses = int(sys.argv[1]), sys.argv[2], socket.inet_aton(sys.argv[3]), sys.argv[4:]
def gateway_mac():
    for line in open("/proc/net/arp"):
        fields = line.split()
        if fields[0] == gateway and fields[2] == "0x2":          # (0x2: resolved)
            return bytes.fromhex(fields[3].replace(":", ""))
deadline = time.monotonic() + 10
while (mac := gateway_mac()) is None and time.monotonic() < deadline:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"", (gateway, 9))      # (its ARP entry)
    time.sleep(0.05)
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
raw.bind(("eth0", 0))
mine = raw.getsockname()[4]
def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data + b"\0" * (len(data) % 2)))
    while total >> 16: total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
probes = {}                                               # (the address, our port) -> answered
for address in addresses:
    sport, dest = random.randint(20000, 60000), socket.inet_aton(address)
    tcp = struct.pack("!HHIIBBHHH", sport, port, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", checksum(me + dest + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, me, dest)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    raw.send(mac + mine + b"\x08\x00" + ip + tcp)
    probes[dest, sport] = False
control = (dest, sport)
raw.settimeout(0.05)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        frame = raw.recv(2048)[14:]
    except socket.timeout:
        continue
    key = (frame[12:16], struct.unpack("!H", frame[22:24])[0])
    if frame[9] == 6 and key in probes and struct.unpack("!H", frame[20:22])[0] == port:
        if key == control and not probes[key]:
            deadline = time.monotonic() + 0.1
        probes[key] = True
print(" ".join("answered" if answered else "silence" for answered in probes.values()))
"""


def test_the_hosts_loopback_services_are_out_of_a_containers_reach(lab, detached):
    """route_localnet on lab0 lets the host's own 127.0.0.1 reach a published port; it would also
    let a container's packets for 127.0.0.1 in (CVE-2020-8558): lab drops those (raw table)."""
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))            # the host's every address, 127.0.0.1 among them
    listener.listen()
    port = listener.getsockname()[1]
    detached("raw09", "busybox", "sleep", "60")
    pid, settings = inspect("raw09")["State"]["Pid"], inspect("raw09")["NetworkSettings"]
    try:
        result = subprocess.run(["nsenter", "-t", str(pid), "-n", "--", sys.executable, "-S", "-c", RAW_SYN, str(port),
                                 settings["Gateway"], settings["IPAddress"], "127.0.0.1", settings["Gateway"]],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        loopback, control = result.stdout.split()
        assert control == "answered", "the host's own address on lab0 (the gateway) did not answer a SYN from the container"
        assert loopback == "silence", "the host's 127.0.0.1 answered a SYN from the container"
    finally:
        listener.close()


def test_a_bridge_an_older_lab_made_gets_today_s_rules(lab):
    """A bridge outlives lab's upgrades (until a reboot): one made before the loopback guard, and
    whose FORWARD rules let anything in from outside, gets today's rules at the next container's
    start on it."""
    assert lab("network", "create", "older09").returncode == 0
    try:
        record = Path(os.environ["LAB_ROOT"], "networks", "older09.json")
        bridge = json.loads(record.read_text())["Bridge"]
        guard = ["PREROUTING", "-i", bridge, "-d", "127.0.0.0/8", "-j", "DROP"]
        everything_in = ["FORWARD", "!", "-i", "lab+", "-o", bridge, "-j", "ACCEPT"]
        only_published = ["FORWARD", "!", "-i", "lab+", "-o", bridge, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"]
        subprocess.run(["iptables", "-w", "-t", "raw", "-D", *guard], check=True)       # as an older lab left it
        subprocess.run(["iptables", "-w", "-D", *only_published], check=True)
        subprocess.run(["iptables", "-w", "-A", *everything_in], check=True)
        record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "Rules"}))
        for _ in range(2):               # (the first start on it may be the one that checks)
            assert lab("run", "--rm", "--network", "older09", "busybox", "true").returncode == 0
        assert subprocess.run(["iptables", "-w", "-t", "raw", "-C", *guard]).returncode == 0
        assert subprocess.run(["iptables", "-w", "-C", *only_published]).returncode == 0
        assert subprocess.run(["iptables", "-w", "-C", *everything_in], capture_output=True).returncode != 0
    finally:
        lab("network", "rm", "older09")


def test_a_published_port_without_a_host_port_gets_a_free_one(lab, detached, internet):
    web_server(detached, "free09", "-p", "80", "-p", "127.0.0.1:8081:80", "-p", "8086:53/udp")
    shown = lab("port", "free09").stdout.splitlines()
    assert shown[1:] == ["80/tcp -> 127.0.0.1:8081", "53/udp -> 0.0.0.0:8086"]
    port = int(re.fullmatch(r"80/tcp -> 0\.0\.0\.0:(\d+)", shown[0]).group(1))
    assert http_get("127.0.0.1", port, "/hostname") == http_get("127.0.0.1", 8081, "/hostname")
    with internet.socket() as outside, pytest.raises(ConnectionRefusedError):   # 127.0.0.1's only
        outside.settimeout(10)
        outside.connect((HOST, 8081))
    assert any(" -p udp " in rule and " --dport 8086 " in rule for rule in port_rules()), port_rules()


def test_a_container_that_ends_gives_its_published_port_back(lab):
    """Its port rule goes when it ends, in the foreground (lab run) or with a supervisor (-d):
    the same port can be published again at once, and no rule is left."""
    for _ in range(2):
        result = lab("run", "--rm", "-p", "8084:80", "busybox", "echo", "served")
        assert result.returncode == 0 and result.stdout == "served\n", result.stderr
        assert not port_rules()
    assert lab("run", "-d", "--rm", "--name", "ended09", "-p", "8084:80", "busybox", "true").returncode == 0
    wait_until(lambda: lab("inspect", "ended09").returncode != 0, 10, "ended09 removed once it ended (--rm)")
    assert not port_rules()


def test_a_taken_host_port_and_bad_options_are_refused_with_one_line_leaving_nothing(lab, detached):
    web_server(detached, "first09", "-p", "8082:80")
    rules = port_rules()
    for detach in ([], ["-d"]):       # (-d: the supervisor's start fails, and says why)
        result = lab("run", "--rm", *detach, "--name", "second09", "-p", "8082:80", "busybox", "true")
        assert result.returncode == 125 and "port is already allocated" in result.stderr, (detach, result.stderr)
        assert port_rules() == rules and lab("inspect", "second09").returncode != 0
    with socket.socket() as service:            # a port a program of the host listens on (sshd's 22):
        service.bind(("127.0.0.1", 0))            # the DNAT rule would hand its connections to the container
        service.listen()
        port = service.getsockname()[1]
        for published, said in ((f"127.0.0.1:{port}:80", "address already in use (a program on the host uses it"),
                                (f"{port}:80", "address already in use"),
                                ("198.51.100.9:8089:80", "198.51.100.9 is not an address of the host's")):
            result = lab("run", "--rm", "--name", "second09", "-p", published, "busybox", "true")
            assert result.returncode == 125 and said in result.stderr, (published, result.stderr)
            assert port_rules() == rules and lab("inspect", "second09").returncode != 0
    for flags, said in ((["--network", "nowhere"], "network nowhere not found"),
                        (["-p", "99999:80"], "invalid port"),
                        (["--network", "none", "-p", "80"], "-p publishes a port")):
        result = lab("run", "--rm", *flags, "busybox", "true")
        assert result.returncode == 125 and said in result.stderr, (flags, result.stderr)
        assert len(result.stderr.splitlines()) == 1
    subprocess.run(["ip", "link", "add", "uplink09", "type", "veth", "peer", "name", "uplink09p"], check=True)
    try:                                            # the host's own network, in the tests' namespace
        subprocess.run(["ip", "addr", "add", "198.51.100.7/24", "dev", "uplink09"], check=True)
        for link in ("uplink09", "uplink09p"):
            subprocess.run(["ip", "link", "set", link, "up"], check=True)
        for subnet, said in (("10.0.0.1/24", "invalid subnet"), ("127.0.0.0/24", "overlaps 127.0.0.0/8 (loopback)"),
                             ("198.51.100.128/25", "overlaps the host's route to 198.51.100.0/24 (dev uplink09)")):
            bad = lab("network", "create", "--subnet", subnet, "bad09")
            assert bad.returncode == 125 and said in bad.stderr, (subnet, bad.stderr)
            assert "bad09" not in lab("network", "ls").stdout
    finally:
        subprocess.run(["ip", "link", "del", "uplink09"])
        lab("network", "rm", "bad09")
    predefined = lab("network", "rm", "bridge")
    assert predefined.returncode == 1 and "pre-defined network" in predefined.stderr


def test_containers_of_a_user_network_find_each_other_by_name(lab, detached, internet):
    assert lab("network", "create", "--subnet", "172.31.9.0/24", "net09").returncode == 0
    try:
        address = web_server(detached, "named09", "--network", "net09")
        assert address.startswith("172.31.9.")
        # a container of another network does not reach it: the packets are dropped, so wget hears
        # nothing, and is ended (143) 0.5 s after a second wget, started after it and through the
        # host too, got the internet's answer (else: exit 3); or it fails (1), but lab does not.
        # (Started now, heard last.)
        other = subprocess.Popen([LAB, "run", "--rm", "busybox", "sh", "-c", f"wget -q -O- http://{address}/hostname & "
                                  f"wget -q -O /dev/null http://{INTERNET}:8000/ || exit 3; sleep 0.5; kill $! 2>/dev/null; wait $!"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        result = wget(lab, "http://named09/hostname", "--network", "net09")
        assert result.returncode == 0, result.stderr
        mine = lab("run", "--rm", "--network", "net09", "busybox", "ip", "-4", "-o", "addr", "show", "eth0").stdout
        assert re.search(r"inet 172\.31\.9\.\d+/24 ", mine), f"eth0 is not on the network's /24: {mine}"
        assert result.stdout == inspect("named09")["Config"]["Hostname"] + "\n"
        refused = lab("network", "rm", "net09")
        assert refused.returncode == 1 and "active endpoints" in refused.stderr
        heard, said = other.communicate(timeout=30)
        assert other.returncode != 3, f"a container of the default network did not reach the internet either: {said}"
        assert heard == "" and other.returncode in (1, 143), (
            f"a container of the default network reached one of net09 ({heard!r}), or lab failed: {said}")
    finally:
        lab("rm", "-f", "named09")
        removed = lab("network", "rm", "net09")
    assert removed.returncode == 0, removed.stderr
    assert "net09" not in lab("network", "ls").stdout


def test_new_networks_leave_the_subnets_the_host_routes_to_alone(lab, tmp_path):
    """A host whose own network is 172.31.0.0/16 (AWS's default): a bridge on 172.31.1.0/24
    would take those addresses from it. A user network, and the default bridge of a new
    LAB_ROOT on a host that routes to 172.30.9.0/24, take subnets of their own instead."""
    def subnet(listing: str, name: str) -> str:
        return next(line.split()[3] for line in listing.splitlines() if line.split()[1] == name)
    link = netlink.Netlink()
    link.add_bridge("vpc09")                                  # plays the host's network card
    try:
        link.add_address("vpc09", "172.31.0.5", 16)
        link.set_link("vpc09")
        made = lab("network", "create", "cloud09")
        assert made.returncode == 0, made.stderr
        assert subnet(lab("network", "ls").stdout, "cloud09").startswith("192.168.")    # (past every 172.31.N)
    finally:
        lab("network", "rm", "cloud09")
        link.delete_link("vpc09")
        link.close()
    shown = subprocess.run(["unshare", "--net", "sh", "-euc", "ip link add vpc09 type bridge; ip link set vpc09 up; "
                            "ip address add 172.30.9.5/24 dev vpc09; exec \"$0\" network ls", LAB],
                           env={**os.environ, "LAB_ROOT": str(tmp_path)}, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert subnet(shown.stdout, "bridge") == "172.29.0.0/16"


def test_none_host_and_another_containers_network(lab, detached, internet):
    links = lab("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout
    assert "eth0" not in links and "lo" in links
    host = lab("run", "--rm", "--network", "host", "busybox", "sh", "-c", "ip -o addr; hostname; cat /etc/hostname").stdout
    assert f"inet {HOST}/24" in host                           # the host's own interfaces
    assert host.endswith("\n{0}\n{0}\n".format(os.uname().nodename)), host     # and its name, as docker's
    address = web_server(detached, "shared09")
    shared = wget(lab, "http://127.0.0.1/hostname", "--network", "container:shared09")    # its localhost: shared09's
    assert shared.returncode == 0 and shared.stdout == inspect("shared09")["Config"]["Hostname"] + "\n"
    assert address not in lab("run", "--rm", "busybox", "ip", "-o", "addr").stdout


def test_addresses_are_never_given_twice_even_to_containers_started_at_once(lab):
    names = [f"many09-{i}" for i in range(6)]
    runs = [subprocess.Popen([LAB, "run", "-d", "--name", n, "busybox", "sleep", "60"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for n in names]
    try:
        said = [run.communicate(timeout=60)[1] for run in runs]
        for stderr in said:
            check_unfinished(stderr)
        assert all(run.returncode == 0 for run in runs), said
        addresses = [inspect(n)["NetworkSettings"]["IPAddress"] for n in names]
        assert len(set(addresses)) == len(names) and all(a.startswith("172.30.") for a in addresses)
    finally:
        for run in runs:
            run.kill()
            run.communicate()
        lab("rm", "-f", *names)


def test_nothing_is_left_after_a_killed_lab_run_and_rm_f(lab, lab_root):
    run = subprocess.Popen([LAB, "run", "--name", "killed09", "-p", "8083:80", "busybox", "sleep", "60"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    info = wait_running("killed09", run)
    # (running is recorded once the command runs: its port rule was made before the fork, its
    # veth by the child before exec)
    assert veths() and port_rules()
    run.kill()
    run.wait()
    assert lab("rm", "-f", "killed09").returncode == 0
    wait_until(lambda: not veths(), 10, "its veth gone")
    assert not port_rules()
    assert info["NetworkSettings"]["IPAddress"] not in os.listdir(lab_root / "networks" / "bridge")
    run.stderr.close()


def test_a_port_rule_is_recorded_before_it_is_made(lab, tmp_path):
    """lab killed while iptables adds its -p rule: the rule is made all the same (iptables goes
    on), and rm -f deletes it, since it was recorded first. An iptables of the test's own,
    first on PATH, holds the rule until lab is gone."""
    adding, go, folder = tmp_path / "adding", tmp_path / "go", tmp_path / "bin"
    folder.mkdir()
    (folder / "iptables").write_text(f"#!/bin/sh\ncase \" $* \" in *\" -A LAB \"*) touch {adding}\n"
                                     f"    while [ ! -e {go} ]; do sleep 0.01; done;; esac\nexec {shutil.which('iptables')} \"$@\"\n")
    (folder / "iptables").chmod(0o755)
    run = subprocess.Popen([LAB, "run", "--name", "cut09", "-p", "8090:80", "busybox", "true"],
                           env={**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: adding.exists() or run.poll() is not None, 10, "lab adding its port rule")
        run.kill()
        said = run.communicate()[1]
        check_unfinished(said)
        assert adding.exists(), f"lab ended before it published the port: {said}"
    finally:
        run.kill()
        go.touch()                                       # (whatever happened: the iptables goes on, and ends)
    wait_until(port_rules, 10, "the rule made after all")
    assert lab("rm", "-f", "cut09").returncode == 0
    assert not port_rules()
