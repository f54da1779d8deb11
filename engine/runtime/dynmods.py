"""Fast moves between cgroups: the cgroup2 mount option ``favordynmods``.

Starting a container moves its first process into the container's cgroups: the
OCI runtime writes its pid to ``cgroup.procs`` in each hierarchy (ten of them on
a v1 host). The kernel guards every such move with one system-wide lock that
forks and exits take for reading, ``cgroup_threadgroup_rwsem``. By default the
readers' side is made nearly free (a per-CPU counter) and the price is paid by
the writer, which must first wait for an RCU grace period: 10–20 ms on these
machines, most of a ``crun run``, and again on every ``docker exec``.

Linux 6.0 and newer let a cgroup2 mount say ``favordynmods``: "reduce the
latencies of dynamic cgroup modifications such as task migrations and
controller on/offs at the cost of making hot path operations such as forks and
exits more expensive" (the kernel's cgroup-v2 documentation). A container host
moves processes between cgroups all day long, so estiba asks for it, as Docker
asks for IP forwarding: once, when it starts its first container, on the host's
cgroup2 mount (``/sys/fs/cgroup`` on a v2 host, ``/sys/fs/cgroup/unified`` on a
hybrid one; the setting is the kernel's, for every hierarchy). The remount goes
through ``mount(8)``, which keeps the mount's other options (``nsdelegate``,
``nosuid``...). ``ESTIBA_FAVOR_DYNMODS=0`` leaves the host as it is; a kernel
without the option, or a v1-only host, is left alone too.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

FEATURES = Path("/sys/kernel/cgroup/features")
#: True or False once tried (None: not yet)
_outcome: bool | None = None
_lock = threading.Lock()


def cgroup2_mount(mountinfo: str) -> tuple[str, set[str]] | None:
    """The host's cgroup2 mount point and its superblock options, from ``mountinfo``."""
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if sep and len(fields) >= 5 and len(rest) >= 3 and rest[0] == "cgroup2":
            return fields[4].replace("\\040", " "), set(rest[2].split(","))
    return None


def wanted() -> bool:
    return os.environ.get("ESTIBA_FAVOR_DYNMODS", "1") != "0"


def favor_dynamic_changes() -> bool:
    """Turn ``favordynmods`` on for this host (tried once per process); True when it is on.

    Called before every start: after the first, the answer is remembered, whichever
    it was, so a host without the option is not asked again on each start.
    """
    global _outcome
    if _outcome is None:
        with _lock:
            if _outcome is None:
                _outcome = _turn_on() if wanted() else False
    return _outcome


def _turn_on() -> bool:
    try:
        if "favordynmods" not in FEATURES.read_text().split():
            return False
        with open("/proc/self/mountinfo") as fh:
            found = cgroup2_mount(fh.read())
    except OSError:
        return False
    if found is None:
        return False
    mountpoint, options = found
    if "favordynmods" not in options:
        proc = subprocess.run(["mount", "-o", "remount,favordynmods", mountpoint],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return False
    return True
