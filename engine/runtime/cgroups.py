"""Control groups: where a container's processes are counted and limited.

A cgroup is a directory in a special filesystem; the processes listed in its
``cgroup.procs`` share its limits and its counters. Two layouts exist:

* **v1** (this project's test hosts, "hybrid" mode): one hierarchy per
  controller, each mounted on its own, e.g. ``/sys/fs/cgroup/memory`` and
  ``/sys/fs/cgroup/cpuacct``. A process sits in one directory *per
  controller*; ``/proc/<pid>/cgroup`` lists them as ``4:memory:/a/b``.
* **v2** (modern hosts): one *unified* hierarchy at ``/sys/fs/cgroup`` with
  every controller; ``/proc/<pid>/cgroup`` has one line ``0::/a/b``.

The files differ too (``memory.usage_in_bytes`` vs ``memory.current``,
``cpuacct.usage`` in ns vs ``cpu.stat usage_usec``...). This module hides
that: :class:`Cgroup` finds a process's directories on either layout, and
:func:`read_stats` reads them into the JSON ``docker stats`` consumes
(``cpu_stats``, ``memory_stats``, ``pids_stats``, ``blkio_stats``,
``networks``). A CPU *percentage* needs two samples, so the caller keeps the
previous one and passes it back (it becomes ``precpu_stats``), and
:func:`cpu_percent` does the same arithmetic as the docker CLI. It also reads
OOM kills (v1 ``memory.oom_control``, v2 ``memory.events``) and drives the
freezer (v1 ``freezer.state``, v2 ``cgroup.freeze``) that pause uses.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import NotFound, RuntimeFailure

CGROUP_ROOT = Path("/sys/fs/cgroup")
ZERO_TIME = "0001-01-01T00:00:00Z"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NS = 1_000_000_000
#: Mount options of a v1 hierarchy that are not controller names.
_NOT_CONTROLLERS = frozenset({"rw", "ro", "clone_children", "noprefix", "xattr",
                              "cpuset_v2_mode", "none"})


# --- finding a cgroup -------------------------------------------------------


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: where it is and which of its paths it shows."""

    mountpoint: Path
    root: str  # the hierarchy path mounted there ("/" unless bind-mounted or in a cgroupns)
    controllers: frozenset[str]


def parse_mountinfo(text: str) -> tuple[list[Hierarchy], Hierarchy | None]:
    """The v1 hierarchies and the v2 one (or None) from ``/proc/self/mountinfo`` text."""
    v1: list[Hierarchy] = []
    v2: Hierarchy | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, point, fstype = fields[3], Path(fields[4].replace("\\040", " ")), tail[0]
        if fstype == "cgroup2":
            v2 = Hierarchy(point, root, frozenset())
        elif fstype == "cgroup":
            names = {o for o in tail[2].split(",")
                     if o.startswith("name=") or ("=" not in o and o not in _NOT_CONTROLLERS)}
            v1.append(Hierarchy(point, root, frozenset(names)))
    return v1, v2


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """``/proc/<pid>/cgroup`` -> (v1 controller -> path, v2 path or None).

    v1 lines are ``id:controller[,controller]:path`` (named hierarchies look
    like ``name=systemd``); the v2 line is ``0::path``.
    """
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        else:
            for name in controllers.split(","):
                v1[name] = path
    return v1, v2


def _join(h: Hierarchy, path: str) -> Path:
    """The directory of hierarchy path ``path`` under a mount that shows ``h.root``."""
    root = h.root.rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    return h.mountpoint / path.lstrip("/")


def _mounts() -> tuple[list[Hierarchy], Hierarchy | None]:
    with open("/proc/self/mountinfo") as fh:
        return parse_mountinfo(fh.read())


