"""The mount namespace: the list of mounts a process sees.

``/proc/<pid>/mountinfo`` is the kernel's view of the mount table from
``pid``'s mount namespace, one mount a line:
``id parent major:minor root mountpoint options [optional...] - fstype source superoptions``.
Mount points are relative to the process's root, so a container's lines start
at its own ``/`` — the overlay that is its root filesystem.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from engine.errors import NotFound


def unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1 : i + 4]) == 3 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Mount:
    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    options: str
    fstype: str
    source: str
    super_options: str

    def to_dict(self) -> dict:
        return asdict(self)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            raise ValueError(f"mountinfo: malformed line {line!r}")
        mounts.append(
            Mount(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                root=unescape(fields[3]),
                mount_point=unescape(fields[4]),
                options=fields[5],
                fstype=tail[0],
                source=unescape(tail[1]),
                super_options=tail[2] if len(tail) > 2 else "",
            )
        )
    return mounts


def mounts_of(pid: int | str) -> list[Mount]:
    try:
        with open(f"/proc/{pid}/mountinfo") as fh:
            return parse_mountinfo(fh.read())
    except (FileNotFoundError, ProcessLookupError):
        raise NotFound(f"no process {pid}: it has exited or never existed") from None


def root_mount(pid: int) -> Mount:
    """The mount at ``/`` as ``pid`` sees it (the last one stacked there wins)."""
    roots = [m for m in mounts_of(pid) if m.mount_point == "/"]
    if not roots:
        raise NotFound(f"process {pid}: no mount at / in its mount namespace")
    return roots[-1]
