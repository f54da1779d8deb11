"""IP address management: which subnet a bridge network gets, which address a container gets.

A bridge network is an IPv4 subnet behind a Linux bridge whose own address is
the gateway. Picking a subnet must never shadow a route the host already has
(a corporate VPN on 172.17.0.0/16, the VM's own LAN, docker0): a clash would
silently send the host's own traffic into a container. So the candidates are
Docker's default pools (172.17–31.0.0/16, then 192.168.x.0/20) and the first
one that overlaps no host route, no host address and no other network wins.
Several engines can share a host (tests run many), so the choice is made under
a host-wide lock and the bridge gets its address before the lock is released:
from then on the route itself tells every other engine the subnet is taken.

Addresses inside a subnet are handed out lowest-free-first, skipping the
network and broadcast addresses and the gateway; the caller passes the
addresses in use (the endpoints recorded on disk are the truth).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network

from engine.errors import Conflict, InvalidArgument
from engine.network.iproute import iproute

HOST_LOCK = "/run/lock/estiba-ipam.lock"


def default_pools() -> Iterator[IPv4Network]:
    """Docker's default address pools, in Docker's order."""
    for second in range(17, 32):
        yield IPv4Network(f"172.{second}.0.0/16")
    for third in range(0, 256, 16):
        yield IPv4Network(f"192.168.{third}.0/20")


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """Serialise subnet choices of every estiba engine on this host."""
    os.makedirs(os.path.dirname(HOST_LOCK), exist_ok=True)
    fd = os.open(HOST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def host_networks() -> list[IPv4Network]:
    """Every IPv4 destination the host routes somewhere, and every subnet it has an address in."""
    out: list[IPv4Network] = []
    with iproute() as ipr:
        for route in ipr.get_routes(family=2, table=254):
            dst = route.get_attr("RTA_DST")
            if dst is None or route["dst_len"] == 0:
                continue  # the default route overlaps everything by definition
            out.append(IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
        for addr in ipr.get_addr(family=2):
            local = addr.get_attr("IFA_ADDRESS")
            if local and not local.startswith("127."):
                out.append(IPv4Network(f"{local}/{addr['prefixlen']}", strict=False))
    return out


def choose_subnet(taken: Iterable[IPv4Network]) -> IPv4Network:
    """The first default pool overlapping nothing in ``taken`` nor the host's routes."""
    busy = list(taken) + host_networks()
    for candidate in default_pools():
        if not any(candidate.overlaps(net) for net in busy):
            return candidate
    raise Conflict("no free subnet left in the default pools (172.17-31.0.0/16, 192.168.0.0/16)")


def parse_subnet(
    subnet: str, gateway: str | None, ip_range: str | None, taken: Iterable[IPv4Network]
) -> tuple[IPv4Network, IPv4Address, IPv4Network | None]:
    """Check a user-given subnet (and gateway, ip range): well formed, inside, not clashing."""
    try:
        net = IPv4Network(subnet, strict=True)
    except ValueError as exc:
        raise InvalidArgument(f"subnet {subnet!r}: {exc}") from None
    if net.prefixlen > 30:
        raise InvalidArgument(f"subnet {subnet}: too small for a gateway and a container (max /30)")
    for other in taken:
        if net.overlaps(other):
            raise Conflict(f"subnet {net} overlaps network {other} that estiba already uses")
    for other in host_networks():
        if net.overlaps(other):
            raise Conflict(f"subnet {net} overlaps the host's route or address {other}")
    gw = default_gateway(net) if not gateway else _address_in(gateway, net, "gateway")
    rng = None
    if ip_range:
        try:
            rng = IPv4Network(ip_range, strict=True)
        except ValueError as exc:
            raise InvalidArgument(f"ip range {ip_range!r}: {exc}") from None
        if not rng.subnet_of(net):
            raise InvalidArgument(f"ip range {rng} is not inside subnet {net}")
    return net, gw, rng


def default_gateway(net: IPv4Network) -> IPv4Address:
    return net.network_address + 1


def _address_in(text: str, net: IPv4Network, what: str) -> IPv4Address:
    try:
        addr = IPv4Address(text)
    except ValueError as exc:
        raise InvalidArgument(f"{what} {text!r}: {exc}") from None
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        raise InvalidArgument(f"{what} {addr} is not a usable address of subnet {net}")
    return addr


def allocate(
    net: IPv4Network,
    gateway: IPv4Address,
    used: Iterable[str],
    wanted: str | None = None,
    ip_range: IPv4Network | None = None,
    after: str | None = None,
) -> IPv4Address:
    """The requested address if free, else the next free one after ``after`` (wrapping
    around), within ``ip_range`` if set."""
    in_use = {IPv4Address(u) for u in used} | {gateway}
    if wanted:
        addr = _address_in(wanted, net, "address")
        if addr in in_use:
            raise Conflict(f"address {addr} is already in use on subnet {net}")
        return addr
    pool = ip_range or net
    first, last = int(pool.network_address) + 1, int(pool.broadcast_address) - 1
    if pool.prefixlen >= 31:
        first, last = int(pool.network_address), int(pool.broadcast_address)
    start = first
    if after:
        with contextlib.suppress(ValueError):
            prev = int(IPv4Address(after))
            if first <= prev < last:
                start = prev + 1
    count = last - first + 1
    for offset in range(count):
        addr = IPv4Address(first + (start - first + offset) % count)
        if addr not in in_use and addr not in (net.network_address, net.broadcast_address):
            return addr
    raise Conflict(f"no free address left in {pool}")


def mac_for(addr: IPv4Address) -> str:
    """Docker's scheme: 02:42 then the IPv4 address, so a MAC tells its container's IP."""
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)


__all__ = [
    "allocate",
    "choose_subnet",
    "default_gateway",
    "host_lock",
    "host_networks",
    "ipaddress",
    "mac_for",
    "parse_subnet",
]