@dataclass
class Cgroup:
    """A container's cgroup directories: per controller on v1, one dir on v2."""

    version: int  # 1 or 2
    dirs: dict[str, Path] = field(default_factory=dict)  # v1: controller -> dir
    unified: Path | None = None  # v2: the one dir

    @classmethod
    def of_pid(cls, pid: int) -> Cgroup:
        """The cgroups process ``pid`` lives in, from ``/proc/<pid>/cgroup``."""
        try:
            with open(f"/proc/{pid}/cgroup") as fh:
                text = fh.read()
        except (FileNotFoundError, ProcessLookupError) as exc:
            raise NotFound(f"process {pid} does not exist: it has no cgroups to read") from exc
        v1_paths, v2_path = parse_proc_cgroup(text)
        v1, v2 = _mounts()
        dirs = {name: _join(h, v1_paths[name])
                for h in v1 for name in h.controllers if name in v1_paths}
        unified = _join(v2, v2_path) if v2 is not None and v2_path is not None else None
        return cls._choose(dirs, unified)

    @classmethod
    def of_path(cls, path: str) -> Cgroup:
        """The cgroups at hierarchy path ``path`` (an OCI ``cgroupsPath``: ``/estiba/<id>``)."""
        v1, v2 = _mounts()
        dirs = {name: _join(h, path) for h in v1 for name in h.controllers}
        unified = _join(v2, path) if v2 is not None else None
        return cls._choose(dirs, unified)

    @classmethod
    def _choose(cls, dirs: dict[str, Path], unified: Path | None) -> Cgroup:
        # Hybrid hosts mount a (nearly empty) v2 tree beside the v1 controllers:
        # the resource controllers are then v1's. A v2-only host has no v1 memory/cpu.
        if any(name in dirs for name in ("memory", "cpu", "cpuacct", "pids")):
            return cls(1, dirs, unified)
        if unified is None:
            raise RuntimeFailure("no cgroup hierarchy is mounted under /sys/fs/cgroup")
        return cls(2, {}, unified)

    def path(self, controller: str) -> Path | None:
        """The directory holding ``controller``'s files (v2: the unified dir)."""
        return self.unified if self.version == 2 else self.dirs.get(controller)

    def read(self, controller: str, name: str) -> str | None:
        """A control file's text, or None if this kernel or cgroup lacks it."""
        directory = self.path(controller)
        if directory is None:
            return None
        try:
            return (directory / name).read_text()
        except (FileNotFoundError, OSError):
            return None

    def exists(self) -> bool:
        directory = self.path("memory") or self.path("pids")
        return directory is not None and directory.is_dir()

    def pids(self) -> list[int]:
        """Every process in the cgroup (``cgroup.procs`` of pids/memory or the v2 dir)."""
        for controller in ("pids", "memory", "cpu"):
            text = self.read(controller, "cgroup.procs")
            if text is not None:
                return sorted(int(x) for x in text.split())
        return []


# --- parsing control files ----------------------------------------------------


