"""Container networks: Docker's ``bridge``, ``host`` and ``none`` modes and user bridges.

A container on a bridge network gets its own network namespace (created here,
before the container starts, and joined by the OCI runtime through
``Sandbox.netns_path``), one veth pair per network plugged into that network's
Linux bridge, an address from the network's subnet and a default route via
the bridge's gateway address. The host masquerades its outgoing traffic and
DNATs its published ports (:mod:`engine.network.firewall`); containers on the
same user-defined network find each other by name through their ``/etc/hosts``
(:mod:`engine.network.hostsfile`).

State lives in two kinds of files under ``<root>``: ``<network id>.json`` (a
network: name, driver, subnet, bridge device) and ``sandboxes/<container
id>.json`` (a running container's namespace, endpoints and published ports).
The kernel objects are derived from those files, and every object estiba
creates carries its prefix, so :meth:`NetworkManager.recover` can tell what a
crash left behind and remove it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from engine.errors import Conflict, EngineError, Forbidden, InvalidArgument, NotFound
from engine.events import EventBus
from engine.network import firewall, hostsfile, ipam, links, netns, ports
from engine.network.state import StateLock, atomic_write_json, read_json

PREDEFINED = {"bridge": "bridge", "host": "host", "none": "null"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_PREFIX = 8


@dataclass
class Sandbox:
    """What the runtime needs to put a container on its networks."""

    container_id: str
    #: None: share the host's namespace; "": a fresh empty one from the runtime; else a path.
    netns_path: str | None
    hosts_file: Path
    resolv_conf: Path
    #: Docker's ``NetworkSettings`` JSON for ``inspect``.
    settings: dict[str, Any] = field(default_factory=dict)


def _endpoint_opts(spec: Any) -> tuple[list[str], str | None]:
    """Aliases and a fixed IPv4 address from an EndpointSpec object or Docker's JSON."""
    if spec is None:
        return [], None
    if isinstance(spec, dict):
        aliases = spec.get("aliases") or spec.get("Aliases") or []
        ipv4 = spec.get("ipv4_address") or (spec.get("IPAMConfig") or {}).get("IPv4Address")
    else:
        aliases = getattr(spec, "aliases", None) or []
        ipv4 = getattr(spec, "ipv4_address", None)
    return [str(a) for a in aliases], (str(ipv4) if ipv4 else None)


