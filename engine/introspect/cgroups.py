"""cgroups: how much a container uses against what it may use.

A control group limits and counts the resources of the processes in it. The
kernel says which groups a process is in on ``/proc/<pid>/cgroup``: one line
per v1 hierarchy (``4:memory:/estiba/abc``) and a ``0::/path`` line for the
unified v2 hierarchy. The figures live in files of the group's directory,
named differently in each version (v1 ``memory.usage_in_bytes`` and
``memory.limit_in_bytes``, v2 ``memory.current`` and ``memory.max``), so each
reader tries the v2 name and falls back to v1: hybrid hosts mount both.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.errors import NotFound
from engine.introspect.mounts import mounts_of

UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as a page-rounded LONG_MAX


def cgroup_dirs(pid: int) -> dict[str, Path]:
    """Controller name (or "unified") -> the directory of ``pid``'s group in it."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            lines = fh.read().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        raise NotFound(f"no process {pid}: it has exited or never existed") from None
    mounts: dict[str, Path] = {}
    for m in mounts_of("self"):  # our own view of where the hierarchies are mounted
        if m.fstype == "cgroup2":
            mounts.setdefault("unified", Path(m.mount_point))
        elif m.fstype == "cgroup":
            for opt in m.super_options.split(","):
                mounts.setdefault(opt, Path(m.mount_point))
    out: dict[str, Path] = {}
    for line in lines:
        _hid, controllers, path = line.split(":", 2)
        names = controllers.split(",") if controllers else ["unified"]
        for name in names:
            base = mounts.get(name)
            if base is not None:
                out[name] = base / path.lstrip("/")
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    if text is None or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _keyed(text: str | None) -> dict[str, int]:
    out = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def figures(pid: int) -> dict:
    """One sample of memory, CPU and pids for ``pid``'s groups, with the limits."""
    dirs = cgroup_dirs(pid)
    unified = dirs.get("unified")
    v2 = unified is not None and (unified / "memory.current").exists()
    mem: dict = {}
    cpu: dict = {}
    pids: dict = {}
    if v2:
        mem = {
            "usage": _int(_read(unified / "memory.current")),
            "limit": _int(_read(unified / "memory.max")),
            "max_usage": _int(_read(unified / "memory.peak")),
            "oom_kills": _keyed(_read(unified / "memory.events")).get("oom_kill", 0),
        }
        stat = _keyed(_read(unified / "cpu.stat"))
        quota_text = (_read(unified / "cpu.max") or "max 100000").split()
        cpu = {
            "usage_ns": stat.get("usage_usec", 0) * 1000,
            "quota_us": _int(quota_text[0]),
            "period_us": _int(quota_text[1]) if len(quota_text) > 1 else 100000,
        }
        pids = {
            "current": _int(_read(unified / "pids.current")),
            "limit": _int(_read(unified / "pids.max")),
        }
        version = 2
    else:
        m = dirs.get("memory")
        if m is not None:
            limit = _int(_read(m / "memory.limit_in_bytes"))
            mem = {
                "usage": _int(_read(m / "memory.usage_in_bytes")),
                "limit": None if limit is None or limit >= UNLIMITED_V1 else limit,
                "max_usage": _int(_read(m / "memory.max_usage_in_bytes")),
                "oom_kills": _keyed(_read(m / "memory.oom_control")).get("oom_kill", 0),
                "failcnt": _int(_read(m / "memory.failcnt")),
            }
        c = dirs.get("cpuacct") or dirs.get("cpu")
        q = dirs.get("cpu")
        quota = _int(_read(q / "cpu.cfs_quota_us")) if q else None
        cpu = {
            "usage_ns": _int(_read(c / "cpuacct.usage")) if c else None,
            "quota_us": None if quota is None or quota < 0 else quota,
            "period_us": _int(_read(q / "cpu.cfs_period_us")) if q else None,
            "shares": _int(_read(q / "cpu.shares")) if q else None,
        }
        p = dirs.get("pids")
        if p is not None:
            pids = {
                "current": _int(_read(p / "pids.current")),
                "limit": _int(_read(p / "pids.max")),
            }
        version = 1
    return {
        "version": version,
        "time": time.time(),
        "memory": mem,
        "cpu": cpu,
        "pids": pids,
        "paths": {k: str(v) for k, v in dirs.items()},
    }


def cpu_percent(before: dict, after: dict) -> float | None:
    """CPU use between two samples, in percent of one CPU."""
    a, b = before["cpu"].get("usage_ns"), after["cpu"].get("usage_ns")
    dt = after["time"] - before["time"]
    if a is None or b is None or dt <= 0:
        return None
    return max(0.0, (b - a) / (dt * 1e9) * 100)
