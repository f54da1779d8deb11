"""The UTS namespace: the host name a process sees.

``uname(2)`` answers from the caller's UTS namespace, so the only way to learn
a container's host name as the kernel holds it is to ask from inside that
namespace: a forked child joins it with ``setns`` and calls ``uname``. (Reading
``/etc/hostname`` from the container's root would show a file, not the kernel's
answer.)
"""

from __future__ import annotations

import os

from engine.introspect._nsenter import run_in_namespaces


def hostname_inside(pid: int) -> str:
    return run_in_namespaces(pid, ["uts"], lambda: os.uname().nodename)


def hostnames(pid: int) -> dict[str, str]:
    """The host name inside the container and outside, on this host."""
    return {"inside": hostname_inside(pid), "outside": os.uname().nodename}
