"""Links: the bridge of a network and the veth pair of each container endpoint.

A bridge network is a Linux bridge (a software switch) in the host's
namespace; its own address is the subnet's gateway. Each container endpoint
is a *veth pair*, a virtual cable: one end is plugged into the bridge in the
host, the other is created directly inside the container's network namespace
under the name the container sees (``eth0``, ``eth1``...), then given its
address, its MAC and (on the first network) the default route via the gateway.

All of it goes through netlink with pyroute2, the same messages ``ip link``,
``ip addr`` and ``ip route`` send. Names are built from estiba's prefix so
that anything a crash leaves behind can be recognised and removed, and they
stay within the kernel's 15-character limit (IFNAMSIZ).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from engine.errors import RuntimeFailure
from engine.network import netns, rtnl
from engine.network.iproute import iproute, netlink_error

IFNAMSIZ = 15


def link_name(prefix: str, kind: str, ident: str) -> str:
    """``<prefix><kind><ident...>`` cut to 15 characters (the kernel's limit)."""
    base = f"{prefix}{kind}"
    return (base + ident)[:IFNAMSIZ]


def _sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as exc:
        raise RuntimeFailure(f"cannot set {path} to {value}: {exc}") from None


def enable_forwarding() -> None:
    """Let the host route between its interfaces (containers' traffic goes out this way)."""
    with open("/proc/sys/net/ipv4/ip_forward") as fh:
        if fh.read().strip() == "1":
            return
    _sysctl("/proc/sys/net/ipv4/ip_forward", "1")


def ensure_bridge(name: str, gateway: str, prefixlen: int) -> int:
    """Create the bridge with its gateway address if missing, bring it up; its index."""
    NetlinkError = netlink_error()
    with iproute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            index = found[0]
        else:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as exc:
                raise RuntimeFailure(f"cannot create bridge {name}: {exc}") from None
            index = ipr.link_lookup(ifname=name)[0]
        have = {
            (a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)
        }
        if (gateway, prefixlen) not in have:
            try:
                ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
            except NetlinkError as exc:
                if exc.code != 17:  # EEXIST
                    raise RuntimeFailure(f"cannot address bridge {name}: {exc}") from None
        ipr.link("set", index=index, state="up")
    # DNAT-ed connections to 127.0.0.1 leave through the bridge (see firewall.py).
    _sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")
    return index


def delete_link(name: str) -> bool:
    """Delete a link by name (for a veth, its peer goes too); False if it was not there."""
    NetlinkError = netlink_error()
    with iproute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as exc:
            if exc.code == 19:  # ENODEV: gone meanwhile
                return False
            raise RuntimeFailure(f"cannot delete link {name}: {exc}") from None
    return True


def host_links(prefix: str) -> dict[str, str]:
    """Links in the host whose name starts with ``prefix``: name -> kind (bridge, veth...)."""
    out = {}
    with iproute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name and name.startswith(prefix):
                info = link.get_attr("IFLA_LINKINFO")
                out[name] = info.get_attr("IFLA_INFO_KIND") if info else ""
    return out


def add_endpoint(
    ns_path: Path,
    host_name: str,
    bridge_index: int,
    ifname: str,
    mac: str,
    address: str,
    prefixlen: int,
    gateway: str | None,
    first: bool = False,
) -> None:
    """Plug a container into a bridge: veth pair, address, MAC, default route if asked.

    One netlink request makes the pair, plugs the host end into the bridge,
    brings it up and creates the peer *inside* the namespace with its final
    name and MAC (no move, no rename); a second batch, sent from inside the
    namespace, gives it its address and route. ``first``: the namespace is new,
    so only ``lo`` (index 1) exists and the peer can be given index 2 directly.
    These run on every container start, so they use :mod:`engine.network.rtnl`.
    """
    fd = netns.open_fd(ns_path)
    try:
        with rtnl.Netlink() as nl:
            nl.veth(host_name, bridge_index, ifname, fd, mac, peer_index=2 if first else 0)
            nl.commit()
    finally:
        os.close(fd)

    def inside() -> None:
        with rtnl.Netlink() as nl:
            if first:
                index = 2
                nl.link_up(1)
            else:
                index = socket.if_nametoindex(ifname)  # asks this thread's namespace
            nl.address(index, address, prefixlen)
            nl.link_up(index)
            if gateway:
                nl.default_route(index, gateway)
            nl.commit()

    try:
        netns.run_in(ns_path, inside)
    except BaseException:
        delete_link(host_name)
        raise


def link_index(name: str) -> int | None:
    NetlinkError = netlink_error()
    with iproute() as ipr:
        try:
            return ipr.link("get", ifname=name)[0]["index"]
        except NetlinkError:
            return None


def set_default_route(ns_path: Path, ifname: str, gateway: str) -> None:
    """Point the namespace's default route at ``gateway`` through ``ifname`` (replacing any)."""

    def inside() -> None:
        with iproute() as ipr:
            index = ipr.link_lookup(ifname=ifname)[0]
            ipr.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=index)

    netns.run_in(ns_path, inside)


def has_default_route(ns_path: Path) -> bool:

    def inside() -> bool:
        with iproute() as ipr:
            return any(r["dst_len"] == 0 for r in ipr.get_routes(family=2, table=254))

    return netns.run_in(ns_path, inside)
