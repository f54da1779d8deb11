"""estiba's firewall: one nftables table of its own, rewritten whole and atomically.

Everything estiba needs from netfilter lives in the table ``ip <prefix>``:

* **NAT out** (``postrouting``): traffic from a bridge subnet leaving by any
  other interface is masqueraded, so containers reach the host's networks with
  the host's address (and ``net.ipv4.ip_forward`` is switched on).
* **Published ports** (``prerouting`` for traffic from outside, ``output`` for
  traffic the host itself sends): a packet to a *local* address and a published
  port is DNAT-ed to the container's address.
* **127.0.0.1 too.** A connection to ``127.0.0.1:8080`` is DNAT-ed in
  ``output`` and then routed out of the bridge with source 127.0.0.1, which the
  kernel drops as a martian unless the bridge has ``route_localnet=1``; we set
  it on estiba's bridges only, and masquerade 127.0.0.0/8 sources leaving by a
  bridge so the container answers to the gateway, not to its own loopback.
  This is what Docker does with ``userland-proxy: false``; we chose it over a
  proxy process per port because it costs no process, adds no copy of every
  byte and keeps the client's address for traffic from outside.
* **Isolation** (``forward``): traffic between two estiba bridges is dropped;
  traffic inside one bridge is accepted (with ``br_netfilter`` loaded, bridged
  frames pass this hook too); an *internal* network has no way out at all.

The chains use policy ``accept`` and only match estiba's bridges, so the host's
own rules, in their own tables, decide everything else: we never touch them.
The whole table is rendered from the engine's state and loaded with one
``nft -f`` transaction that deletes and recreates it, so the kernel never holds
half of it and a restart that re-renders it drops anything a crash left stale.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field

from engine.errors import RuntimeFailure
from engine.network.ports import PortMapping


@dataclass
class BridgeRules:
    """What the firewall needs to know about one bridge network."""

    bridge: str
    subnet: str
    internal: bool = False


@dataclass
class PortRule:
    mapping: PortMapping
    container_ip: str
    bridge: str


@dataclass
class Ruleset:
    table: str
    bridges: list[BridgeRules] = field(default_factory=list)
    ports: list[PortRule] = field(default_factory=list)

    def render(self) -> str:
        """The nft script: (re)create the table with every chain in one transaction."""
        t = self.table
        lines = [
            f"add table ip {t}",
            f"delete table ip {t}",
            f"table ip {t} {{",
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            "    fib daddr type local jump published",
            "  }",
            "  chain output {",
            "    type nat hook output priority -100; policy accept;",
            "    fib daddr type local jump published",
            "  }",
            "  chain published {",
        ]
        for rule in self.ports:
            m = rule.mapping
            match = f"ip daddr {m.host_ip} " if m.host_ip != "0.0.0.0" else ""
            lines.append(
                f"    {match}{m.proto} dport {m.host_port} "
                f"dnat to {rule.container_ip}:{m.container_port}"
            )
        lines += [
            "  }",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
        ]
        for b in self.bridges:
            lines.append(f'    oifname "{b.bridge}" ip saddr 127.0.0.0/8 masquerade')
            if not b.internal:
                lines.append(f'    ip saddr {b.subnet} oifname != "{b.bridge}" masquerade')
        lines += [
            "  }",
            "  chain forward {",
            "    type filter hook forward priority filter; policy accept;",
        ]
        names = [b.bridge for b in self.bridges]
        for b in self.bridges:
            lines.append(f'    iifname "{b.bridge}" oifname "{b.bridge}" accept')
        for b in self.bridges:
            if b.internal:
                lines.append(f'    iifname "{b.bridge}" drop')
                lines.append(f'    oifname "{b.bridge}" drop')
        # A published port is public: reaching it through a host address is allowed from
        # any network (the DNAT made it so); only direct bridge-to-bridge traffic is cut.
        lines.append("    ct status dnat accept")
        if len(names) > 1:
            group = "{ " + ", ".join(f'"{n}"' for n in names) + " }"
            lines.append(f"    iifname {group} oifname {group} drop")
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"


def nft(script: str) -> None:
    if shutil.which("nft") is None:
        raise RuntimeFailure("the 'nft' command is missing: install Debian's nftables package")
    result = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeFailure(f"nftables refused estiba's rules: {result.stderr.strip()}")


def apply(ruleset: Ruleset) -> None:
    """Load the table, or delete it when estiba has no bridge left (nothing of ours remains)."""
    if not ruleset.bridges and not ruleset.ports:
        delete(ruleset.table)
        return
    nft(ruleset.render())


def delete(table: str) -> None:
    nft(f"add table ip {table}\ndelete table ip {table}\n")


def list_table(table: str) -> dict | None:
    """The table as nft's JSON, or None when it does not exist."""
    result = subprocess.run(
        ["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True
    )
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)