class NetworkManager:
    """Networks, and each container's place on them."""

    def __init__(self, root: Path, run_dir: Path, events: EventBus, config: Any) -> None:
        self.root = Path(root)
        self.run_dir = Path(run_dir)
        self.events = events
        self.prefix = str(config.prefix)
        if not re.fullmatch(r"[a-z][a-z0-9]*", self.prefix) or len(self.prefix) > MAX_PREFIX:
            raise InvalidArgument(
                f"engine prefix {self.prefix!r}: use up to {MAX_PREFIX} lowercase letters/digits"
            )
        self.table = self.prefix
        self.netns_dir = self.run_dir / "netns"
        self.files_dir = self.run_dir / "net"
        (self.root / "sandboxes").mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = StateLock(self.root / ".lock")
        #: Bridges known to exist in this process: name -> ifindex.
        self._ready: dict[str, int] = {}
        with self._lock():
            self._ensure_predefined()

    # -- records -------------------------------------------------------------------------------
    def _net_path(self, net_id: str) -> Path:
        return self.root / f"{net_id}.json"

    def _records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.root.glob("*.json")):
            rec = read_json(path)
            if rec:
                out.append(rec)
        return out

    def _sandboxes(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.root / "sandboxes").glob("*.json")):
            rec = read_json(path)
            if rec:
                out.append(rec)
        return out

    def _sandbox(self, container_id: str) -> dict[str, Any] | None:
        return read_json(self.root / "sandboxes" / f"{container_id}.json")

    def _save_sandbox(self, rec: dict[str, Any]) -> None:
        atomic_write_json(
            self.root / "sandboxes" / f"{rec['ContainerID']}.json", rec, durable=False
        )

    def _ensure_predefined(self) -> None:
        names = {r["Name"] for r in self._records()}
        for name, driver in PREDEFINED.items():
            if name in names:
                continue
            net_id = secrets.token_hex(32)
            rec = self._new_record(net_id, name, driver, predefined=True)
            if driver == "bridge":
                rec["Bridge"] = f"{self.prefix}0"
                rec["Options"] = {
                    "com.docker.network.bridge.default_bridge": "true",
                    "com.docker.network.bridge.name": rec["Bridge"],
                }
            atomic_write_json(self._net_path(net_id), rec)

    @staticmethod
    def _new_record(net_id: str, name: str, driver: str, predefined: bool = False) -> dict:
        return {
            "Id": net_id,
            "Name": name,
            "Driver": driver,
            "Created": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
            "Internal": False,
            "Attachable": False,
            "Labels": {},
            "Options": {},
            "Subnet": None,
            "Gateway": None,
            "IPRange": None,
            "Bridge": None,
            "Predefined": predefined,
        }

    def _find(self, id_or_name: str) -> dict[str, Any]:
        """Docker's lookup order: full id, exact name, then a unique id prefix."""
        if not id_or_name:
            raise NotFound("network name or id is empty")
        records = self._records()
        for rec in records:
            if rec["Id"] == id_or_name:
                return rec
        for rec in records:
            if rec["Name"] == id_or_name:
                return rec
        matches = [r for r in records if r["Id"].startswith(id_or_name)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"network id prefix {id_or_name!r} is ambiguous")
        raise NotFound(f"network {id_or_name} not found")

    # -- networks ------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        driver: str = "bridge",
        subnet: str | None = None,
        gateway: str | None = None,
        ip_range: str | None = None,
        internal: bool = False,
        attachable: bool = False,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        enable_ipv6: bool = False,
    ) -> dict[str, Any]:
        """Create a user-defined bridge network (its bridge exists when this returns)."""
        if not NAME.match(name or ""):
            raise InvalidArgument(f"network name {name!r}: use letters, digits and _ . - only")
        if (driver or "bridge") != "bridge":
            raise InvalidArgument(
                f"network driver {driver!r}: only 'bridge' networks can be created"
            )
        if enable_ipv6:
            raise InvalidArgument(f"network {name}: IPv6 is not supported by estiba yet")
        if gateway and not subnet:
            raise InvalidArgument(f"network {name}: a gateway needs a subnet")
        with self._lock():
            if any(r["Name"] == name for r in self._records()):
                raise Conflict(f"network with name {name} already exists")
            net_id = secrets.token_hex(32)
            rec = self._new_record(net_id, name, "bridge")
            rec.update(
                Internal=bool(internal),
                Attachable=bool(attachable),
                Labels={str(k): str(v) for k, v in (labels or {}).items()},
                Options={str(k): str(v) for k, v in (options or {}).items()},
                Bridge=links.link_name(self.prefix, "b", net_id),
            )
            with ipam.host_lock():
                taken = [IPv4Network(r["Subnet"]) for r in self._records() if r.get("Subnet")]
                if subnet:
                    net, gw, rng = ipam.parse_subnet(subnet, gateway, ip_range, taken)
                else:
                    net = ipam.choose_subnet(taken)
                    gw, rng = ipam.default_gateway(net), None
                rec.update(Subnet=str(net), Gateway=str(gw), IPRange=str(rng) if rng else None)
                atomic_write_json(self._net_path(net_id), rec)
                try:
                    self._materialize(rec, locked_host=True)
                except BaseException:
                    links.delete_link(rec["Bridge"])
                    self._net_path(net_id).unlink()
                    raise
            self._apply_firewall()
        self.events.emit("network", "create", net_id, {"name": name, "type": "bridge"})
        return self.inspect(net_id)

    def _materialize(self, rec: dict[str, Any], locked_host: bool = False) -> bool:
        """Make the kernel match a bridge network record: bridge, address, forwarding.

        True when the bridge was not known ready in this process (the caller
        then reloads the firewall, which lists every bridge)."""
        if rec["Bridge"] in self._ready and rec.get("Subnet"):
            return False
        ctx = contextlib.nullcontext() if locked_host else ipam.host_lock()
        with ctx:
            exists = rec["Bridge"] in links.host_links(rec["Bridge"])
            if not rec.get("Subnet") or (
                not exists and rec["Predefined"] and self._subnet_clashes(rec)
            ):
                taken = [
                    IPv4Network(r["Subnet"])
                    for r in self._records()
                    if r.get("Subnet") and r["Id"] != rec["Id"]
                ]
                net = ipam.choose_subnet(taken)
                rec.update(Subnet=str(net), Gateway=str(ipam.default_gateway(net)))
                atomic_write_json(self._net_path(rec["Id"]), rec)
            net = IPv4Network(rec["Subnet"])
            index = links.ensure_bridge(rec["Bridge"], rec["Gateway"], net.prefixlen)
        links.enable_forwarding()
        self._ready[rec["Bridge"]] = index
        return True

    def _subnet_clashes(self, rec: dict[str, Any]) -> bool:
        net = IPv4Network(rec["Subnet"])
        return any(net.overlaps(other) for other in ipam.host_networks())

    def _apply_firewall(self) -> None:
        existing = set(os.listdir("/sys/class/net"))  # no netlink needed (see links._pyroute2)
        rules = firewall.Ruleset(self.table)
        bridges = {}
        for rec in self._records():
            if rec["Driver"] == "bridge" and rec.get("Subnet") and rec["Bridge"] in existing:
                rules.bridges.append(
                    firewall.BridgeRules(rec["Bridge"], rec["Subnet"], rec["Internal"])
                )
                bridges[rec["Id"]] = rec["Bridge"]
        for sb in self._sandboxes():
            primary = sb.get("PortsNetwork")
            ep = sb.get("Endpoints", {}).get(primary or "")
            if not ep or primary not in bridges:
                continue
            for m in sb.get("Ports", []):
                mapping = ports.PortMapping(**m)
                rules.ports.append(firewall.PortRule(mapping, ep["IPAddress"], bridges[primary]))
        firewall.apply(rules)

    def list(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Docker's network list, with filters ``name``, ``id``, ``driver``, ``type``, ``label``."""
        filters = _normalise_filters(filters)
        out = []
        for rec in self._records():
            if _matches(rec, filters):
                out.append(self._to_docker(rec))
        return out

    def inspect(self, id_or_name: str) -> dict[str, Any]:
        """Docker's ``Network`` JSON, with every container attached and its address."""
        return self._to_docker(self._find(id_or_name))

    def get(self, id_or_name: str) -> dict[str, Any]:
        return self.inspect(id_or_name)

    def _to_docker(self, rec: dict[str, Any]) -> dict[str, Any]:
        containers = {}
        for sb in self._sandboxes():
            ep = sb.get("Endpoints", {}).get(rec["Id"])
            if ep:
                containers[sb["ContainerID"]] = {
                    "Name": sb["Name"],
                    "EndpointID": ep["EndpointID"],
                    "MacAddress": ep["MacAddress"],
                    "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}",
                    "IPv6Address": "",
                }
            elif rec["Driver"] in ("host", "null") and sb.get("Mode") == rec["Name"]:
                containers[sb["ContainerID"]] = {
                    "Name": sb["Name"],
                    "EndpointID": sb.get("EndpointID", ""),
                    "MacAddress": "",
                    "IPv4Address": "",
                    "IPv6Address": "",
                }
        config = []
        if rec.get("Subnet"):
            item = {"Subnet": rec["Subnet"], "Gateway": rec["Gateway"]}
            if rec.get("IPRange"):
                item["IPRange"] = rec["IPRange"]
            config.append(item)
        return {
            "Name": rec["Name"],
            "Id": rec["Id"],
            "Created": rec["Created"],
            "Scope": "local",
            "Driver": rec["Driver"],
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": rec["Internal"],
            "Attachable": rec["Attachable"],
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers,
            "Options": dict(rec.get("Options") or {}),
            "Labels": dict(rec.get("Labels") or {}),
        }

    def remove(self, id_or_name: str) -> None:
        """Remove a user-defined network; refused while containers are attached."""
        with self._lock():
            rec = self._find(id_or_name)
            if rec["Predefined"]:
                raise Forbidden(f"{rec['Name']} is a pre-defined network and cannot be removed")
            users = [sb["Name"] for sb in self._sandboxes() if rec["Id"] in sb.get("Endpoints", {})]
            if users:
                raise Conflict(
                    f"network {rec['Name']} has active endpoints ({', '.join(sorted(users))})"
                )
            self._net_path(rec["Id"]).unlink()
            (self.root / "sandboxes" / f".last-ip-{rec['Id']}").unlink(missing_ok=True)
            links.delete_link(rec["Bridge"])
            self._ready.pop(rec["Bridge"], None)
            self._apply_firewall()
        self.events.emit("network", "destroy", rec["Id"], {"name": rec["Name"], "type": "bridge"})

    def prune(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Remove user-defined networks no container uses (``label`` filters apply)."""
        filters = _normalise_filters(filters)
        deleted = []
        with self._lock():
            used = {nid for sb in self._sandboxes() for nid in sb.get("Endpoints", {})}
            for rec in self._records():
                if rec["Predefined"] or rec["Id"] in used or not _matches(rec, filters):
                    continue
                self.remove(rec["Id"])
                deleted.append(rec["Name"])
        return {"NetworksDeleted": deleted}

    # -- containers ----------------------------------------------------------------------------
    def setup(
        self,
        container_id: str,
        name: str,
        hostname: str,
        network_mode: str = "bridge",
        networks: dict[str, Any] | None = None,
        port_bindings: dict[str, Any] | None = None,
        publish_all_ports: bool = False,
        exposed_ports: dict[str, Any] | None = None,
        files_dir: Path | None = None,
    ) -> Sandbox:
        """Give a container its network before it starts (see :class:`Sandbox`).

        ``files_dir``: where the container's ``hosts`` and ``resolv.conf`` are kept
        (its own directory, as Docker keeps them in ``containers/<id>/``), rewritten
        in place on every start and left there when it stops; by default a directory
        of the sandbox under ``<run_dir>/net``, which goes with it.
        """
        _check_id(container_id)
        name = (name or container_id[:12]).lstrip("/")
        hostname = hostname or container_id[:12]
        mode = network_mode or "bridge"
        if mode == "default":
            mode = "bridge"
        files = self.files_dir / container_id if files_dir is None else Path(files_dir)
        with self._lock():
            if self._sandbox(container_id):
                self._teardown(container_id)  # a stale one (crash between start attempts)
            # Check everything asked for before making anything (nothing half made on error).
            other = wanted = primary = None
            if mode.startswith("container:"):
                other = self._sandbox_of(mode.split(":", 1)[1])
            elif mode not in ("host", "none"):
                primary, wanted = self._wanted_networks(mode, networks)
            files.mkdir(parents=True, exist_ok=True, mode=0o755)
            sb: dict[str, Any] = {
                "ContainerID": container_id,
                "Name": name,
                "Hostname": hostname,
                "Mode": mode,
                "NetnsPath": None,
                "HostsFile": str(files / "hosts"),
                "ResolvConf": str(files / "resolv.conf"),
                "Endpoints": {},
                "Ports": [],
                "PortsNetwork": None,
                "EndpointID": secrets.token_hex(32),
            }
            if mode == "host":
                hostsfile.write_in_place(files / "hosts", Path("/etc/hosts").read_text())
                hostsfile.write_in_place(
                    files / "resolv.conf", hostsfile.resolv_conf(keep_loopback=True)
                )
                self._save_sandbox(sb)
                return self._sandbox_obj(sb)
            hostsfile.write_in_place(files / "resolv.conf", hostsfile.resolv_conf())
            if mode == "none":
                sb["NetnsPath"] = ""
                hostsfile.write_in_place(
                    files / "hosts", hostsfile.render_hosts([("127.0.1.1", [hostname])], [])
                )
                self._save_sandbox(sb)
                return self._sandbox_obj(sb)
            if other is not None:
                sb["NetnsPath"] = other["NetnsPath"]
                # Docker: the joiner uses the other container's hosts file itself, so it
                # sees the same peers come and go.
                sb["HostsFile"] = other["HostsFile"]
                hostsfile.write_in_place(files / "resolv.conf",
                                         Path(other["ResolvConf"]).read_text())
                self._save_sandbox(sb)
                return self._sandbox_obj(sb)
            assert primary is not None and wanted is not None
            ns_path = self.netns_dir / container_id
            sb["NetnsPath"] = str(ns_path)
            # Saved once, at the end: we hold the lock, so nobody sees the work half done,
            # and a crash before the save leaves only prefixed links and an unlisted netns
            # file, which recover() removes as strays.
            try:
                netns.create(ns_path)
                for i, (rec, spec) in enumerate(wanted):
                    self._attach(sb, rec, spec, first=i == 0)
                mappings = ports.resolve(
                    port_bindings, publish_all_ports, exposed_ports, self._taken_ports(container_id)
                )
                sb["Ports"] = [m.to_dict() for m in mappings]
                sb["PortsNetwork"] = primary["Id"]
                self._save_sandbox(sb)
                if mappings:
                    self._apply_firewall()
                self._write_hosts_around(sb)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._teardown(container_id, sb=sb)
                raise
        for rec, _spec in wanted:
            self.events.emit(
                "network",
                "connect",
                rec["Id"],
                {"container": container_id, "name": rec["Name"], "type": "bridge"},
            )
        return self._sandbox_obj(sb)

    def _wanted_networks(
        self, mode: str, networks: dict[str, Any] | None
    ) -> tuple[dict[str, Any], list[tuple[dict[str, Any], Any]]]:
        """The primary network (``network_mode``) first, then the others asked for."""
        networks = networks or {}
        primary = self._find(mode)
        if primary["Driver"] != "bridge":
            raise InvalidArgument(
                f"network {mode}: container networking mode is not bridge, host or none"
            )
        wanted = [(primary, networks.get(mode) or networks.get(primary["Name"]))]
        for key, spec in networks.items():
            rec = self._find(key)
            if rec["Id"] == primary["Id"]:
                continue
            if rec["Driver"] != "bridge":
                raise InvalidArgument(f"network {key}: a container on a bridge cannot also join it")
            wanted.append((rec, spec))
        return primary, wanted

    def _taken_ports(self, container_id: str) -> set[tuple[str, int, str]]:
        return {
            (m["host_ip"], m["host_port"], m["proto"])
            for sb in self._sandboxes()
            if sb["ContainerID"] != container_id
            for m in sb.get("Ports", [])
        }

    def _sandbox_of(self, ref: str) -> dict[str, Any]:
        for sb in self._sandboxes():
            if sb["ContainerID"] == ref or sb["Name"] == ref or sb["ContainerID"].startswith(ref):
                if not sb.get("NetnsPath"):
                    raise Conflict(f"container {ref} has no network namespace of its own to share")
                return sb
        raise NotFound(f"container {ref} is not running: no network namespace to join")

    def _attach(
        self, sb: dict[str, Any], rec: dict[str, Any], spec: Any, first: bool = False
    ) -> None:
        """One endpoint: address, veth, into the namespace; recorded before the kernel work.

        Addresses are handed out round-robin (after the last one given), as
        Docker does, so an address freed a moment ago is not reused at once
        while the old veth may still be on its way out.
        """
        aliases, wanted_ip = _endpoint_opts(spec)
        if rec["Predefined"] and (aliases or wanted_ip):
            raise InvalidArgument(
                "aliases and fixed addresses are only for user-defined networks, not 'bridge'"
            )
        if rec["Id"] in sb["Endpoints"]:
            raise Conflict(f"container {sb['Name']} is already on network {rec['Name']}")
        if self._materialize(rec):
            self._apply_firewall()
        net = IPv4Network(rec["Subnet"])
        used = [
            other["Endpoints"][rec["Id"]]["IPAddress"]
            for other in self._sandboxes()
            if rec["Id"] in other.get("Endpoints", {})
        ]
        rng = IPv4Network(rec["IPRange"]) if rec.get("IPRange") else None
        cursor = self.root / "sandboxes" / f".last-ip-{rec['Id']}"
        try:
            after = cursor.read_text().strip()
        except FileNotFoundError:
            after = None
        addr = ipam.allocate(net, IPv4Address(rec["Gateway"]), used, wanted_ip, rng, after=after)
        if not wanted_ip:
            cursor.write_text(str(addr))
        taken_ifs = {ep["IfName"] for ep in sb["Endpoints"].values()}
        ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in taken_ifs)
        endpoint_id = secrets.token_hex(32)
        host_if = links.link_name(self.prefix, "v", endpoint_id)
        has_route = any(ep.get("DefaultRoute") for ep in sb["Endpoints"].values())
        gateway = rec["Gateway"] if not rec["Internal"] and not has_route else None
        ep = {
            "NetworkID": rec["Id"],
            "NetworkName": rec["Name"],
            "EndpointID": endpoint_id,
            "IfName": ifname,
            "HostIf": host_if,
            "MacAddress": ipam.mac_for(addr),
            "IPAddress": str(addr),
            "IPPrefixLen": net.prefixlen,
            "Gateway": rec["Gateway"],
            "Aliases": aliases,
            "IPAMConfig": {"IPv4Address": wanted_ip} if wanted_ip else None,
            "DefaultRoute": bool(gateway),
            "UserNetwork": not rec["Predefined"],
        }
        sb["Endpoints"][rec["Id"]] = ep
        links.add_endpoint(
            Path(sb["NetnsPath"]),
            host_if,
            self._ready[rec["Bridge"]],
            ifname,
            ep["MacAddress"],
            str(addr),
            net.prefixlen,
            gateway,
            first=first,
        )

    def teardown(self, container_id: str) -> None:
        """Take a container off its networks: veths, namespace, ports, hosts entries. Idempotent."""
        with self._lock():
            sb = self._sandbox(container_id)
            if sb is None:
                return
            self._teardown(container_id, sync=False)
        for net_id, ep in sb.get("Endpoints", {}).items():
            self.events.emit(
                "network",
                "disconnect",
                net_id,
                {"container": container_id, "name": ep.get("NetworkName", ""), "type": "bridge"},
            )

    def _teardown(
        self, container_id: str, sync: bool = True, sb: dict[str, Any] | None = None
    ) -> None:
        """Undo a sandbox. With ``sync=False`` the veths are left to the kernel: removing
        the namespace's bind mount frees the namespace once its last process is gone
        (the container's are), and the kernel then deletes every veth pair with a foot
        in it. Deleting a veth ourselves costs ~15 ms (an RCU grace period) and would be
        most of the network's cost for a short-lived container; the kernel does it in
        the background, batched. :meth:`recover` removes any veth still left."""
        sb = sb or self._sandbox(container_id)
        if sb is None:
            return
        host_ifs = [ep["HostIf"] for ep in sb.get("Endpoints", {}).values()]
        if sb.get("NetnsPath") and sb["Mode"] != "none" and not sb["Mode"].startswith("container:"):
            netns.remove(Path(sb["NetnsPath"]))
        if sync:
            for name in host_ifs:
                links.delete_link(name)
        had_ports = bool(sb.get("Ports"))
        (self.root / "sandboxes" / f"{container_id}.json").unlink(missing_ok=True)
        # The sandbox's own files, if it kept them here and not in the container's directory.
        shutil.rmtree(self.files_dir / container_id, ignore_errors=True)
        if had_ports:
            self._apply_firewall()
        self._write_hosts_around(sb, include_self=False)

    def connect(
        self,
        network: str,
        container_id: str,
        aliases: list[str] | None = None,
        ipv4_address: str | None = None,
    ) -> dict[str, Any]:
        """Plug a running container into one more network (a new ``ethN``)."""
        with self._lock():
            sb = self._running_sandbox(container_id)
            rec = self._find(network)
            if rec["Driver"] != "bridge":
                raise InvalidArgument(
                    f"network {rec['Name']}: only bridge networks can be connected"
                )
            try:
                self._attach(sb, rec, {"aliases": aliases or [], "ipv4_address": ipv4_address})
                self._save_sandbox(sb)
            except BaseException:
                ep = sb["Endpoints"].pop(rec["Id"], None)
                if ep:
                    links.delete_link(ep["HostIf"])
                    self._save_sandbox(sb)
                raise
            self._write_hosts_around(sb)
        self.events.emit(
            "network",
            "connect",
            rec["Id"],
            {"container": sb["ContainerID"], "name": rec["Name"], "type": "bridge"},
        )
        return self._endpoint_settings(sb["Endpoints"][rec["Id"]])

    def disconnect(self, network: str, container_id: str, force: bool = False) -> None:
        """Unplug a running container from a network (its veth goes, peers forget its name)."""
        with self._lock():
            sb = self._running_sandbox(container_id)
            rec = self._find(network)
            ep = sb["Endpoints"].pop(rec["Id"], None)
            if ep is None:
                if force:
                    return
                raise NotFound(f"container {sb['Name']} is not connected to network {rec['Name']}")
            links.delete_link(ep["HostIf"])
            if sb.get("PortsNetwork") == rec["Id"] and sb.get("Ports"):
                sb["Ports"] = []
                sb["PortsNetwork"] = None
                self._save_sandbox(sb)
                self._apply_firewall()
            if ep.get("DefaultRoute"):
                for other in sb["Endpoints"].values():
                    other_rec = self._find(other["NetworkID"])
                    if not other_rec["Internal"]:
                        links.set_default_route(
                            Path(sb["NetnsPath"]), other["IfName"], other["Gateway"]
                        )
                        other["DefaultRoute"] = True
                        break
            self._save_sandbox(sb)
            self._write_hosts_around(sb, extra_networks=[rec["Id"]])
        self.events.emit(
            "network",
            "disconnect",
            rec["Id"],
            {"container": sb["ContainerID"], "name": rec["Name"], "type": "bridge"},
        )

    def rename(self, container_id: str, new_name: str) -> None:
        """The container's new name in its peers' hosts files."""
        with self._lock():
            sb = self._sandbox(container_id)
            if sb is None:
                return
            sb["Name"] = new_name.lstrip("/")
            self._save_sandbox(sb)
            self._write_hosts_around(sb)

    def _running_sandbox(self, ref: str) -> dict[str, Any]:
        sb = self._sandbox(ref)
        if sb is None:
            matches = [
                s
                for s in self._sandboxes()
                if s["Name"] == ref.lstrip("/") or s["ContainerID"].startswith(ref)
            ]
            if len(matches) != 1:
                raise Conflict(f"container {ref} is not running: it has no network sandbox")
            sb = matches[0]
        if sb["Mode"] in ("host", "none") or sb["Mode"].startswith("container:"):
            raise Conflict(f"container {sb['Name']} uses network mode {sb['Mode']}")
        return sb

    def sandbox(self, container_id: str) -> Sandbox | None:
        """The container's current sandbox (None when it is not set up)."""
        sb = self._sandbox(container_id)
        return self._sandbox_obj(sb) if sb else None

    # -- hosts files ---------------------------------------------------------------------------
    def _write_hosts_around(
        self,
        sb: dict[str, Any],
        include_self: bool = True,
        extra_networks: list[str] | None = None,
    ) -> None:
        """Rewrite the hosts file of ``sb`` and of every container sharing a user network."""
        mine = {nid for nid, ep in sb.get("Endpoints", {}).items() if ep.get("UserNetwork", True)}
        touched = mine | set(extra_networks or [])
        if not touched:  # only the default bridge: no names to share, no peers to tell
            if include_self:
                self._write_hosts(sb, [], set())
            return
        user_nets = {
            r["Id"] for r in self._records() if r["Driver"] == "bridge" and not r["Predefined"]
        }
        touched &= user_nets
        all_sbs = self._sandboxes()
        if include_self and not any(o["ContainerID"] == sb["ContainerID"] for o in all_sbs):
            all_sbs.append(sb)
        for other in all_sbs:
            if other["ContainerID"] == sb["ContainerID"]:
                if include_self:
                    self._write_hosts(sb, all_sbs, user_nets)
            elif touched & set(other.get("Endpoints", {})):
                self._write_hosts(other, all_sbs, user_nets)

    def _write_hosts(
        self, sb: dict[str, Any], all_sbs: list[dict[str, Any]], user_nets: set[str]
    ) -> None:
        if sb["Mode"] in ("host", "none") or sb["Mode"].startswith("container:"):
            return
        path = Path(sb["HostsFile"])
        if not path.parent.is_dir():
            return
        eps = sb.get("Endpoints", {})
        primary = next(iter(eps.values()), None)
        own = [(primary["IPAddress"], [sb["Hostname"]])] if primary else []
        peers = []
        for other in all_sbs:
            if other["ContainerID"] == sb["ContainerID"]:
                continue
            for net_id, ep in other.get("Endpoints", {}).items():
                if net_id in user_nets and net_id in eps:
                    names = [other["Name"], *ep.get("Aliases", []), other["ContainerID"][:12]]
                    peers.append((ep["IPAddress"], names))
        hostsfile.write_in_place(path, hostsfile.render_hosts(own, peers))

    # -- Docker's NetworkSettings --------------------------------------------------------------
    @staticmethod
    def _endpoint_settings(ep: dict[str, Any]) -> dict[str, Any]:
        return {
            "IPAMConfig": ep.get("IPAMConfig"),
            "Links": None,
            "Aliases": ep.get("Aliases") or None,
            "NetworkID": ep["NetworkID"],
            "EndpointID": ep["EndpointID"],
            "Gateway": ep["Gateway"],
            "IPAddress": ep["IPAddress"],
            "IPPrefixLen": ep["IPPrefixLen"],
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "MacAddress": ep["MacAddress"],
            "DriverOpts": None,
        }

    def _sandbox_obj(self, sb: dict[str, Any]) -> Sandbox:
        port_map: dict[str, Any] = {}
        for m in sb.get("Ports", []):
            key = f"{m['container_port']}/{m['proto']}"
            port_map.setdefault(key, []).append(
                {"HostIp": m["host_ip"], "HostPort": str(m["host_port"])}
            )
        nets: dict[str, Any] = {}
        for ep in sb.get("Endpoints", {}).values():
            nets[ep["NetworkName"]] = self._endpoint_settings(ep)
        if sb["Mode"] in ("host", "none"):
            rec = self._find(sb["Mode"])
            nets[sb["Mode"]] = {
                "IPAMConfig": None,
                "Links": None,
                "Aliases": None,
                "NetworkID": rec["Id"],
                "EndpointID": sb.get("EndpointID", ""),
                "Gateway": "",
                "IPAddress": "",
                "IPPrefixLen": 0,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "MacAddress": "",
                "DriverOpts": None,
            }
        first = next(iter(sb.get("Endpoints", {}).values()), None)
        settings = {
            "Bridge": "",
            "SandboxID": sb["ContainerID"],
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": port_map,
            "SandboxKey": sb.get("NetnsPath") or "",
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            "EndpointID": first["EndpointID"] if first else "",
            "Gateway": first["Gateway"] if first else "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": first["IPAddress"] if first else "",
            "IPPrefixLen": first["IPPrefixLen"] if first else 0,
            "IPv6Gateway": "",
            "MacAddress": first["MacAddress"] if first else "",
            "Networks": nets,
        }
        return Sandbox(
            container_id=sb["ContainerID"],
            netns_path=sb.get("NetnsPath"),
            hosts_file=Path(sb["HostsFile"]),
            resolv_conf=Path(sb["ResolvConf"]),
            settings=settings,
        )

    # -- crash recovery ------------------------------------------------------------------------
    def recover(self, live_container_ids: Any = None) -> dict[str, list[str]]:
        """Undo what a crash or reboot left: sandboxes of dead containers, stray veths,
        bridges and namespaces with estiba's prefix; then rebuild bridges and rules.

        ``live_container_ids``: ids of containers still running (None: trust the
        namespaces — a sandbox whose namespace file is no longer alive is dead).
        Returns what was removed, for the log.
        """
        live = None if live_container_ids is None else set(live_container_ids)
        removed: dict[str, list[str]] = {"sandboxes": [], "links": [], "netns": []}
        with self._lock():
            self._ready.clear()
            for sb in self._sandboxes():
                cid = sb["ContainerID"]
                ns_alive = bool(sb.get("NetnsPath")) and netns.is_netns(Path(sb["NetnsPath"]))
                own_ns = sb["Mode"] not in ("host", "none") and not sb["Mode"].startswith(
                    "container:"
                )
                dead = (live is not None and cid not in live) or (own_ns and not ns_alive)
                if dead:
                    with contextlib.suppress(EngineError, OSError):
                        self._teardown(cid)
                    removed["sandboxes"].append(cid)
            sandboxes = self._sandboxes()
            known_ifs = {
                ep["HostIf"] for sb in sandboxes for ep in sb.get("Endpoints", {}).values()
            }
            records = self._records()
            known_bridges = {r["Bridge"] for r in records if r.get("Bridge")}
            for name, kind in links.host_links(self.prefix).items():
                stray_veth = name.startswith(f"{self.prefix}v") and kind == "veth"
                stray_bridge = kind == "bridge" and name not in known_bridges
                if (stray_veth and name not in known_ifs) or stray_bridge:
                    links.delete_link(name)
                    removed["links"].append(name)
            known_ns = {sb.get("NetnsPath") for sb in sandboxes}
            if self.netns_dir.is_dir():
                for path in self.netns_dir.iterdir():
                    if str(path) not in known_ns:
                        netns.remove(path)
                        removed["netns"].append(path.name)
            if self.files_dir.is_dir():
                known = {sb["ContainerID"] for sb in sandboxes}
                for path in self.files_dir.iterdir():
                    if path.name not in known:
                        shutil.rmtree(path, ignore_errors=True)
            used = {nid for sb in sandboxes for nid in sb.get("Endpoints", {})}
            for rec in records:
                if rec["Driver"] == "bridge" and (not rec["Predefined"] or rec["Id"] in used):
                    self._materialize(rec)
            self._apply_firewall()
        return removed

    def remove_host_objects(self) -> None:
        """Remove every kernel object of this engine (sandboxes, bridges, rules); state stays.

        For uninstalling, and for tests that check nothing is left behind.
        :meth:`recover` (or the next container start) builds them again.
        """
        with self._lock():
            for sb in self._sandboxes():
                with contextlib.suppress(EngineError, OSError):
                    self._teardown(sb["ContainerID"])
            for name, kind in links.host_links(self.prefix).items():
                if kind in ("bridge", "veth"):
                    links.delete_link(name)
            self._ready.clear()
            firewall.delete(self.table)


def _check_id(container_id: str) -> None:
    if not container_id or not re.fullmatch(r"[A-Za-z0-9_.-]+", container_id):
        raise InvalidArgument(f"container id {container_id!r} is not a valid id")


def _normalise_filters(filters: dict[str, Any] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in (filters or {}).items():
        if key not in {"name", "id", "driver", "type", "label", "label!", "dangling"}:
            raise InvalidArgument(
                f"network filter {key!r} is not one of name, id, driver, type, label"
            )
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, (list, tuple, set)):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


def _matches(rec: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    if filters.get("name") and not any(n in rec["Name"] for n in filters["name"]):
        return False
    if filters.get("id") and not any(rec["Id"].startswith(i) for i in filters["id"]):
        return False
    if filters.get("driver") and rec["Driver"] not in filters["driver"]:
        return False
    for kind in filters.get("type", []):
        if kind not in ("custom", "builtin"):
            raise InvalidArgument(f"network filter type={kind!r}: use custom or builtin")
        if (kind == "builtin") != rec["Predefined"]:
            return False
    labels = rec.get("Labels") or {}

    def has(expr: str) -> bool:
        key, sep, value = expr.partition("=")
        return key in labels and (not sep or labels[key] == value)

    if not all(has(e) for e in filters.get("label", [])):
        return False
    return not any(has(e) for e in filters.get("label!", []))
