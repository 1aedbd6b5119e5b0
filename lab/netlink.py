"""What `ip link`, `ip addr` and `ip route` say to the kernel: rtnetlink messages (man 7 rtnetlink).

A netlink socket is how a process talks to the kernel's network stack. Each request is a
message: a header (its length, its type such as RTM_NEWLINK, flags, a sequence number), a
fixed struct (ifinfomsg for a link, ifaddrmsg for an address, rtmsg for a route), then
attributes, each a (length, type, value) triple padded to 4 bytes; an attribute may hold
other attributes (nested). The kernel answers every request that asks for an ACK with an
error message whose code is 0 on success, or -errno.

A netlink socket belongs to the network namespace it was made in, for its whole life: a
process that made one before unshare(CLONE_NEWNET) still talks to the old namespace through
it. chapter 09 uses that to work on both sides of a container's network at once.

The field's library for this is pyroute2; it takes ~110 ms to import, more than all of
`lab run`. These ~160 lines do what the runtime needs (chapters/09_network/README.md).
"""
import os
import struct

from lab import syscalls

AF_NETLINK, NETLINK_ROUTE, SOCK_RAW, SOCK_CLOEXEC = 16, 0, 3, 0o2000000
AF_INET = 2
# Message types, flags (linux/netlink.h, linux/rtnetlink.h)
NLMSG_ERROR = 2
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 18, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
# Attributes (linux/if_link.h, linux/veth.h, linux/if_addr.h, linux/rtnetlink.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_GATEWAY = 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1

HEADER = struct.Struct("=IHHII")           # nlmsghdr: length, type, flags, sequence, port id
IFINFOMSG = struct.Struct("=BxHiII")       # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")        # family, prefix length, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")        # family, dst len, src len, tos, table, protocol, scope, type, flags


def attr(kind: int, value: bytes | str | int | list) -> bytes:
    """One attribute: a string ends with NUL, an int is 4 bytes, a list is nested attributes."""
    if isinstance(value, str):
        value = value.encode() + b"\0"
    elif isinstance(value, int):
        value = struct.pack("=I", value)
    elif isinstance(value, list):
        value = b"".join(value)
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def ipv4(address: str) -> bytes:
    return bytes(int(part) for part in address.split("."))


class Netlink:
    """An rtnetlink socket in the network namespace of the process that opens it."""

    def __init__(self):
        self.fd = syscalls.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC)
        self.sequence = 0

    def close(self) -> None:
        os.close(self.fd)

    def request(self, kind: int, body: bytes, flags: int = 0, what: str = "") -> bytes:
        """Send one message, wait for its answer; an error answer raises OSError(errno), whose
        text says what was asked as the `ip` command that asks the same (what)."""
        self.sequence += 1
        message = HEADER.pack(HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, self.sequence, 0) + body
        os.write(self.fd, message)
        while True:
            answer = os.read(self.fd, 65536)
            length, answer_kind, _, sequence, _ = HEADER.unpack_from(answer)
            if sequence != self.sequence:
                continue                       # (an answer to an earlier request)
            if answer_kind == NLMSG_ERROR:
                error = -struct.unpack_from("=i", answer, HEADER.size)[0]
                if error:
                    raise OSError(error, f"{what or NAMES.get(kind, kind)}: {os.strerror(error)}")
                return b""
            return answer[HEADER.size:length]  # (RTM_GETLINK: the link itself, then the ACK)

    def index(self, name: str) -> int | None:
        """The index of the interface called name, None if there is none."""
        found = self.get_link(name)
        return None if found is None else found[0]

    def get_link(self, name: str) -> tuple[int, int] | None:
        """The index and flags (IFF_UP...) of the interface called name, None if there is none
        (RTM_GETLINK)."""
        try:
            answer = self.request(RTM_GETLINK, IFINFOMSG.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, name))
        except OSError as e:
            if e.errno == 19:                 # ENODEV
                return None
            raise
        self.drain()
        _, _, index, flags, _ = IFINFOMSG.unpack_from(answer)
        return index, flags

    def drain(self) -> None:
        """Read the ACK that follows a GETLINK's answer."""
        os.read(self.fd, 65536)

    def add_bridge(self, name: str) -> None:
        """ip link add NAME type bridge"""
        info = attr(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, "bridge")])
        self.request(RTM_NEWLINK, IFINFOMSG.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, name) + info,
                     NLM_F_CREATE | NLM_F_EXCL, f"ip link add {name} type bridge")

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, peer_mac: str) -> None:
        """ip link add NAME type veth peer name PEER address MAC netns FD: a pair of linked
        interfaces, what enters one leaves the other; the peer is made in another namespace."""
        mac = bytes.fromhex(peer_mac.replace(":", ""))
        peer_info = (IFINFOMSG.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, peer) + attr(IFLA_ADDRESS, mac)
                     + attr(IFLA_NET_NS_FD, peer_netns_fd))
        info = attr(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, "veth"),
                                    attr(IFLA_INFO_DATA, [attr(VETH_INFO_PEER, peer_info)])])
        self.request(RTM_NEWLINK, IFINFOMSG.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, name) + info,
                     NLM_F_CREATE | NLM_F_EXCL, f"ip link add {name} type veth peer name {peer} netns {peer_netns_fd}")

    def set_link(self, name: str, up: bool = True, master: str | None = None) -> None:
        """ip link set NAME [master BRIDGE] up"""
        index = self.must_index(name)
        extra = attr(IFLA_MASTER, self.must_index(master)) if master else b""
        self.request(RTM_NEWLINK, IFINFOMSG.pack(0, 0, index, IFF_UP if up else 0, IFF_UP) + extra,
                     what=f"ip link set {name}{f' master {master}' if master else ''} {'up' if up else 'down'}")

    def delete_link(self, name: str) -> bool:
        """ip link del NAME (a veth takes its peer with it); False if there was none."""
        index = self.index(name)
        if index is None:
            return False
        try:
            self.request(RTM_DELLINK, IFINFOMSG.pack(0, 0, index, 0, 0), what=f"ip link del {name}")
        except OSError as e:
            if e.errno != 19:                 # gone meanwhile (its namespace went)
                raise
        return True

    def add_address(self, name: str, address: str, prefix: int) -> None:
        """ip addr add ADDRESS/PREFIX dev NAME"""
        body = IFADDRMSG.pack(AF_INET, prefix, 0, RT_SCOPE_UNIVERSE, self.must_index(name))
        self.request(RTM_NEWADDR, body + attr(IFA_LOCAL, ipv4(address)) + attr(IFA_ADDRESS, ipv4(address)),
                     NLM_F_CREATE | NLM_F_EXCL, f"ip addr add {address}/{prefix} dev {name}")

    def add_default_route(self, gateway: str) -> None:
        """ip route add default via GATEWAY"""
        body = RTMSG.pack(AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
        self.request(RTM_NEWROUTE, body + attr(RTA_GATEWAY, ipv4(gateway)), NLM_F_CREATE | NLM_F_EXCL,
                     f"ip route add default via {gateway}")

    def must_index(self, name: str) -> int:
        index = self.index(name)
        if index is None:
            raise OSError(19, f"no network interface named {name}")
        return index


NAMES = {RTM_NEWLINK: "RTM_NEWLINK", RTM_DELLINK: "RTM_DELLINK", RTM_GETLINK: "RTM_GETLINK",
         RTM_NEWADDR: "RTM_NEWADDR", RTM_NEWROUTE: "RTM_NEWROUTE"}
