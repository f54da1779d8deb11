"""What the host is: kernel, cgroup version, the OCI runtime in use.

The dashboard's hosts page and ``docker info`` show these facts; they are read
from the kernel (``/proc``, ``/sys/fs/cgroup``), never assumed.
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.engine import Engine

VERSION = "0.1.0"
API_VERSION = "1.41"


def cgroup_version() -> int:
    """2 on a unified (v2-only) hierarchy, 1 on legacy or hybrid hosts."""
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return 2
    return 1


def cgroup_hybrid() -> bool:
    """True when v1 controllers are mounted beside an (almost empty) v2 tree."""
    return cgroup_version() == 1 and Path("/sys/fs/cgroup/unified/cgroup.controllers").exists()


def mem_total() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def host_info(engine: Engine) -> dict[str, Any]:
    runtime = engine.containers.runtime
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "os": "linux",
        "arch": platform.machine(),
        "ncpu": os.cpu_count() or 1,
        "mem_total": mem_total(),
        "cgroup_version": cgroup_version(),
        "cgroup_hybrid": cgroup_hybrid(),
        "runtime": runtime.name,
        "runtime_version": runtime.version,
        "engine_version": VERSION,
        "root": str(engine.root),
    }
