"""The uid behind a loopback TCP connection: the HTTP analogue of SO_PEERCRED.

Every local user can connect to 127.0.0.1, so loopback is no credential; but the kernel knows
which uid owns the client end of the connection. We ask it with one exact sock_diag lookup
(netlink, NETLINK_SOCK_DIAG, the socket identified by its four addresses), and fall back to
reading /proc/net/tcp{,6} where netlink is unavailable. None means "unknown": treat as a stranger.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
TCP_STATES_ALL = 0xFFFFFFFF
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_REQUEST = struct.Struct("=BBBBI")  # inet_diag_req_v2: family, protocol, ext, pad, states
_SOCKID = struct.Struct(">HH16s16s")  # sport, dport, src, dst (network order)
_SOCKID_TAIL = struct.Struct("=III")  # if, cookie[2]
_UID_OFFSET = 4 + 48 + 12  # in inet_diag_msg: family..retrans, sockid, expires/rqueue/wqueue


def is_loopback(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _packed(host: str) -> tuple[int, bytes]:
    addr = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv4Address):
        return socket.AF_INET, addr.packed + bytes(12)
    return socket.AF_INET6, addr.packed


def client_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid owning the client end of the TCP connection client → server (as the server sees
    it), or None when the kernel does not know it."""
    try:
        return _sock_diag_uid(client, server)
    except OSError:
        return _proc_net_uid(client, server)


def _sock_diag_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    family, src = _packed(client[0])
    _, dst = _packed(server[0])
    body = (
        _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, TCP_STATES_ALL)
        + _SOCKID.pack(client[1], server[1], src, dst)
        + _SOCKID_TAIL.pack(0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE)
    )
    msg = _HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        nl.sendto(msg, (0, 0))
        data = nl.recv(65536)
    length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data)
    if kind == NLMSG_ERROR:
        (errno,) = struct.unpack_from("=i", data, _HEADER.size)
        if errno in (0, -2):  # ENOENT: no such connection (the client is already gone)
            return None
        raise OSError(-errno, os.strerror(-errno))
    if kind != SOCK_DIAG_BY_FAMILY or length < _HEADER.size + _UID_OFFSET + 4:
        return None
    (uid,) = struct.unpack_from("=I", data, _HEADER.size + _UID_OFFSET)
    return int(uid)


def _proc_hex(host: str, port: int) -> str:
    """An address as /proc/net/tcp writes it: the address in host byte order words, then :PORT."""
    family, raw = _packed(host)
    size = 4 if family == socket.AF_INET else 16
    words = [raw[i : i + 4] for i in range(0, size, 4)]
    return "".join(w[::-1].hex().upper() for w in words) + f":{port:04X}"


def _proc_net_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    family, _ = _packed(client[0])
    local, remote = _proc_hex(*client), _proc_hex(*server)
    table = "/proc/net/tcp" if family == socket.AF_INET else "/proc/net/tcp6"
    try:
        with open(table, encoding="ascii") as fh:
            next(fh, None)
            for line in fh:
                fields = line.split()
                if len(fields) > 7 and fields[1] == local and fields[2] == remote:
                    return int(fields[7])
    except OSError:
        return None
    return None
