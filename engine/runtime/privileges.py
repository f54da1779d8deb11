"""What root inside a container may do: its Linux capabilities, and ``--privileged``.

Root in a container is root on the host's kernel, held back by *capabilities*:
the kernel splits root's power into some forty flags (``CAP_NET_ADMIN`` to
configure networks, ``CAP_SYS_ADMIN`` to mount, ``CAP_CHOWN`` to give files
away...). Docker grants fourteen by default (``DEFAULT_CAPS`` in spec.py);
``--cap-add`` and ``--cap-drop`` change that set with the rules of moby's
``TweakCapabilities``: ``ALL`` in the adds starts from every capability, ``ALL``
in the drops starts from none, then the named drops and adds apply. A name may
be given with or without ``CAP_`` and in any case; an unknown one is an error
at create, not a surprise at start.

``--privileged`` is the switch that takes the guards off: every capability,
no seccomp filter, nothing of ``/proc`` masked, ``/sys`` writable, and the
host's device nodes (``host_devices``) in the container's ``/dev`` with the
devices cgroup allowing all of them. It is root on the host in all but name,
which is why only an administrator may ask for it.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterable
from typing import Any

from engine.errors import InvalidArgument

#: Capability names by number (linux/capability.h); the kernel's last one is read at runtime.
CAP_NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
    "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
    "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]

#: /dev entries a privileged container does not get from the host (runc's HostDevices):
#: it has its own pts, shm and mqueue, and its console is its own terminal.
_SKIP_DEV = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev", "console"}


@functools.cache
def _bounded_caps() -> tuple[str, ...]:
    """Read once: a process's bounding set only ever shrinks, and ours is not changed."""
    bounding = (1 << len(CAP_NAMES)) - 1
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapBnd:"):
                    bounding = int(line.split()[1], 16)
                    break
    except (OSError, ValueError):
        pass
    return tuple("CAP_" + name for n, name in enumerate(CAP_NAMES) if bounding >> n & 1)


def all_caps() -> list[str]:
    """Every capability this host can hand out, as ``CAP_...`` names: those in our own
    bounding set (a host may withhold some, even from root; no process can pass on
    what it does not hold)."""
    return list(_bounded_caps())


def normalize(names: Iterable[str], what: str) -> list[str]:
    """``net_admin`` or ``CAP_NET_ADMIN`` -> ``CAP_NET_ADMIN``, ``all`` -> ``ALL``; an
    unknown name is an error that says where it was given."""
    known = _bounded_caps()
    out = []
    for raw in names:
        name = raw.strip().upper()
        if name == "ALL":
            out.append("ALL")
            continue
        full = name if name.startswith("CAP_") else "CAP_" + name
        if full not in known:
            raise InvalidArgument(f"unknown capability {raw!r} in {what}: use a name like "
                                  "NET_ADMIN (see capabilities(7)) or ALL")
        out.append(full)
    return out


def capabilities(default: list[str], cap_add: list[str], cap_drop: list[str],
                 privileged: bool) -> list[str]:
    """The container's capability set, in the kernel's order (moby's TweakCapabilities)."""
    everything = all_caps()
    if privileged:
        return everything
    adds = normalize(cap_add, "--cap-add")
    drops = normalize(cap_drop, "--cap-drop")
    if "ALL" in adds:
        base = set(everything)
    elif "ALL" in drops:
        base = set()
    else:
        base = set(default)
    base -= {d for d in drops if d != "ALL"}
    if "ALL" not in adds:
        base |= {a for a in adds if a != "ALL"}
    return [c for c in everything if c in base]


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """The host's device nodes as OCI ``linux.devices`` entries (for ``--privileged``)."""
    out: list[dict[str, Any]] = []
    pending = [root]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name in _SKIP_DEV:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                pending.append(entry.path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append({"path": entry.path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                            "gid": st.st_gid})
    return sorted(out, key=lambda d: d["path"])
