"""The OCI runtime spec (``config.json``): how a container is isolated, in one file.

Everything that makes a process a *container* is written here and nowhere
else: which namespaces it gets (pid, mount, uts, ipc, network, cgroup), its
hostname, environment, working directory and user (resolved through the
*image's* ``/etc/passwd`` and ``/etc/group``, never the host's), the resource
limits the kernel enforces through cgroups (memory, swap, CPU shares, quota
and cpuset, pids), the capabilities (Docker's default set, or the one
``--cap-add``/``--cap-drop``/``--privileged`` make of it: privileges.py), the
seccomp filter (``/usr/share/containers/seccomp.json`` converted from the
containers/common shape to the OCI one), the ``/proc`` and ``/sys`` paths that
are masked or made read-only, and the rlimits, clamped to the host's hard
limits because a runtime may not raise them. runc or crun then asks the kernel
for exactly this.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.errors import InvalidArgument
from engine.runtime.privileges import host_devices
from engine.runtime.rootfs import resolve_in_root

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

#: The device nodes every container may use (Docker's default allow list).
DEFAULT_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # null
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # zero
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # full
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},  # random
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},  # urandom
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},  # tty
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},  # console
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # ptmx
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # pts
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},  # fuse
]
#: A privileged container's rule: every device node.
ALL_DEVICES = [{"allow": True, "access": "rwm"}]

#: Wanted soft/hard rlimits (containerd's default NOFILE); clamped to the host's hard limits.
WANTED_RLIMITS = {"RLIMIT_NOFILE": (1048576, 1048576)}

MIN_MEMORY = 6 * 1024 * 1024  # Docker: "Minimum memory limit allowed is 6MB"
_ARCH = {"x86_64": ("amd64", "x86_64"), "aarch64": ("arm64", "aarch64")}
_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


# --- users -----------------------------------------------------------------


def _read_db(rootfs: Path, name: str) -> list[list[str]]:
    """Rows of the image's /etc/passwd or /etc/group (never following links out of it)."""
    real = resolve_in_root(rootfs, f"/etc/{name}")
    if real is None:
        return []
    try:
        text = real.read_text(errors="replace")
    except OSError:
        return []
    return [ln.split(":") for ln in text.splitlines() if ln and not ln.startswith("#")]


