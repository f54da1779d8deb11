"""A snapshot of the host's network and mount state, to prove a test left nothing behind.

``snapshot()`` records the host namespace's links, addresses and routes, the
whole nftables ruleset and the mount table; ``assert_unchanged(before)``
compares (waiting a little: the kernel deletes a dead namespace's veths
asynchronously). Other test sessions may run at the same time on this host
(estiba sessions use prefixes ``et<hex>``, and any estiba engine's nftables
table is named by its prefix); objects named for *them*, and mounts under
scratch directories (``/tmp``, ``/var/tmp``) other than this test's own, are
left out of the comparison. Everything else must match exactly.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from engine.network.iproute import iproute

#: Other estiba test sessions (et<hex>) and the introspect tests (eti...), never eth0.
FOREIGN_NAME = re.compile(r"^et[0-9a-fi]")


@dataclass
class HostState:
    links: set[tuple[str, str]]
    addresses: set[tuple[str, str]]
    routes: set[tuple[str, str]]
    nft: list[str]
    mounts: list[tuple[str, str, str]]

    def diff(self, other: HostState) -> list[str]:
        out = []
        for field in ("links", "addresses", "routes"):
            mine, theirs = getattr(self, field), getattr(other, field)
            out += [f"{field}: gone {x}" for x in sorted(mine - theirs)]
            out += [f"{field}: new {x}" for x in sorted(theirs - mine)]
        if self.nft != other.nft:
            out.append(f"nftables: before {self.nft} after {other.nft}")
        if sorted(self.mounts) != sorted(other.mounts):
            gone = set(self.mounts) - set(other.mounts)
            new = set(other.mounts) - set(self.mounts)
            out += [f"mount gone {m}" for m in sorted(gone)]
            out += [f"mount new {m}" for m in sorted(new)]
            if not gone and not new:
                out.append("mount table: same mounts, different multiplicity")
        return out


def _foreign(name: str, own_prefixes: tuple[str, ...], others: tuple[str, ...] = ()) -> bool:
    if name.startswith(own_prefixes):
        return False
    return bool(FOREIGN_NAME.match(name)) or (bool(others) and name.startswith(others))


def _nft_items() -> list[dict]:
    out = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True)
    return json.loads(out.stdout or '{"nftables": []}')["nftables"]


def snapshot(own_prefixes: tuple[str, ...] = (), own_paths: tuple[Path, ...] = ()) -> HostState:
    """The host's state, minus what belongs to other concurrent test sessions."""
    links, addresses, routes = set(), set(), set()
    items = _nft_items()
    # Another estiba engine's table is named by its prefix and has a "published" chain:
    # its links carry the same prefix.
    others = tuple(
        item["chain"]["table"]
        for item in items
        if "chain" in item
        and item["chain"]["name"] == "published"
        and not item["chain"]["table"].startswith(own_prefixes)
    )
    with iproute() as ipr:
        names = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            names[link["index"]] = name
            if _foreign(name, own_prefixes, others):
                continue
            info = link.get_attr("IFLA_LINKINFO")
            links.add((name, info.get_attr("IFLA_INFO_KIND") if info else ""))
        for addr in ipr.get_addr():
            name = names.get(addr["index"], "?")
            if not _foreign(name, own_prefixes, others):
                addresses.add((name, f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}"))
        for route in ipr.get_routes(family=2, table=254):
            name = names.get(route.get_attr("RTA_OIF"), "?")
            if not _foreign(name, own_prefixes, others):
                dst = route.get_attr("RTA_DST") or "default"
                routes.add((f"{dst}/{route['dst_len']}", name))
    nft = []
    for item in items:
        if "metainfo" in item:
            continue
        kind, body = next(iter(item.items()))
        table = body.get("table") if kind != "table" else body.get("name")
        if table and _foreign(table, own_prefixes, others):
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        nft.append(json.dumps({kind: body}, sort_keys=True))
    mounts = []
    # Other sessions' tests and benches mount under /tmp and /var/tmp; a real engine
    # running beside the tests (``make run``) under /run/estiba and /var/lib/estiba.
    scratch = ("/var/tmp/", "/tmp/", "/run/estiba/", "/var/lib/estiba/")
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            point = fields[4]
            sep = fields.index("-")
            if point.startswith(scratch) and not any(
                point.startswith(str(p)) for p in own_paths
            ):
                continue  # another session's containers
            mounts.append((point, fields[sep + 1], fields[sep + 2]))
    return HostState(links, addresses, routes, nft, mounts)


def assert_unchanged(
    before: HostState,
    own_prefixes: tuple[str, ...] = (),
    own_paths: tuple[Path, ...] = (),
    timeout: float = 5.0,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        after = snapshot(own_prefixes, own_paths)
        problems = before.diff(after)
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not problems, "the test left the host changed:\n" + "\n".join(problems)
