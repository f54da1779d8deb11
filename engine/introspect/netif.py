"""The network namespace: the interfaces a process sees, and the cable out.

A container in its own network namespace sees only its interfaces: ``lo`` and
one end of a *veth pair*, a virtual cable whose other end lives in the host's
namespace, usually enslaved to a bridge. Netlink tells each end's peer: a veth
carries ``IFLA_LINK``, the ifindex of its peer (in the peer's namespace), and
the host end carries ``IFLA_MASTER``, the ifindex of its bridge. The container
side is read by a forked child that joined the namespace (pyroute2's
``IPRoute`` opens its netlink socket in the namespace of the caller).
"""

from __future__ import annotations

from engine.introspect._nsenter import run_in_namespaces
from engine.network.iproute import iproute


def _links_here() -> list[dict]:
    with iproute() as ip:
        addrs: dict[int, list[str]] = {}
        for a in ip.get_addr():
            addrs.setdefault(a["index"], []).append(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
        links = []
        for link in ip.get_links():
            try:
                kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
            except Exception:
                kind = None
            links.append(
                {
                    "index": link["index"],
                    "name": link.get("IFLA_IFNAME"),
                    "kind": kind or ("loopback" if link.get("IFLA_IFNAME") == "lo" else "device"),
                    "mac": link.get("IFLA_ADDRESS"),
                    "state": link.get("IFLA_OPERSTATE"),
                    "mtu": link.get("IFLA_MTU"),
                    "peer_index": link.get("IFLA_LINK"),
                    "master_index": link.get("IFLA_MASTER"),
                    "addresses": addrs.get(link["index"], []),
                }
            )
        return links


def host_links() -> list[dict]:
    """The interfaces of the caller's (the host's) network namespace."""
    return _links_here()


def container_links(pid: int) -> list[dict]:
    return run_in_namespaces(pid, ["net"], _links_here)


def interfaces(pid: int) -> dict:
    """Interfaces inside and out; each container veth with its host peer and bridge."""
    inside = container_links(pid)
    outside = host_links()
    by_index = {link["index"]: link for link in outside}
    cables = []
    for link in inside:
        if link["kind"] != "veth" or not link["peer_index"]:
            continue
        peer = by_index.get(link["peer_index"])
        if peer is None or peer["kind"] != "veth" or peer["peer_index"] != link["index"]:
            continue  # the index names an interface of another namespace, not our peer
        bridge = by_index.get(peer["master_index"]) if peer["master_index"] else None
        cables.append(
            {
                "inside": link["name"],
                "inside_index": link["index"],
                "host": peer["name"],
                "host_index": peer["index"],
                "bridge": bridge["name"] if bridge else None,
                "bridge_addresses": bridge["addresses"] if bridge else [],
            }
        )
    return {"inside": inside, "outside": outside, "veth": cables}