def resolve_user(rootfs: Path, user: str) -> dict[str, Any]:
    """``user[:group]`` (names or numbers) -> OCI ``process.user`` plus the home dir."""
    user = (user or "").strip()
    name, _, group = user.partition(":")
    passwd = _read_db(rootfs, "passwd")
    groups = _read_db(rootfs, "group")
    uid, gid, home = 0, 0, "/"
    uname = "root"
    if not name:
        name = "0"
    row = next((r for r in passwd if len(r) >= 6 and (r[0] == name or r[2] == name)), None)
    if row is not None:
        uname, uid, gid, home = row[0], int(row[2]), int(row[3]), row[5] or "/"
    elif name.isdigit():
        uid, gid, uname = int(name), 0, ""
    else:
        raise InvalidArgument(
            f"unable to find user {name}: no matching entries in the image's /etc/passwd"
        )
    if group:
        grow = next((r for r in groups if len(r) >= 3 and (r[0] == group or r[2] == group)), None)
        if grow is not None:
            gid = int(grow[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise InvalidArgument(
                f"unable to find group {group}: no matching entries in the image's /etc/group"
            )
    extra = sorted(
        {int(r[2]) for r in groups if len(r) >= 4 and uname and uname in r[3].split(",")}
        - {gid}
    )
    out: dict[str, Any] = {"uid": uid, "gid": gid}
    if extra:
        out["additionalGids"] = extra
    return {"user": out, "home": home if row is not None else "/"}


# --- limits ----------------------------------------------------------------


def _memsw_supported() -> bool:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return True  # v2: memory.swap.max
    return Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()


def _online_cpus() -> set[int]:
    try:
        text = Path("/sys/devices/system/cpu/online").read_text().strip()
    except OSError:
        return set(range(os.cpu_count() or 1))
    return _parse_cpuset(text)


def _parse_cpuset(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def resources(spec: Any) -> dict[str, Any]:
    """``linux.resources`` from the container's limits; a bad limit is an InvalidArgument."""
    res: dict[str, Any] = {"devices": ALL_DEVICES if spec.privileged else DEFAULT_DEVICE_RULES}
    memory = int(spec.memory or 0)
    swap = int(spec.memory_swap or 0)
    if memory < 0:
        raise InvalidArgument(f"invalid memory limit {memory}: must be positive")
    if memory and memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if swap and swap != -1 and not memory:
        raise InvalidArgument(
            "You should always set the Memory limit when using Memoryswap limit"
        )
    if memory and swap not in (0, -1) and swap < memory:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    mem: dict[str, Any] = {}
    if memory:
        mem["limit"] = memory
        if _memsw_supported():
            mem["swap"] = -1 if swap == -1 else (swap or 2 * memory)
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    shares, period, quota = int(spec.cpu_shares or 0), int(spec.cpu_period or 0), int(
        spec.cpu_quota or 0)
    nano = int(spec.nano_cpus or 0)
    if shares < 0 or period < 0 or nano < 0 or quota < -1:
        raise InvalidArgument("invalid CPU limit: shares, period, quota and nano_cpus must be >= 0")
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                              "than 1s (i.e. 1000000)")
    if quota > 0 and quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if nano and (period or quota):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period/Quota cannot both "
                              "be set")
    if nano:
        ncpu = os.cpu_count() or 1
        if nano > ncpu * 1_000_000_000:
            raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                                  f"{ncpu} CPUs available")
        period, quota = 100_000, nano * 100_000 // 1_000_000_000
    if shares:
        cpu["shares"] = shares
    if quota:
        cpu["quota"] = quota
        cpu["period"] = period or 100_000
    elif period:
        cpu["period"] = period
    if spec.cpuset_cpus:
        if not _CPUSET.match(spec.cpuset_cpus):
            raise InvalidArgument(f"invalid value {spec.cpuset_cpus!r} for cpuset cpus")
        missing = _parse_cpuset(spec.cpuset_cpus) - _online_cpus()
        if missing:
            raise InvalidArgument(f"Requested CPUs are not available - requested "
                                  f"{spec.cpuset_cpus}, available: "
                                  f"{Path('/sys/devices/system/cpu/online').read_text().strip()}")
        cpu["cpus"] = spec.cpuset_cpus
    if cpu:
        res["cpu"] = cpu
    pids = int(spec.pids_limit or 0)
    if pids > 0:
        res["pids"] = {"limit": pids}
    elif pids < -1:
        raise InvalidArgument(f"invalid pids limit {pids}")
    return res


def rlimits() -> list[dict[str, Any]]:
    """The rlimits we want, never above the host's hard limit (the runtime may not raise it)."""
    out = []
    for name, (soft, hard) in WANTED_RLIMITS.items():
        _host_soft, host_hard = resource.getrlimit(getattr(resource, name))
        if host_hard != resource.RLIM_INFINITY:
            hard = min(hard, host_hard)
            soft = min(soft, hard)
        out.append({"type": name, "soft": soft, "hard": hard})
    return out


# --- seccomp ---------------------------------------------------------------


