"""Published ports: ``[ip:]host:container[/proto]`` and free host ports.

Publishing a port makes a container's service answer on the host. estiba does
it in the kernel, with a DNAT rule per port (see :mod:`engine.network.firewall`),
not with a proxy process per port: nothing runs, nothing to supervise. The
price is that the kernel does not hold the host port for us, so before
publishing we check that no host socket already listens there and no other
container published it ("port is already allocated", as Docker says).
"""

from __future__ import annotations

import ipaddress
import random
import socket
from dataclasses import asdict, dataclass
from typing import Any

from engine.errors import Conflict, InvalidArgument

#: Docker's range for ports it chooses (publish-all, ``-p 80``).
EPHEMERAL = (49153, 65535)
PROTOS = ("tcp", "udp")


@dataclass(frozen=True)
class PortMapping:
    """One published port: host ``host_ip:host_port`` -> container ``container_port``."""

    proto: str
    host_ip: str  # "0.0.0.0" for every host address
    host_port: int
    container_port: int

    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _port(text: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidArgument(f"{where}: {text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise InvalidArgument(f"{where}: port {value} is outside 0-65535")
    return value


def parse_publish(spec: str) -> tuple[str, dict[str, str]]:
    """``"127.0.0.1:8080:80/tcp"`` -> ``("80/tcp", {"HostIp": "127.0.0.1", "HostPort": "8080"})``

    (the CLI's ``-p``; the API sends the dict form already)."""
    text = spec.strip()
    body, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOS:
        raise InvalidArgument(f"published port {spec!r}: protocol {proto!r} is not tcp or udp")
    parts = body.split(":")
    if len(parts) > 3 or not parts[-1]:
        raise InvalidArgument(f"published port {spec!r}: expected [ip:]host:container[/tcp|udp]")
    host_ip = parts[0] if len(parts) == 3 else ""
    host = parts[-2] if len(parts) >= 2 else ""
    cport = _port(parts[-1], f"published port {spec!r}")
    if cport == 0:
        raise InvalidArgument(f"published port {spec!r}: the container port cannot be 0")
    if host_ip:
        _check_ip(host_ip, spec)
    if host:
        _port(host, f"published port {spec!r}")
    return f"{cport}/{proto}", {"HostIp": host_ip, "HostPort": host}


def _check_ip(text: str, where: str) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"published port {where!r}: {text!r} is not an IP address") from None
    if addr.version != 4:
        raise InvalidArgument(f"published port {where!r}: only IPv4 host addresses are supported")
    return text


def split_key(key: str) -> tuple[int, str]:
    """``"80/tcp"`` -> ``(80, "tcp")``; a bare ``"80"`` is tcp."""
    port, _, proto = str(key).partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOS:
        raise InvalidArgument(f"port {key!r}: protocol {proto!r} is not tcp or udp")
    value = _port(port, f"port {key!r}")
    if value == 0:
        raise InvalidArgument(f"port {key!r}: the container port cannot be 0")
    return value, proto


def host_port_free(host_ip: str, port: int, proto: str) -> bool:
    """True when no host socket is bound to ``host_ip:port`` (0.0.0.0 checks every address)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host_ip, port))
        except OSError:
            return False
    return True


def resolve(
    port_bindings: dict[str, Any] | None,
    publish_all: bool,
    exposed_ports: dict[str, Any] | None,
    taken: set[tuple[str, int, str]],
) -> list[PortMapping]:
    """Turn Docker's ``PortBindings`` (+ publish-all of ``ExposedPorts``) into mappings.

    ``taken`` holds ``(host_ip, host_port, proto)`` already published by other
    containers. Host ports left empty are chosen free in Docker's range.
    """
    wanted: list[tuple[str, int, str, int | None]] = []
    for key, bindings in (port_bindings or {}).items():
        cport, proto = split_key(key)
        for binding in bindings or [{}]:
            binding = binding or {}
            host_ip = str(binding.get("HostIp") or "") or "0.0.0.0"
            _check_ip(host_ip, key)
            text = str(binding.get("HostPort") or "")
            host_port = _port(text, f"host port for {key}") if text else None
            wanted.append((host_ip, cport, proto, host_port or None))
    if publish_all:
        bound = {(c, p) for _ip, c, p, _h in wanted}
        for key in sorted(exposed_ports or {}):
            cport, proto = split_key(key)
            if (cport, proto) not in bound:
                wanted.append(("0.0.0.0", cport, proto, None))
    out: list[PortMapping] = []
    used = set(taken)
    for host_ip, cport, proto, host_port in wanted:
        if host_port is None:
            host_port = _free_port(host_ip, proto, used)
        elif _clashes(host_ip, host_port, proto, used) or not host_port_free(
            host_ip, host_port, proto
        ):
            raise Conflict(
                f"Bind for {host_ip}:{host_port} failed: port is already allocated ({proto})"
            )
        used.add((host_ip, host_port, proto))
        out.append(PortMapping(proto, host_ip, host_port, cport))
    return out


def _clashes(host_ip: str, port: int, proto: str, used: set[tuple[str, int, str]]) -> bool:
    return any(
        p == port and pr == proto and (ip == host_ip or "0.0.0.0" in (ip, host_ip))
        for ip, p, pr in used
    )


def _free_port(host_ip: str, proto: str, used: set[tuple[str, int, str]]) -> int:
    low, high = EPHEMERAL
    start = random.randint(low, high)
    for offset in range(high - low + 1):
        port = low + (start - low + offset) % (high - low + 1)
        if not _clashes(host_ip, port, proto, used) and host_port_free(host_ip, port, proto):
            return port
    raise Conflict(f"no free host port left in {low}-{high} ({proto})")
