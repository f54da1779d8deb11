"""cgroups: how much a container uses against what it may use.

A control group limits and counts the resources of the processes in it. The
lessons chart three figures against their limits — memory, CPU time and the
number of processes — and count OOM kills. Finding a process's groups on a
v1, v2 or hybrid host is the runtime's job (``engine.runtime.cgroups.Cgroup``:
``/proc/<pid>/cgroup`` joined with the mounted hierarchies); this module only
reads the few files a lesson shows, named differently in each version (v1
``memory.usage_in_bytes`` and ``memory.limit_in_bytes``, v2 ``memory.current``
and ``memory.max``).
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.runtime.cgroups import Cgroup, parse_flat_keyed, parse_int

UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as a page-rounded LONG_MAX


def cgroup_dirs(pid: int) -> dict[str, Path]:
    """Controller name (or "unified") -> the directory of ``pid``'s group in it."""
    cg = Cgroup.of_pid(pid)
    dirs = dict(cg.dirs)
    if cg.unified is not None:
        dirs["unified"] = cg.unified
    return dirs


def _limit(value: int | None) -> int | None:
    return None if value is None or value >= UNLIMITED_V1 or value < 0 else value


def figures(pid: int) -> dict:
    """One sample of memory, CPU and pids for ``pid``'s groups, with the limits."""
    cg = Cgroup.of_pid(pid)
    if cg.version == 2:
        quota = (cg.read("cpu", "cpu.max") or "max 100000").split()
        mem = {
            "usage": parse_int(cg.read("memory", "memory.current")),
            "limit": _limit(parse_int(cg.read("memory", "memory.max"))),
            "max_usage": parse_int(cg.read("memory", "memory.peak")),
            "oom_kills": parse_flat_keyed(cg.read("memory", "memory.events")).get("oom_kill", 0),
        }
        cpu = {
            "usage_ns": parse_flat_keyed(cg.read("cpu", "cpu.stat")).get("usage_usec", 0) * 1000,
            "quota_us": parse_int(quota[0]),
            "period_us": parse_int(quota[1]) if len(quota) > 1 else 100000,
        }
    else:
        mem = {
            "usage": parse_int(cg.read("memory", "memory.usage_in_bytes")),
            "limit": _limit(parse_int(cg.read("memory", "memory.limit_in_bytes"))),
            "max_usage": parse_int(cg.read("memory", "memory.max_usage_in_bytes")),
            "oom_kills": parse_flat_keyed(cg.read("memory", "memory.oom_control")).get(
                "oom_kill", 0),
            "failcnt": parse_int(cg.read("memory", "memory.failcnt")),
        }
        usage = cg.read("cpuacct", "cpuacct.usage") or cg.read("cpu", "cpuacct.usage")
        cpu = {
            "usage_ns": parse_int(usage),
            "quota_us": _limit(parse_int(cg.read("cpu", "cpu.cfs_quota_us"))),
            "period_us": parse_int(cg.read("cpu", "cpu.cfs_period_us")),
            "shares": parse_int(cg.read("cpu", "cpu.shares")),
        }
    pids = {
        "current": parse_int(cg.read("pids", "pids.current")),
        "limit": parse_int(cg.read("pids", "pids.max")),
    }
    return {
        "version": cg.version,
        "time": time.time(),
        "memory": mem,
        "cpu": cpu,
        "pids": pids,
        "paths": {k: str(v) for k, v in cgroup_dirs(pid).items()},
    }


def cpu_percent(before: dict, after: dict) -> float | None:
    """CPU use between two samples, in percent of one CPU."""
    a, b = before["cpu"].get("usage_ns"), after["cpu"].get("usage_ns")
    dt = after["time"] - before["time"]
    if a is None or b is None or dt <= 0:
        return None
    return max(0.0, (b - a) / (dt * 1e9) * 100)