@lru_cache(maxsize=4)
def seccomp_profile(path: str, caps: tuple[str, ...] = tuple(DEFAULT_CAPS)) -> dict | None:
    """containers/common's seccomp.json -> OCI ``linux.seccomp`` for this arch and these caps."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    machine = platform.machine()
    arches = _ARCH.get(machine, (machine,))
    scmp_arches: list[str] = []
    for entry in data.get("archMap") or []:
        main = entry.get("architecture", "")
        if main.lower().endswith(machine.lower()):
            scmp_arches = [main, *entry.get("subArchitectures", [])]
            break
    kernel = tuple(int(x) for x in re.findall(r"\d+", platform.release())[:2])
    capset = set(caps)
    syscalls = []
    for rule in data.get("syscalls") or []:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("arches") and not set(inc["arches"]) & set(arches):
            continue
        if exc.get("arches") and set(exc["arches"]) & set(arches):
            continue
        if inc.get("caps") and not set(inc["caps"]) <= capset:
            continue
        if exc.get("caps") and set(exc["caps"]) & capset:
            continue
        if inc.get("minKernel"):
            want = tuple(int(x) for x in re.findall(r"\d+", inc["minKernel"])[:2])
            if kernel < want:
                continue
        out: dict[str, Any] = {"names": rule.get("names") or [rule.get("name")],
                               "action": rule["action"]}
        if rule.get("args"):
            out["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                           for a in rule["args"]]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        syscalls.append(out)
    profile: dict[str, Any] = {"defaultAction": data.get("defaultAction", "SCMP_ACT_ERRNO"),
                               "architectures": scmp_arches, "syscalls": syscalls}
    if data.get("defaultErrnoRet") is not None:
        profile["defaultErrnoRet"] = data["defaultErrnoRet"]
    return profile


# --- the whole spec --------------------------------------------------------


def merge_env(*envs: list[str]) -> list[str]:
    """Later lists override earlier ones key by key; order of first appearance is kept."""
    merged: dict[str, str] = {}
    for env in envs:
        for item in env or []:
            key, sep, _ = item.partition("=")
            if not key:
                raise InvalidArgument(f"invalid environment variable {item!r}")
            merged[key] = item if sep else f"{key}="
    return list(merged.values())


def build_spec(
    *,
    args: list[str],
    env: list[str],
    cwd: str,
    user: dict[str, Any],
    hostname: str,
    domainname: str,
    tty: bool,
    resources_: dict[str, Any],
    cgroups_path: str,
    netns_path: str | None,
    extra_mounts: list[dict[str, Any]],
    seccomp: dict | None,
    read_only: bool = False,
    console_size: tuple[int, int] | None = None,
    caps: list[str] | None = None,
    privileged: bool = False,
) -> dict[str, Any]:
    """The complete OCI ``config.json`` for one container (root is ``rootfs`` in the bundle).

    ``caps`` is the capability set (Docker's default when None); ``privileged`` takes
    the guards off (see ``privileges``): the caller passes no seccomp filter with it.
    """
    namespaces: list[dict[str, str]] = [
        {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"},
    ]
    if netns_path is None:
        pass  # share the host's network namespace (network_mode "host")
    elif netns_path == "":
        namespaces.append({"type": "network"})  # a fresh, empty one (network_mode "none")
    else:
        namespaces.append({"type": "network", "path": netns_path})
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "rw" if privileged else "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["rw" if privileged else "ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        *extra_mounts,
    ]
    caps = list(DEFAULT_CAPS) if caps is None else caps
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": resources_,
        "cgroupsPath": cgroups_path,
    }
    if privileged:
        linux["devices"] = host_devices()
    else:
        linux["maskedPaths"] = MASKED_PATHS
        linux["readonlyPaths"] = READONLY_PATHS
    if seccomp:
        linux["seccomp"] = seccomp
    process_extra: dict[str, Any] = {}
    if tty and console_size:
        # the runtime sizes the pty before the process runs (no race with a later resize)
        process_extra["consoleSize"] = {"height": int(console_size[0]),
                                        "width": int(console_size[1])}
    return {
        "ociVersion": "1.0.2",
        "process": {
            **process_extra,
            "terminal": tty,
            "user": user,
            "args": args,
            "env": env,
            "cwd": cwd or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": rlimits(),
            "noNewPrivileges": False,
            "oomScoreAdj": 0,
        },
        "root": {"path": "rootfs", "readonly": read_only},
        "hostname": hostname,
        **({"domainname": domainname} if domainname else {}),
        "mounts": mounts,
        "linux": linux,
    }
