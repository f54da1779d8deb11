"""PID mapping: one process, two numbers.

A PID namespace numbers its processes from 1, but every process also keeps
its number in each ancestor namespace. The kernel lists them all, outermost
first, on the ``NSpid:`` line of ``/proc/<pid>/status``: a container's init
reads ``NSpid: 48211 1`` — host PID 48211, container PID 1. The process tree
of a container is every process that lives in its PID namespace, each shown
with both numbers.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from engine.errors import NotFound
from engine.introspect.namespaces import namespace_inode


@dataclass(frozen=True)
class ProcessRow:
    host_pid: int
    container_pid: int
    host_ppid: int
    container_ppid: int | None  # None: the parent lives outside the container
    name: str
    cmdline: str
    nspid: tuple[int, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def read_status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict of its ``Key:\\tvalue`` lines."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return dict(
                (key, value.strip()) for key, _, value in (line.partition(":") for line in fh)
            )
    except (FileNotFoundError, ProcessLookupError):
        raise NotFound(f"no process {pid}: it has exited or never existed") from None


def nspid(pid: int) -> tuple[int, ...]:
    """The PIDs of ``pid`` from the host's namespace inwards."""
    status = read_status(pid)
    return tuple(int(x) for x in status.get("NSpid", str(pid)).split())


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_tree(init_pid: int) -> list[ProcessRow]:
    """Every process in ``init_pid``'s PID namespace, with container and host PIDs."""
    target = namespace_inode(init_pid, "pid")
    level = len(nspid(init_pid)) - 1
    rows: list[ProcessRow] = []
    members: dict[int, int] = {}
    candidates = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if namespace_inode(pid, "pid") != target:
                continue
            status = read_status(pid)
        except (NotFound, PermissionError):
            continue  # exited while we looked, or hidden from us (ptrace rules)
        ids = tuple(int(x) for x in status.get("NSpid", entry).split())
        if len(ids) <= level:
            continue
        members[pid] = ids[level]
        candidates.append((pid, ids, status))
    for pid, ids, status in candidates:
        ppid = int(status.get("PPid", "0"))
        rows.append(
            ProcessRow(
                host_pid=pid,
                container_pid=ids[level],
                host_ppid=ppid,
                container_ppid=members.get(ppid),
                name=status.get("Name", ""),
                cmdline=_cmdline(pid),
                nspid=ids,
            )
        )
    rows.sort(key=lambda r: r.container_pid)
    return rows
