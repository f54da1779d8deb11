"""Namespaces: a container is a process that sees its own copy of the system.

Linux gives each process a set of namespaces, one per kind (pid, net, mnt,
uts, ipc, user, cgroup, time). Each namespace is a kernel object with an inode
number, visible as the link target of ``/proc/<pid>/ns/<kind>``
(``pid:[4026532179]``). Two processes share a namespace exactly when those
inodes are equal, so comparing a container's init with a host process tells,
kind by kind, what the container has isolated and what it shares. The host
side is the calling process itself (the worker runs in the host's namespaces;
PID 1 may be hidden from it by the kernel's ptrace rules).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

from engine.errors import NotFound

KINDS = ("pid", "net", "mnt", "uts", "ipc", "user", "cgroup", "time")
_LINK = re.compile(r"^(\w+):\[(\d+)\]$")


@dataclass(frozen=True)
class NamespaceRow:
    kind: str
    container_inode: int | None
    host_inode: int | None

    @property
    def isolated(self) -> bool:
        return self.container_inode is not None and self.container_inode != self.host_inode

    def to_dict(self) -> dict:
        return {**asdict(self), "isolated": self.isolated}


def namespace_inode(pid: int | str, kind: str) -> int | None:
    """The inode of ``pid``'s namespace of ``kind``; None if this kernel lacks the kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown namespace kind {kind!r}")
    try:
        target = os.readlink(f"/proc/{pid}/ns/{kind}")
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}"):
            raise NotFound(f"no process {pid}: it has exited or never existed") from None
        return None
    match = _LINK.match(target)
    return int(match.group(2)) if match else None


def namespace_inodes(pid: int | str) -> dict[str, int | None]:
    return {kind: namespace_inode(pid, kind) for kind in KINDS}


def compare_namespaces(pid: int, host_pid: int | str = "self") -> list[NamespaceRow]:
    """Each kind with the container's inode beside the host's."""
    mine, host = namespace_inodes(pid), namespace_inodes(host_pid)
    return [NamespaceRow(kind, mine[kind], host[kind]) for kind in KINDS]