def parse_flat_keyed(text: str | None) -> dict[str, int]:
    """``key value`` lines (``memory.stat``, ``cpu.stat``, ``memory.events``) -> dict."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_int(text: str | None) -> int | None:
    """A single number; ``max`` (v2's "no limit") and missing files give None."""
    value = (text or "").strip()
    if not value or value == "max":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def parse_blkio_v1(text: str | None) -> list[dict[str, Any]]:
    """v1 ``blkio.throttle.io_service_bytes_recursive`` lines ``8:0 Read 4096``."""
    out: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue  # the closing "Total N" line
        major, _, minor = parts[0].partition(":")
        out.append({"major": int(major), "minor": int(minor), "op": parts[1],
                    "value": int(parts[2])})
    return out


def parse_io_stat_v2(text: str | None) -> tuple[list[dict], list[dict]]:
    """v2 ``io.stat`` (``8:0 rbytes=1 wbytes=2 rios=3 wios=4``) -> Docker's bytes and ops."""
    nbytes: list[dict] = []
    ops: list[dict] = []
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, op, target in (("rbytes", "read", nbytes), ("wbytes", "write", nbytes),
                                ("rios", "read", ops), ("wios", "write", ops)):
            if key in kv:
                target.append({"major": int(major), "minor": int(minor), "op": op,
                               "value": int(kv[key])})
    return nbytes, ops


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """``/proc/<pid>/net/dev`` -> Docker's ``networks`` (loopback left out, as Docker does)."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        values = rest.split()
        if name == "lo" or len(values) < 16:
            continue
        v = [int(x) for x in values]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10],
                     "tx_dropped": v[11]}
    return out


def system_cpu_usage(proc_stat: str | None = None) -> int:
    """Host CPU time in ns: the first seven fields of ``/proc/stat``'s ``cpu`` line (as Docker)."""
    if proc_stat is None:
        with open("/proc/stat") as fh:
            proc_stat = fh.read()
    for line in proc_stat.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            return sum(int(x) for x in parts[1:8]) * NS // CLK_TCK
    return 0


def host_memory() -> int:
    """The host's RAM in bytes (``MemTotal``): the limit shown when none is set."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


# --- one stats sample ---------------------------------------------------------


def _cpu_stats(cg: Cgroup) -> dict[str, Any]:
    if cg.version == 1:
        acct = parse_flat_keyed(cg.read("cpuacct", "cpuacct.stat"))
        percpu = [int(x) for x in (cg.read("cpuacct", "cpuacct.usage_percpu") or "").split()]
        throttle = parse_flat_keyed(cg.read("cpu", "cpu.stat"))
        usage = {
            "total_usage": parse_int(cg.read("cpuacct", "cpuacct.usage")) or 0,
            "percpu_usage": percpu,
            "usage_in_kernelmode": acct.get("system", 0) * NS // CLK_TCK,
            "usage_in_usermode": acct.get("user", 0) * NS // CLK_TCK,
        }
        throttled_ns = throttle.get("throttled_time", 0)
    else:
        stat = parse_flat_keyed(cg.read("cpu", "cpu.stat"))
        throttle = stat
        usage = {
            "total_usage": stat.get("usage_usec", 0) * 1000,
            "usage_in_kernelmode": stat.get("system_usec", 0) * 1000,
            "usage_in_usermode": stat.get("user_usec", 0) * 1000,
        }
        throttled_ns = stat.get("throttled_usec", 0) * 1000
    return {
        "cpu_usage": usage,
        "system_cpu_usage": system_cpu_usage(),
        "online_cpus": os.sysconf("SC_NPROCESSORS_ONLN"),
        "throttling_data": {
            "periods": throttle.get("nr_periods", 0),
            "throttled_periods": throttle.get("nr_throttled", 0),
            "throttled_time": throttled_ns,
        },
    }


def _memory_stats(cg: Cgroup) -> dict[str, Any]:
    machine = host_memory()
    if cg.version == 1:
        limit = parse_int(cg.read("memory", "memory.limit_in_bytes"))
        out: dict[str, Any] = {
            "usage": parse_int(cg.read("memory", "memory.usage_in_bytes")) or 0,
            "max_usage": parse_int(cg.read("memory", "memory.max_usage_in_bytes")) or 0,
            "failcnt": parse_int(cg.read("memory", "memory.failcnt")) or 0,
        }
    else:
        limit = parse_int(cg.read("memory", "memory.max"))
        out = {"usage": parse_int(cg.read("memory", "memory.current")) or 0}
    out["stats"] = parse_flat_keyed(cg.read("memory", "memory.stat"))
    # v1 writes "no limit" as a huge number, v2 as "max": Docker shows the host's RAM.
    out["limit"] = machine if limit is None or (machine and limit > machine) else limit
    return out


def _pids_stats(cg: Cgroup) -> dict[str, Any]:
    out: dict[str, Any] = {"current": parse_int(cg.read("pids", "pids.current")) or 0}
    limit = parse_int(cg.read("pids", "pids.max"))
    if limit is not None:
        out["limit"] = limit
    return out


def _blkio_stats(cg: Cgroup) -> dict[str, Any]:
    keys = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
            "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
            "io_time_recursive", "sectors_recursive")
    out: dict[str, Any] = dict.fromkeys(keys)
    if cg.version == 1:
        out["io_service_bytes_recursive"] = parse_blkio_v1(
            cg.read("blkio", "blkio.throttle.io_service_bytes_recursive")) or None
        out["io_serviced_recursive"] = parse_blkio_v1(
            cg.read("blkio", "blkio.throttle.io_serviced_recursive")) or None
    else:
        nbytes, ops = parse_io_stat_v2(cg.read("io", "io.stat"))
        out["io_service_bytes_recursive"] = nbytes or None
        out["io_serviced_recursive"] = ops or None
    return out


def _rfc3339_now() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def empty_cpu_stats() -> dict[str, Any]:
    """``precpu_stats`` of a first sample: all zero, as Docker sends it."""
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def read_stats(
    cg: Cgroup,
    pid: int | None = None,
    previous: dict | None = None,
    *,
    container_id: str = "",
    name: str = "",
) -> dict[str, Any]:
    """One sample of Docker's stats JSON for the cgroup ``cg``.

    ``pid`` (the container's init, host numbering) gives the network counters
    of its network namespace through ``/proc/<pid>/net/dev``. ``previous`` is
    the caller's last sample: its ``cpu_stats`` and ``read`` become
    ``precpu_stats`` and ``preread``, so :func:`cpu_percent` has two points.
    ``name`` is shown as Docker does, with a leading ``/``.
    """
    if not cg.exists():
        raise NotFound(f"cgroup {cg.path('memory') or cg.path('pids')} does not exist: "
                       "the container is not running")
    stats: dict[str, Any] = {
        "id": container_id,
        "name": ("/" + name.lstrip("/")) if name else "",
        "read": _rfc3339_now(),
        "preread": (previous or {}).get("read", ZERO_TIME),
        "num_procs": 0,
        "pids_stats": _pids_stats(cg),
        "blkio_stats": _blkio_stats(cg),
        "storage_stats": {},
        "cpu_stats": _cpu_stats(cg),
        "precpu_stats": (previous or {}).get("cpu_stats") or empty_cpu_stats(),
        "memory_stats": _memory_stats(cg),
    }
    if pid:
        try:
            with open(f"/proc/{pid}/net/dev") as fh:
                networks = parse_net_dev(fh.read())
        except OSError:
            networks = {}
        if networks:
            stats["networks"] = networks
    return stats


def empty_stats(container_id: str = "", name: str = "") -> dict[str, Any]:
    """What Docker answers for a container that is not running: the shape, all zero."""
    blkio_keys = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
                  "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                  "io_time_recursive", "sectors_recursive")
    return {
        "id": container_id, "name": ("/" + name.lstrip("/")) if name else "",
        "read": ZERO_TIME, "preread": ZERO_TIME, "num_procs": 0, "pids_stats": {},
        "blkio_stats": dict.fromkeys(blkio_keys), "storage_stats": {},
        "cpu_stats": empty_cpu_stats(), "precpu_stats": empty_cpu_stats(), "memory_stats": {},
    }


#: The last sample taken in this process per (container id, init pid): Docker's daemon
#: likewise fills ``precpu_stats`` from its collector's previous sample.
_LAST: dict[tuple[str, int], dict[str, Any]] = {}
_LAST_MAX = 512


def stats(container: Any, previous: dict | None = None) -> dict[str, Any]:
    """Docker's stats JSON for an engine container (``ContainerManager.stats`` calls this).

    ``container`` needs ``id``, ``name``, ``pid``, ``cgroups_path`` (the OCI
    ``cgroupsPath`` it was started with) and ``state.status``. A container
    that is not running gets Docker's all-zero answer. ``previous`` defaults to
    the last sample this process took of the same container, so calling this
    once a second gives a CPU percentage (see :func:`cpu_percent`).
    """
    status = getattr(getattr(container, "state", None), "status", "running")
    if status not in ("running", "paused") or not container.pid:
        return empty_stats(container.id, container.name)
    key = (container.id, int(container.pid))
    if previous is None:
        previous = _LAST.get(key)
    try:
        cg = Cgroup.of_path(container.cgroups_path)
        sample = read_stats(cg, container.pid, previous, container_id=container.id,
                            name=container.name)
    except NotFound:
        _LAST.pop(key, None)
        return empty_stats(container.id, container.name)  # it stopped while we looked
    if len(_LAST) >= _LAST_MAX:
        _LAST.clear()
    _LAST[key] = {"read": sample["read"], "cpu_stats": sample["cpu_stats"]}
    return sample


# --- what `docker stats` prints -------------------------------------------------


def cpu_percent(stats: dict) -> float:
    """CPU % as the docker CLI computes it: container time over host time, times CPUs."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get(
        "total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or []) or 1
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def memory_usage(stats: dict) -> int:
    """Memory used minus the page cache that can be dropped (docker CLI's figure)."""
    mem = stats.get("memory_stats") or {}
    usage, detail = mem.get("usage", 0), mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):  # v1, then v2
        if key in detail and detail[key] < usage:
            return usage - detail[key]
    return usage


def summary(stats: dict) -> dict[str, Any]:
    """The columns of ``docker stats`` as numbers (for the dashboard and the CLI)."""
    mem = stats.get("memory_stats") or {}
    used, limit = memory_usage(stats), mem.get("limit", 0)
    nets = (stats.get("networks") or {}).values()
    blk = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    return {
        "cpu_percent": round(cpu_percent(stats), 2),
        "memory_usage": used,
        "memory_limit": limit,
        "memory_percent": round(used / limit * 100.0, 2) if limit else 0.0,
        "net_rx": sum(n["rx_bytes"] for n in nets),
        "net_tx": sum(n["tx_bytes"] for n in nets),
        "block_read": sum(e["value"] for e in blk if e["op"].lower() == "read"),
        "block_write": sum(e["value"] for e in blk if e["op"].lower() == "write"),
        "pids": (stats.get("pids_stats") or {}).get("current", 0),
    }


# --- OOM kills --------------------------------------------------------------------


@dataclass(frozen=True)
class OomState:
    oom_kills: int  # processes the kernel's OOM killer ended in this cgroup
    under_oom: bool  # v1 only: the cgroup is at its limit right now


def parse_oom_control(text: str | None) -> OomState:
    """v1 ``memory.oom_control``: ``oom_kill_disable 0 / under_oom 0 / oom_kill 1``."""
    values = parse_flat_keyed(text)
    return OomState(values.get("oom_kill", 0), bool(values.get("under_oom", 0)))


def parse_memory_events(text: str | None) -> OomState:
    """v2 ``memory.events``: ``low 0 / high 0 / max 3 / oom 1 / oom_kill 1 / oom_group_kill 0``."""
    return OomState(parse_flat_keyed(text).get("oom_kill", 0), False)


def oom_state(cg: Cgroup) -> OomState:
    """How many OOM kills happened in the cgroup (read it before the runtime deletes it)."""
    if cg.version == 1:
        return parse_oom_control(cg.read("memory", "memory.oom_control"))
    return parse_memory_events(cg.read("memory", "memory.events"))


# --- the freezer ----------------------------------------------------------------


def frozen(cg: Cgroup) -> bool:
    """True when every process of the cgroup is stopped by the freezer."""
    if cg.version == 1:
        return (cg.read("freezer", "freezer.state") or "").strip() == "FROZEN"
    return parse_flat_keyed(cg.read("", "cgroup.events")).get("frozen") == 1


def _write(cg: Cgroup, controller: str, name: str, value: str) -> None:
    directory = cg.path(controller)
    if directory is None:
        raise RuntimeFailure(f"the cgroup has no {controller} controller to write {name}")
    try:
        (directory / name).write_text(value)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {value!r} to {directory / name}: {exc}") from exc


def set_frozen(cg: Cgroup, freeze: bool, timeout: float = 5.0) -> None:
    """Freeze (pause) or thaw (unpause) every process of the cgroup, and wait for it.

    v1 writes ``FROZEN``/``THAWED`` to ``freezer.state`` (it reads ``FREEZING``
    until every task stopped); v2 writes 1/0 to ``cgroup.freeze`` and reports
    completion as ``frozen 1`` in ``cgroup.events``.
    """
    if cg.version == 1:
        _write(cg, "freezer", "freezer.state", "FROZEN" if freeze else "THAWED")
    else:
        _write(cg, "", "cgroup.freeze", "1" if freeze else "0")
    deadline = time.monotonic() + timeout
    while frozen(cg) != freeze:
        if time.monotonic() > deadline:
            where = cg.path("freezer") or cg.unified
            raise RuntimeFailure(f"cgroup {where} did not {'freeze' if freeze else 'thaw'} "
                                 f"within {timeout}s")
        if cg.version == 1 and freeze:
            _write(cg, "freezer", "freezer.state", "FROZEN")  # retry, as runc does
        time.sleep(0.01)
