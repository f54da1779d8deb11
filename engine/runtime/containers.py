"""Containers: Docker's lifecycle over an OCI runtime, with the files as the truth.

A container is a directory (``<root>/containers/<id>/``, see store.py) plus,
while it runs, a supervisor process (shim.py) and the runtime's own state.
This module is the lifecycle — create, start, stop (signal, grace period,
then SIGKILL), kill, restart, pause and unpause (the freezer cgroup), remove,
wait, rename — with Docker's states (created, running, paused, restarting,
exited, dead) and exit codes (``128 + signal`` for a killed process, 127 for
a missing command). Nothing lives only in memory: a new ``ContainerManager``
(a restarted worker) reads the directories and finds every container again,
running ones included, because their supervisors never belonged to it.

Starting a container means: mount its overlay root (rootfs.py), check that
the command exists *in the image*, ask the volume and network managers for
mounts and a network namespace, write the OCI spec (spec.py) and hand the
bundle to the supervisor, which runs the runtime.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import os
import random
import re
import shutil
import signal as signal_mod
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from engine.disk import tree_size
from engine.errors import (
    CommandNotFound,
    Conflict,
    EngineError,
    InvalidArgument,
    NotFound,
    NotModified,
    RuntimeFailure,
)
from engine.images.changes import apply_changes
from engine.runtime import archive, dynmods, privileges, shim
from engine.runtime import rootfs as rootfs_mod
from engine.runtime.launcher import LAUNCHER
from engine.runtime.logs import LogEntry, read_logs
from engine.runtime.oci import OCIRuntime, select_runtime
from engine.runtime.spec import (
    DEFAULT_CAPS,
    DEFAULT_PATH,
    build_spec,
    merge_env,
    resolve_user,
    resources,
    seccomp_profile,
)
from engine.runtime.store import (
    ContainerDir,
    StateWatch,
    flocked,
    parse_rfc3339,
    rfc3339,
    write_json_atomic,
)
from engine.volumes.specs import MountSpec

if TYPE_CHECKING:
    from engine.engine import Engine

_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_ADJ = ["brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
        "merry", "nifty", "proud", "quirky", "serene", "tender", "vivid", "witty", "zen"]
_NOUN = ["ada", "babbage", "curie", "dijkstra", "euler", "fermat", "gauss", "hopper", "kepler",
         "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "turing"]
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")


@dataclass
class EndpointSpec:
    aliases: list[str] = field(default_factory=list)
    ipv4_address: str = ""


@dataclass
class ContainerSpec:
    """What ``docker create`` takes; everything but the image is optional."""

    image: str
    name: str | None = None
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    memory: int = 0
    memory_swap: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    nano_cpus: int = 0
    cpuset_cpus: str = ""
    pids_limit: int = 0
    restart_policy: str = "no"
    network_mode: str = "bridge"
    networks: dict[str, EndpointSpec] = field(default_factory=dict)
    port_bindings: dict[str, list[dict]] = field(default_factory=dict)
    publish_all_ports: bool = False
    exposed_ports: dict[str, dict] = field(default_factory=dict)
    mounts: list[MountSpec] = field(default_factory=list)
    auto_remove: bool = False
    stop_signal: str = ""
    stop_timeout: int | None = None
    read_only: bool = False
    #: Capability names to add to / drop from Docker's default set (``ALL`` allowed).
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    #: Every capability, no seccomp, the host's devices (privileges.py): admins only.
    privileged: bool = False
    #: (height, width) of the terminal when ``tty`` is set.
    tty_size: tuple[int, int] | None = None
    log_max_size: int = 20 * 1024 * 1024
    log_max_files: int = 3

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerSpec:
        known = _spec_fields(cls)
        kw = {k: v for k, v in data.items() if k in known}
        kw["networks"] = {k: v if isinstance(v, EndpointSpec) else EndpointSpec(**v)
                          for k, v in (kw.get("networks") or {}).items()}
        kw["mounts"] = [m if isinstance(m, MountSpec) else MountSpec(**m)
                        for m in kw.get("mounts") or []]
        return cls(**kw)


@functools.cache
def _spec_fields(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


@dataclass
class State:
    """Docker's ``ContainerState``."""

    status: str = "created"
    running: bool = False
    paused: bool = False
    restarting: bool = False
    oom_killed: bool = False
    dead: bool = False
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    restart_count: int = 0

    @classmethod
    def from_disk(cls, d: dict[str, Any]) -> State:
        return cls(d["Status"], d["Running"], d["Paused"], d["Restarting"], d["OOMKilled"],
                   d["Dead"], d["Pid"], d["ExitCode"], d["Error"], d["StartedAt"],
                   d["FinishedAt"], d["RestartCount"])

    def to_docker(self) -> dict[str, Any]:
        return {"Status": self.status, "Running": self.running, "Paused": self.paused,
                "Restarting": self.restarting, "OOMKilled": self.oom_killed, "Dead": self.dead,
                "Pid": self.pid, "ExitCode": self.exit_code, "Error": self.error,
                "StartedAt": self.started_at, "FinishedAt": self.finished_at}


@dataclass
class Container:
    """One container as its files describe it (a snapshot: call ``get`` again for news).

    ``config`` and ``spec`` are shared by the snapshots of the same config.json: read-only.
    """

    id: str
    name: str
    image_id: str
    image_name: str
    created: str
    state: State
    spec: ContainerSpec
    path: str
    args: list[str]
    runtime_id: str
    dir: Path
    cgroups_path: str
    config: dict[str, Any]
    #: What the container wrote (its upper dir) and that plus its image, in bytes:
    #: filled in only when asked for (``list(size=True)``: a walk of the upper dir).
    size_rw: int | None = None
    size_root_fs: int | None = None

    pid = property(lambda self: self.state.pid)
    bundle = property(lambda self: self.dir / "bundle")
    rootfs = property(lambda self: self.dir / "bundle" / "rootfs")
    upper_dir = property(lambda self: self.dir / "fs" / "upper")
    log_path = property(lambda self: self.dir / f"{self.id}-json.log")

    @property
    def cgroup_paths(self) -> dict[str, Path]:
        """Where this container's cgroups live: v1 controller -> dir, or {"unified": dir}."""
        rel = self.cgroups_path.lstrip("/")
        return {name: Path(base, rel) for name, base in _cgroup_bases()}

    @property
    def network_settings(self) -> dict[str, Any]:
        """Docker's NetworkSettings; a stopped container keeps its networks, not addresses."""
        settings = self.config.get("NetworkSettings") or _empty_network_settings()
        if self.state.status in ("running", "paused", "restarting"):
            return settings
        blank = {"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": "",
                 "EndpointID": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                 "IPv6Gateway": ""}
        out = {**settings, **{k: v for k, v in blank.items() if k in settings},
               "SandboxKey": "", "Ports": {}}
        out["Networks"] = {name: {**net, **{k: v for k, v in blank.items() if k in net}}
                           for name, net in (settings.get("Networks") or {}).items()}
        return out

    @property
    def labels(self) -> dict[str, str]:
        """The image's labels overlaid with the container's own."""
        img_labels = (self.config.get("ImageConfig") or {}).get("Labels") or {}
        return {**img_labels, **self.spec.labels}

    def to_docker_inspect(self) -> dict[str, Any]:
        spec = self.spec
        cfg = self.config
        img_cfg = cfg.get("ImageConfig") or {}
        return {
            "Id": self.id,
            "Created": self.created,
            "Path": self.path,
            "Args": self.args,
            "State": self.state.to_docker(),
            "Image": self.image_id,
            "ResolvConfPath": str(self.dir / "resolv.conf"),
            "HostnamePath": str(self.dir / "hostname"),
            "HostsPath": cfg.get("HostsPath") or str(self.dir / "hosts"),
            "LogPath": str(self.log_path),
            "Name": "/" + self.name,
            "RestartCount": self.state.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": self._exec_ids(),
            "HostConfig": self._host_config(),
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "LowerDir": ":".join(reversed(cfg.get("LayerDirs") or [])),
                    "MergedDir": str(self.rootfs),
                    "UpperDir": str(self.upper_dir),
                    "WorkDir": str(self.dir / "fs" / "work"),
                },
            },
            "Mounts": cfg.get("Mounts") or [],
            "Config": {
                "Hostname": cfg.get("Hostname", ""),
                "Domainname": spec.domainname,
                "User": spec.user or img_cfg.get("User", ""),
                "AttachStdin": spec.open_stdin,
                "AttachStdout": True,
                "AttachStderr": True,
                "ExposedPorts": {**(img_cfg.get("ExposedPorts") or {}), **spec.exposed_ports}
                or None,
                "Tty": spec.tty,
                "OpenStdin": spec.open_stdin,
                "StdinOnce": spec.stdin_once,
                "Env": cfg.get("Env") or [],
                "Cmd": cfg.get("Cmd"),
                "Image": self.image_name,
                "Volumes": img_cfg.get("Volumes"),
                "WorkingDir": cfg.get("WorkingDir", ""),
                "Entrypoint": cfg.get("Entrypoint"),
                "OnBuild": None,
                "Labels": self.labels,
                "StopSignal": spec.stop_signal or img_cfg.get("StopSignal") or "SIGTERM",
                **({"StopTimeout": spec.stop_timeout} if spec.stop_timeout is not None else {}),
            },
            "NetworkSettings": self.network_settings,
        }

    def _exec_ids(self) -> list[str] | None:
        execs = self.dir / "execs"
        if not execs.is_dir():
            return None
        try:
            from engine.runtime.exec import exec_ids

            return exec_ids(execs) or None
        except ImportError:
            return None

    def _host_config(self) -> dict[str, Any]:
        s = self.spec
        name, _, count = (s.restart_policy or "no").partition(":")
        return {
            "NetworkMode": s.network_mode,
            "PortBindings": s.port_bindings or {},
            "PublishAllPorts": s.publish_all_ports,
            "RestartPolicy": {"Name": name, "MaximumRetryCount": int(count or 0)},
            "AutoRemove": s.auto_remove,
            "ReadonlyRootfs": s.read_only,
            "Privileged": s.privileged,
            "CapAdd": list(s.cap_add) or None,
            "CapDrop": list(s.cap_drop) or None,
            "Memory": s.memory,
            "MemorySwap": s.memory_swap,
            "CpuShares": s.cpu_shares,
            "CpuPeriod": s.cpu_period,
            "CpuQuota": s.cpu_quota,
            "NanoCpus": s.nano_cpus,
            "CpusetCpus": s.cpuset_cpus,
            "PidsLimit": s.pids_limit or None,
            "Mounts": [{"Type": m.type, "Source": m.source or "", "Target": m.target,
                        "ReadOnly": m.read_only} for m in s.mounts],
            "LogConfig": {"Type": "json-file",
                          "Config": {"max-size": str(s.log_max_size),
                                     "max-file": str(s.log_max_files)}},
            "Runtime": self.config.get("Runtime", ""),
        }

    def to_docker_summary(self) -> dict[str, Any]:
        cmd = " ".join([self.path, *self.args]).strip()
        ports = []
        net = self.network_settings
        for key, binds in (net.get("Ports") or {}).items():
            port, _, proto = key.partition("/")
            for b in binds or [{}]:
                entry = {"PrivatePort": int(port), "Type": proto or "tcp"}
                if b and b.get("HostPort"):
                    entry.update(IP=b.get("HostIp") or "0.0.0.0", PublicPort=int(b["HostPort"]))
                ports.append(entry)
        return {
            "Id": self.id,
            "Names": ["/" + self.name],
            "Image": self.image_name,
            "ImageID": self.image_id,
            "Command": cmd,
            "Created": parse_rfc3339(self.created) // 1_000_000_000,
            "Ports": ports,
            "Labels": self.labels,
            "State": self.state.status,
            "Status": human_status(self.state),
            "HostConfig": {"NetworkMode": self.spec.network_mode},
            "NetworkSettings": {"Networks": net.get("Networks") or {}},
            "Mounts": self.config.get("Mounts") or [],
            **self._sizes(),
        }

    def _sizes(self) -> dict[str, int]:
        """Docker's ``SizeRw`` and ``SizeRootFs``, when they were measured."""
        if self.size_rw is None:
            return {}
        return {"SizeRw": self.size_rw, "SizeRootFs": self.size_root_fs}


def human_status(state: State) -> str:
    """Docker's ``Status`` column: "Up 3 seconds", "Exited (0) 2 minutes ago"..."""
    now = time.time_ns()
    if state.status in ("running", "paused"):
        text = f"Up {_ago(now - parse_rfc3339(state.started_at))}"
        return text + " (Paused)" if state.paused else text
    if state.status == "restarting":
        return f"Restarting ({state.exit_code}) {_ago(now - parse_rfc3339(state.finished_at))} ago"
    if state.status == "exited":
        return f"Exited ({state.exit_code}) {_ago(now - parse_rfc3339(state.finished_at))} ago"
    return state.status.capitalize()


def _ago(ns: int) -> str:
    s = max(0, ns // 1_000_000_000)
    if s < 1:
        return "Less than a second"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size:
            n = s // size
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return f"{s} second{'s' if s > 1 else ''}"


def _empty_network_settings() -> dict[str, Any]:
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "Gateway": "",
            "IPAddress": "", "IPPrefixLen": 0, "MacAddress": "", "Networks": {}}


def parse_signal(sig: str | int | None, default: str = "SIGKILL") -> int:
    """``"TERM"``, ``"SIGTERM"``, ``"15"`` or 15 -> 15; anything else is an InvalidArgument."""
    sig = default if sig in (None, "") else sig
    if isinstance(sig, int) or str(sig).isdigit():
        num = int(sig)
        if 0 < num < 65:
            return num
        raise InvalidArgument(f"invalid signal: {sig}")
    name = str(sig).upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal_mod.Signals[name])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {sig}") from None


class ContainerManager:
    """All containers of one engine root."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dir = engine.root / "containers"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        self.sock_dir = engine.run_dir / "c"
        self.sock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.runtime: OCIRuntime = select_runtime(engine.config.runtime, engine.run_dir)
        self._runtimes: dict[str, OCIRuntime] = {self.runtime.name: self.runtime}
        #: id -> (config.json's identity, its parsed config, its spec): a config changes
        #: rarely and always by a rename (a new inode), so one stat tells if it is current.
        self._configs: dict[str, tuple[tuple[int, int, int], dict[str, Any], ContainerSpec]] = {}

    def runtime_for(self, c: Container | dict) -> OCIRuntime:
        """The runtime a container was created with (a setting change must not orphan it)."""
        name = (c.config if isinstance(c, Container) else c).get("Runtime") or self.runtime.name
        if name not in self._runtimes:
            self._runtimes[name] = select_runtime(name, self.engine.run_dir)
        return self._runtimes[name]

    # -- lookup -------------------------------------------------------------------

    def _cdir(self, cid: str) -> ContainerDir:
        return ContainerDir(self.dir / cid, cid)

    def _candidates(self) -> list[str]:
        """Names of the folders that may hold a container (one directory scan, no stat
        per entry beyond what ``scandir`` gives)."""
        try:
            with os.scandir(self.dir) as it:
                return [e.name for e in it if len(e.name) == 64 and e.is_dir()]
        except FileNotFoundError:
            return []

    def _ids(self) -> list[str]:
        return [cid for cid in self._candidates() if (self.dir / cid / "config.json").exists()]

    def _find_id(self, id_or_name: str) -> str:
        key = (id_or_name or "").strip()
        if not key:
            raise NotFound("No such container: (empty name)")
        if len(key) == 64 and (self.dir / key / "config.json").exists():
            return key  # a full ID: no need to look at the others
        ids = self._ids()
        if key in ids:
            return key
        name = key.lstrip("/")
        for cid in ids:
            if self._cdir(cid).read_config().get("Name") == name:
                return cid
        matches = [cid for cid in ids if cid.startswith(key)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple containers match the ID prefix {key!r}")
        raise NotFound(f"No such container: {key}")

    def get(self, id_or_name: str) -> Container:
        c = self._load(self._find_id(id_or_name))
        if c is None:
            raise NotFound(f"No such container: {id_or_name}")
        return c

    def _config(self, cdir: ContainerDir) -> tuple[dict[str, Any], ContainerSpec] | None:
        """A container's config and spec, parsed again only when config.json was replaced.

        The answer is shared by the ``Container`` snapshots made from it: read-only.
        """
        try:
            st = os.stat(os.path.join(cdir.path, "config.json"))
        except FileNotFoundError:
            self._configs.pop(cdir.id, None)
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        hit = self._configs.get(cdir.id)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        cfg = cdir.read_config()  # replaced since the stat? Then the next stat differs
        if not cfg:
            return None
        spec = ContainerSpec.from_dict(cfg["Spec"])
        self._configs[cdir.id] = (key, cfg, spec)
        return cfg, spec

    def _load(self, cid: str) -> Container | None:
        """One container from its two files (each read at most once); None if it has none."""
        cdir = self._cdir(cid)
        parsed = self._config(cdir)
        if parsed is None:
            return None
        cfg, spec = parsed
        state = self._check_supervisor(cdir)
        return Container(
            id=cid, name=cfg["Name"], image_id=cfg["Image"], image_name=cfg["ImageName"],
            created=cfg["Created"], state=State.from_disk(state),
            spec=spec, path=cfg["Path"], args=cfg["Args"],
            runtime_id=cfg["RuntimeID"], dir=cdir.path, cgroups_path=cfg["CgroupsPath"],
            config=cfg,
        )

    def list(self, all: bool = False, filters: dict | None = None,
             size: bool = False) -> list[Container]:
        """One scan of the containers' folder, each container read once: linear in their
        number. ``size`` also measures what each one wrote (``docker ps -s``), which walks
        their upper dirs."""
        out = []
        image_sizes: dict[str, int] = {}  # containers of one image share its size
        candidates = self._candidates()
        for gone in set(list(self._configs)) - set(candidates):
            self._configs.pop(gone, None)
        for cid in candidates:
            c = self._load(cid)
            if c is None:
                continue
            if not all and c.state.status not in ("running", "paused", "restarting"):
                continue
            if filters and not _matches(c, filters):
                continue
            out.append(self._measured(c, image_sizes) if size else c)
        return sorted(out, key=lambda c: c.created, reverse=True)

    def _measured(self, c: Container, image_sizes: dict[str, int]) -> Container:
        """``c`` with its sizes: its upper dir's, and that plus its image's (looked up
        once per image in ``image_sizes``: each lookup reads the image store's index)."""
        rw = tree_size(c.upper_dir)
        if c.image_id not in image_sizes:
            try:
                image_sizes[c.image_id] = self.engine.images.resolve(c.image_id).size
            except NotFound:  # removed with --force while the container stayed
                image_sizes[c.image_id] = 0
        return replace(c, size_rw=rw, size_root_fs=rw + image_sizes[c.image_id])

    def ids_using_image(self, image_id: str) -> list[str]:
        return [cid for cid in self._ids()
                if self._cdir(cid).read_config().get("Image") == image_id]

    def upper_dir(self, id_or_name: str) -> Path:
        return self._cdir(self._find_id(id_or_name)).upper

    # -- create -------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> Container:
        """Make the container's directory and records; nothing runs yet."""
        if isinstance(spec, dict):
            spec = ContainerSpec.from_dict(spec)
        _validate(spec)
        image = self.engine.images.resolve(spec.image)
        img_cfg = dict(image.runtime_config or {})
        resources(spec)  # a bad limit fails here, before anything is written
        if spec.entrypoint is not None:
            entrypoint = list(spec.entrypoint)
            cmd = list(spec.cmd) if spec.cmd is not None else []
        else:
            entrypoint = list(img_cfg.get("Entrypoint") or [])
            cmd = list(spec.cmd) if spec.cmd is not None else list(img_cfg.get("Cmd") or [])
        argv = entrypoint + cmd
        if not argv:
            raise InvalidArgument(f"no command specified for a container of image {spec.image}")
        env = merge_env(img_cfg.get("Env") or [], spec.env)
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        with self._global_lock():
            name = spec.name.lstrip("/") if spec.name else self._generate_name()
            self._check_name_free(name)
            cdir = self._cdir(cid)
            for d in (cdir.path, cdir.upper, cdir.work, cdir.rootfs):
                d.mkdir(parents=True, exist_ok=d != cdir.path)
            cfg = {
                "ID": cid,
                "Name": name,
                "Created": rfc3339(),
                "Image": image.id,
                "ImageName": spec.image,
                "ImageConfig": img_cfg,
                "LayerDirs": [str(p) for p in image.layer_dirs()],
                "Path": argv[0],
                "Args": argv[1:],
                "Cmd": cmd or None,
                "Entrypoint": entrypoint or None,
                "Env": env,
                "WorkingDir": spec.working_dir or img_cfg.get("WorkingDir") or "",
                "Hostname": spec.hostname or cid[:12],
                "Spec": asdict(spec),
                "RuntimeID": f"{self.engine.config.prefix}-{cid[:24]}",
                "CgroupsPath": f"/{self.engine.config.prefix}/{cid}",
                "Runtime": self.runtime.name,
                "LogMaxSize": spec.log_max_size,
                "LogMaxFiles": spec.log_max_files,
                "Engine": {"root": str(self.engine.root), "run_dir": str(self.engine.run_dir),
                           "prefix": self.engine.config.prefix,
                           "runtime": self.engine.config.runtime},
            }
            cdir.update_state()
            cdir.write_config(cfg)
            if spec.mounts or img_cfg.get("Volumes"):
                try:
                    self.engine.volumes.reserve(cid, spec.mounts, img_cfg.get("Volumes"))
                except BaseException:
                    shutil.rmtree(cdir.path, ignore_errors=True)
                    raise
        self._event("create", cid, name, spec)
        return self.get(cid)

    def _generate_name(self) -> str:
        taken = {self._cdir(c).read_config().get("Name") for c in self._ids()}
        for _ in range(100):
            name = f"{random.choice(_ADJ)}_{random.choice(_NOUN)}"
            if name not in taken:
                return name
        return f"{random.choice(_ADJ)}_{random.choice(_NOUN)}{random.randint(0, 9999)}"

    def _check_name_free(self, name: str, except_id: str | None = None) -> None:
        if not _NAME.match(name):
            raise InvalidArgument(f"Invalid container name ({name}), only "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        for cid in self._ids():
            if cid != except_id and self._cdir(cid).read_config().get("Name") == name:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                               f'container "{cid}". You have to remove (or rename) that container '
                               "to be able to reuse that name.")

    @contextlib.contextmanager
    def _global_lock(self) -> Iterator[None]:
        """Names and creations of all containers: an ``flock`` of the containers directory."""
        with flocked(self.dir):
            yield

    # -- start --------------------------------------------------------------------

    def start(self, id_or_name: str) -> None:
        cid = self._find_id(id_or_name)
        dynmods.favor_dynamic_changes()  # once: moving the container into its cgroups is fast
        # Outside the op lock: an auto-remove container's supervisor takes it to remove.
        self._wait_exit_finished(self._cdir(cid))
        with self._op_lock(cid):  # two workers starting one container: one wins
            self._start(cid)

    @contextlib.contextmanager
    def _op_lock(self, cid: str) -> Iterator[None]:
        """Serialises start and remove of one container (not the state lock: the
        supervisor takes that one while a start waits for it)."""
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(self._cdir(cid).op_locked())
            except FileNotFoundError:
                raise NotFound(f"No such container: {cid}") from None
            yield

    def _start(self, cid: str) -> None:
        c = self.get(cid)
        if c.state.status in ("running", "paused", "restarting"):
            raise NotModified(f"container {c.name} is already running")
        if c.state.status == "dead":
            raise Conflict(f"container {c.name} is dead (a removal did not finish) and cannot be "
                           "started: remove it")
        cdir = self._cdir(c.id)
        cdir.update_state(StopRequested=False, ManualStopped=False, Error="")
        network_ready = False
        try:
            layer_dirs = [Path(p) for p in c.config["LayerDirs"]]
            rootfs_mod.mount_overlay(layer_dirs, cdir.upper, cdir.work, cdir.rootfs,
                                     volatile=c.spec.auto_remove)
            args = [c.path, *c.args]
            env = c.config["Env"]
            self._check_command(c, args[0], env)
            user = resolve_user(cdir.rootfs, c.spec.user or c.config["ImageConfig"].get("User", ""))
            env = merge_env([f"PATH={DEFAULT_PATH}"], [f"HOSTNAME={c.config['Hostname']}"],
                            [f"HOME={user['home']}"],
                            ["TERM=xterm"] if c.spec.tty else [], env)
            cwd = c.config["WorkingDir"] or "/"
            self._ensure_dir(cdir.rootfs, cwd)
            mounts = self._volume_mounts(c)
            netns, sandbox_files, settings = self._network(c)
            network_ready = True
            etc_mounts, hosts_path = self._etc_mounts(c, sandbox_files)
            mounts += etc_mounts
            caps = container_caps(c.spec)
            oci = build_spec(
                args=args, env=env, cwd=cwd, user=user["user"], hostname=c.config["Hostname"],
                domainname=c.spec.domainname, tty=c.spec.tty, resources_=resources(c.spec),
                cgroups_path=c.cgroups_path, netns_path=netns, extra_mounts=mounts,
                seccomp=None if c.spec.privileged else seccomp_profile(
                    str(self.engine.config.seccomp_profile), tuple(caps)),
                read_only=c.spec.read_only, console_size=c.spec.tty_size,
                caps=caps, privileged=c.spec.privileged,
            )
            self.runtime_for(c).prepare(oci)
            write_json_atomic(cdir.bundle / "config.json", oci)
            cfg = cdir.read_config()
            cfg["HostsPath"] = str(hosts_path)
            cfg["NetworkSettings"] = settings
            cfg["NetworkSetup"] = c.spec.network_mode not in ("none", "host")
            cfg["Mounts"] = [_docker_mount(m, c.spec.mounts) for m in mounts
                             if m.get("type") in ("bind", "tmpfs") and m["destination"] not in
                             ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")]
            cdir.write_config(cfg)
            shim.spawn(cdir, self.runtime_for(c), self.engine.events.journal, self.sock_dir)
        except EngineError as exc:
            self._abort_start(c, cdir, str(exc), network_ready,
                              (126 if "permission denied" in str(exc) else 127)
                              if isinstance(exc, CommandNotFound) else 128)
            raise
        except Exception as exc:
            self._abort_start(c, cdir, str(exc), network_ready, 128)
            raise RuntimeFailure(f"starting container {c.name} failed: {exc}") from exc
        self._event("start", c.id, c.name, c.spec)

    def _abort_start(self, c: Container, cdir: ContainerDir, error: str, network: bool,
                     code: int) -> None:
        self.runtime_for(c).delete(c.runtime_id)
        with contextlib.suppress(Exception):
            rootfs_mod.unmount(cdir.rootfs)
        if network and c.spec.network_mode not in ("none", "host"):
            with contextlib.suppress(Exception):
                self.engine.networks.teardown(c.id)
        cdir.update_state(Error=error, ExitCode=code, Status=c.state.status
                          if c.state.status != "running" else "exited")

    def _check_command(self, c: Container, prog: str, env: list[str]) -> None:
        """Docker's check, done before the runtime is asked: the program must exist in the image."""
        root = self._cdir(c.id).rootfs
        if "/" in prog:
            candidates = [prog if prog.startswith("/") else
                          os.path.join(c.config["WorkingDir"] or "/", prog)]
        else:
            path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
            candidates = [os.path.join(d or ".", prog) for d in path.split(":")]
        for cand in candidates:
            host = rootfs_mod.resolve_in_root(root, cand)
            if host is not None and host.is_file():
                if not os.access(host, os.X_OK):
                    raise CommandNotFound(
                        f'failed to create task for container {c.name}: exec: "{prog}": '
                        "permission denied")
                return
        where = "in $PATH" if "/" not in prog else "(no such file or directory)"
        raise CommandNotFound(
            f'failed to create task for container {c.name}: exec: "{prog}": executable file not '
            f"found {where} of image {c.image_name}")

    @staticmethod
    def _ensure_dir(root: Path, path: str) -> None:
        """Make the working dir inside the container's root (never through a link out of it)."""
        current = root
        for part in [p for p in path.split("/") if p not in ("", ".", "..")]:
            nxt = current / part
            if nxt.is_symlink():
                target = rootfs_mod.resolve_in_root(root, str(nxt.relative_to(root)))
                if target is None or not target.is_dir():
                    raise InvalidArgument(f"working dir {path} is not a directory in the image")
                nxt = target
            elif not nxt.exists():
                nxt.mkdir(mode=0o755)
            elif not nxt.is_dir():
                raise InvalidArgument(f"working dir {path} is not a directory in the image")
            current = nxt

    def _volume_mounts(self, c: Container) -> list[dict]:
        image_volumes = c.config["ImageConfig"].get("Volumes") or {}
        if not c.spec.mounts and not image_volumes:
            return []
        try:
            volumes = self.engine.volumes
        except ImportError as exc:
            if c.spec.mounts:
                raise EngineError("mounts need engine.volumes, which is not installed") from exc
            return []
        return list(volumes.prepare_mounts(c.id, c.spec.mounts, image_volumes,
                                           [Path(p) for p in c.config["LayerDirs"]]))

    def _network(self, c: Container) -> tuple[str | None, dict[str, Path], dict]:
        mode = c.spec.network_mode or "bridge"
        if mode == "none":
            return "", {}, _empty_network_settings()
        if mode == "host":
            files = {"hosts": Path("/etc/hosts"), "resolv_conf": Path("/etc/resolv.conf")}
            return None, files, _empty_network_settings()
        try:
            networks = self.engine.networks
        except ImportError as exc:
            raise EngineError(f"network mode {mode!r} needs engine.network, which is not "
                              f"installed; use network_mode='none'") from exc
        sandbox = networks.setup(c.id, c.name, c.config["Hostname"], mode, c.spec.networks,
                                 c.spec.port_bindings, c.spec.publish_all_ports,
                                 c.spec.exposed_ports, files_dir=self._cdir(c.id).path)
        files = {k: Path(v) for k, v in (("hosts", sandbox.hosts_file),
                                          ("resolv_conf", sandbox.resolv_conf)) if v}
        return sandbox.netns_path, files, sandbox.settings or _empty_network_settings()

    def _etc_mounts(self, c: Container, files: dict[str, Path]) -> tuple[list[dict], Path]:
        """/etc/hostname, /etc/hosts and /etc/resolv.conf for the container, and the
        path of its hosts file (``HostsPath``).

        All three live in the container's directory, as in Docker. On a network of
        its own the network manager writes ``hosts`` and ``resolv.conf`` there and
        rewrites ``hosts`` in place as peers join or leave (the container sees it
        live: the file is bind-mounted); sharing another container's network it uses
        that one's hosts file. With the host's network or none they are made here.
        """
        cdir = self._cdir(c.id)
        (cdir.path / "hostname").write_text(c.config["Hostname"] + "\n")
        mode = c.spec.network_mode or "bridge"
        hosts = cdir.path / "hosts"
        if "hosts" in files and mode != "host":
            hosts = files["hosts"]
        elif "hosts" in files:
            hosts.write_bytes(files["hosts"].read_bytes())
        else:
            hosts.write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
                             f"127.0.1.1\t{c.config['Hostname']}\n")
        resolv = cdir.path / "resolv.conf"
        if files.get("resolv_conf") != resolv:
            resolv.write_bytes(files["resolv_conf"].read_bytes() if "resolv_conf" in files
                               else b"")
        mounts = [{"destination": dest, "type": "bind", "source": str(source),
                   "options": ["rbind", "rprivate"]}
                  for source, dest in ((cdir.path / "hostname", "/etc/hostname"),
                                       (hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf"))]
        return mounts, hosts

    # -- signals, stop, restart ---------------------------------------------------------

    def kill(self, id_or_name: str, signal: str | int = "SIGKILL") -> None:
        c = self.get(id_or_name)
        num = parse_signal(signal)
        if c.state.status not in ("running", "paused", "restarting"):
            raise Conflict(f"Container {c.id} is not running")
        if num in (signal_mod.SIGKILL, signal_mod.SIGTERM, signal_mod.SIGINT):
            # like Docker: a container killed by hand is not brought back by its policy
            self._cdir(c.id).update_state(StopRequested=True, ManualStopped=True)
        if c.state.status != "restarting":
            self._signal(c, num)
        if c.state.paused and num == signal_mod.SIGKILL:
            with contextlib.suppress(RuntimeFailure):  # a frozen task dies only once thawed
                self.runtime_for(c).run("resume", c.runtime_id)
        self._event("kill", c.id, c.name, c.spec, signal=num)

    def _signal(self, c: Container, num: int) -> None:
        try:
            self.runtime_for(c).run("kill", c.runtime_id, str(num))
        except RuntimeFailure:
            state = self.runtime_for(c).state(c.runtime_id)
            if state and state.get("status") in ("running", "paused", "created"):
                raise

    def stop(self, id_or_name: str, timeout: int | None = None) -> None:
        c = self.get(id_or_name)
        cdir = self._cdir(c.id)
        if c.state.status not in ("running", "paused", "restarting"):
            raise NotModified(f"container {c.name} is not running")
        cdir.update_state(StopRequested=True, ManualStopped=True)
        if timeout is None:
            timeout = c.spec.stop_timeout if c.spec.stop_timeout is not None else 10
        if c.state.status == "restarting":
            self._wait_stopped(c, 10)
            self._event("stop", c.id, c.name, c.spec)
            return
        sig = parse_signal(c.spec.stop_signal or c.config["ImageConfig"].get("StopSignal"),
                           "SIGTERM")
        with contextlib.suppress(RuntimeFailure):
            self._signal(c, sig)
            self._event("kill", c.id, c.name, c.spec, signal=sig)
        if c.state.paused:
            with contextlib.suppress(RuntimeFailure):
                self.runtime_for(c).run("resume", c.runtime_id)
        if not self._wait_stopped(c, max(0, timeout)):
            with contextlib.suppress(RuntimeFailure):
                self._signal(c, signal_mod.SIGKILL)
                self._event("kill", c.id, c.name, c.spec, signal=int(signal_mod.SIGKILL))
            if not self._wait_stopped(c, 30):
                raise RuntimeFailure(f"container {c.name} did not stop after SIGKILL")
        self._event("stop", c.id, c.name, c.spec)

    def _wait_stopped(self, c: Container, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        cdir = self._cdir(c.id)
        with StateWatch(cdir.path) as watch:
            while True:
                self._check_supervisor(cdir)
                if cdir.read_state()["Status"] not in ("running", "paused", "restarting"):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                watch.wait(min(left, 0.5))  # woken by the supervisor's state write

    def restart(self, id_or_name: str, timeout: int | None = None) -> None:
        c = self.get(id_or_name)
        with contextlib.suppress(NotModified):
            self.stop(c.id, timeout)
        self.start(c.id)
        self._event("restart", c.id, c.name, c.spec)

    def pause(self, id_or_name: str) -> None:
        c = self.get(id_or_name)
        if c.state.status != "running":
            raise Conflict(f"Container {c.id} is not running" if c.state.status != "paused"
                           else f"Container {c.id} is already paused")
        self.runtime_for(c).run("pause", c.runtime_id)
        self._cdir(c.id).update_state(Status="paused", Paused=True)
        self._event("pause", c.id, c.name, c.spec)

    def unpause(self, id_or_name: str) -> None:
        c = self.get(id_or_name)
        if c.state.status != "paused":
            raise Conflict(f"Container {c.id} is not paused")
        self.runtime_for(c).run("resume", c.runtime_id)
        self._cdir(c.id).update_state(Status="running", Paused=False)
        self._event("unpause", c.id, c.name, c.spec)

    # -- wait, remove, rename -----------------------------------------------------------

    def wait(self, id_or_name: str, condition: str = "not-running",
             timeout: float | None = None) -> int:
        """Block until the container stops (or is removed); return its exit code."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid wait condition {condition!r}")
        cid = self._find_id(id_or_name)
        cdir = self._cdir(cid)
        state = cdir.read_state()
        before = state["FinishedAt"]
        deadline = None if timeout is None else time.monotonic() + timeout
        with StateWatch(cdir.path) as watch:
            while True:
                if not cdir.config_file.exists():
                    if condition == "removed":
                        return int(state["ExitCode"])
                    raise NotFound(f"No such container: {id_or_name}")
                self._check_supervisor(cdir)
                state = cdir.read_state()
                stopped = state["Status"] in ("created", "exited", "dead")
                if condition == "next-exit":
                    stopped = state["FinishedAt"] != before and state["Status"] != "running"
                if stopped and condition != "removed":
                    return int(state["ExitCode"])
                left = 0.5 if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeFailure(f"timed out waiting for container {cid[:12]} to stop")
                watch.wait(min(left, 0.5))

    def remove(self, id_or_name: str, force: bool = False, volumes: bool = False) -> None:
        cid = self._find_id(id_or_name)
        with self._op_lock(cid):
            self._remove(cid, force, volumes)

    def remove_unless_busy(self, cid: str) -> bool:
        """An auto-remove container's removal by its supervisor, after its exit: with its
        volumes, unless a start or a remove holds its op lock (that one decides, and a
        remove waits for this supervisor to exit: taking the lock would deadlock)."""
        try:
            with self._cdir(cid).op_locked(blocking=False) as got:
                if got:
                    self._remove(cid, force=True, volumes=True)
                return got
        except FileNotFoundError:
            return False

    def _remove(self, id_or_name: str, force: bool, volumes: bool) -> None:
        c = self.get(id_or_name)
        cdir = self._cdir(c.id)
        if c.state.status in ("running", "paused", "restarting"):
            if not force:
                raise Conflict(f"You cannot remove a {c.state.status} container {c.id}. Stop the "
                               "container before attempting removal or force remove")
            cdir.update_state(StopRequested=True, ManualStopped=True)
            if c.state.status != "restarting":
                with contextlib.suppress(RuntimeFailure):
                    self._signal(c, signal_mod.SIGKILL)
                if c.state.paused:
                    with contextlib.suppress(RuntimeFailure):
                        self.runtime_for(c).run("resume", c.runtime_id)
            if not self._wait_stopped(c, 30):
                raise RuntimeFailure(f"container {c.name} did not die on SIGKILL")
        self._wait_supervisor_gone(cdir)
        runtime = self.runtime_for(c)
        has_runtime_state = (runtime.state_root / c.runtime_id).exists()
        mounted = bool(rootfs_mod.mounts_below(cdir.path))
        has_network = bool(c.config.get("NetworkSetup")) and self._has_sandbox(c.id)
        has_volumes = bool(c.spec.mounts or c.config["ImageConfig"].get("Volumes"))
        if has_runtime_state or mounted or has_network or has_volumes:
            # Docker's "dead": from here the container is being taken apart. Should that
            # fail halfway (a mount that will not go...), it stays dead, cannot be started,
            # and a second remove finishes the job (every step below can be done twice).
            # A container its supervisor took apart at its exit skips the state write.
            cdir.update_state(Status="dead", Dead=True, Running=False, Paused=False,
                              Restarting=False, Pid=0)
        if has_runtime_state:
            runtime.delete(c.runtime_id)
        if mounted:
            rootfs_mod.unmount(cdir.rootfs)
        if has_network:
            with contextlib.suppress(ImportError, NotFound):
                self.engine.networks.teardown(c.id)
        if has_volumes:
            with contextlib.suppress(ImportError, NotFound):
                self.engine.volumes.release(c.id, remove_anonymous=volumes)
        for cg in c.cgroup_paths.values():
            with contextlib.suppress(OSError):
                cg.rmdir()
        for suffix in (".attach", ".console"):
            with contextlib.suppress(OSError):
                (self.sock_dir / f"{c.id[:16]}{suffix}").unlink()
        if rootfs_mod.mounts_below(cdir.path):
            raise RuntimeFailure(f"container {c.name} still has mounts under {cdir.path}")
        trash = self.dir / f".rm-{c.id}"
        try:
            os.rename(cdir.path, trash)
        except FileNotFoundError:
            raise NotFound(f"No such container: {id_or_name}") from None
        self._event("destroy", c.id, c.name, c.spec)
        # The container is gone once renamed; deleting its files (the upper dir can be
        # big) need not hold up the caller. recover() sweeps what a crash leaves.
        _delete_later(trash)

    def _has_sandbox(self, cid: str) -> bool:
        """The network manager still has a sandbox of this container (a file check)."""
        try:
            return self.engine.networks.sandbox(cid) is not None
        except ImportError:
            return False

    def _wait_exit_finished(self, cdir: ContainerDir) -> None:
        """A stopped container's last supervisor is done: it removes the runtime's cgroups
        and unmounts the root after recording the exit (and removes an auto-remove one).
        A running container's supervisor is not waited for."""
        if cdir.read_state()["Status"] not in ("running", "paused", "restarting"):
            self._wait_supervisor_gone(cdir)

    def _wait_supervisor_gone(self, cdir: ContainerDir, timeout: float = 10) -> None:
        state = cdir.read_state()
        pid, start = state["ShimPid"], state["ShimStart"]
        if not pid or pid == os.getpid():
            return
        deadline = time.monotonic() + timeout
        while shim.proc_start_time(pid) == start and start and time.monotonic() < deadline:
            # woken by its exit; a zombie (not reaped yet) counts as gone for proc_start_time
            shim.wait_for_exit(pid, min(0.05, max(0.0, deadline - time.monotonic())))

    def rename(self, id_or_name: str, new_name: str) -> None:
        c = self.get(id_or_name)
        new_name = (new_name or "").lstrip("/")
        with self._global_lock():
            self._check_name_free(new_name, except_id=c.id)
            cdir = self._cdir(c.id)
            cfg = cdir.read_config()
            old = cfg["Name"]
            cfg["Name"] = new_name
            cdir.write_config(cfg)
        self._event("rename", c.id, new_name, c.spec, oldName="/" + old)

    # -- supervision and recovery ----------------------------------------------------------

    def _check_supervisor(self, cdir: ContainerDir) -> dict[str, Any]:
        """A running container whose supervisor vanished (kill -9): settle what we can.

        Returns the container's state as read (or as settled here).
        """
        state = cdir.read_state()
        if state["Status"] not in ("running", "paused", "restarting"):
            return state
        pid, start = state["ShimPid"], state["ShimStart"]
        if pid and start and shim.proc_start_time(pid) == start:
            return state
        if not pid:
            return state  # the start is still being set up
        with cdir.locked():  # the supervisor writes its last state under this lock, then exits
            state = cdir.read_state()
            if state["Status"] not in ("running", "paused", "restarting") or (
                    shim.proc_start_time(state["ShimPid"]) == state["ShimStart"]):
                return state
            cfg = cdir.read_config()
            rstate = self.runtime_for(cfg).state(cfg.get("RuntimeID", ""))
            if rstate and rstate.get("status") in ("running", "paused"):
                return state  # still running, unsupervised: stop() can still kill it
            with contextlib.suppress(Exception):
                self.runtime_for(cfg).delete(cfg.get("RuntimeID", ""))
                rootfs_mod.unmount(cdir.rootfs)
            state.update(Status="exited", Running=False, Paused=False, Restarting=False,
                         Pid=0, ExitCode=255, FinishedAt=rfc3339(),
                         Error="the container's supervisor died")
            write_json_atomic(cdir.state_file, state)
        if cfg.get("NetworkSetup"):  # the supervisor's last job, done for it
            with contextlib.suppress(Exception):
                self.engine.networks.teardown(cdir.id)
        return state

    def _busy(self, cid: str) -> bool:
        """Another process holds the container's op lock (a start or remove under way)."""
        try:
            with self._cdir(cid).op_locked(blocking=False) as got:
                return not got
        except OSError:
            return False

    def recover(self) -> None:
        """At engine start: settle what a crash left, then start containers per policy.

        1. Containers whose supervisor died are settled (exited, code 255), their
           root mounts and sockets released.
        2. The network manager removes the sandboxes of containers that do not
           run any more (veths, namespaces, addresses, port rules, peers' hosts
           entries) and stray kernel objects; running containers keep theirs.
        3. The volume manager drops in-use markers of containers that no longer
           exist (a stopped container still uses its volumes, as in Docker).
        4. Restart policies, as Docker applies them when its daemon starts:
           ``always`` starts any container that has run before, even one stopped
           by hand; ``unless-stopped`` only one not stopped by hand; ``on-failure``
           one that failed (non-zero code, not stopped by hand) within its retries.
        5. The launcher that forks supervisors is started now, in the background,
           so that the first ``docker run`` does not wait for its interpreter.
        """
        for entry in list(self.dir.glob(".rm-*")):
            shutil.rmtree(entry, ignore_errors=True)
        ids = self._ids()
        for cid in ids:
            cdir = self._cdir(cid)
            for tmp in cdir.path.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
            self._check_supervisor(cdir)
            state = cdir.read_state()
            if state["Status"] in ("created", "exited", "dead") and not self._busy(cid):
                with contextlib.suppress(EngineError):  # a supervisor that died mid-cleanup
                    rootfs_mod.unmount(cdir.rootfs, lazy=True)
                for suffix in (".attach", ".console"):
                    with contextlib.suppress(OSError):
                        (self.sock_dir / f"{cid[:16]}{suffix}").unlink()
        live = [cid for cid in ids
                if self._cdir(cid).read_state()["Status"] in ("running", "paused", "restarting")
                or self._busy(cid)]
        if (self.engine.root / "networks").is_dir():
            try:
                self.engine.networks.recover(live_container_ids=live)
            except ImportError:
                pass
        if (self.engine.root / "volumes").is_dir():
            try:
                self.engine.volumes.recover(live_container_ids=self._ids())
            except ImportError:
                pass
        for cid in ids:
            cdir = self._cdir(cid)
            if cdir.config_file.exists() and self._restart_on_engine_start(cdir):
                with contextlib.suppress(EngineError):
                    self.start(cid)
        threading.Thread(target=LAUNCHER.warm, name="estiba-launcher-warm", daemon=True).start()

    @staticmethod
    def _restart_on_engine_start(cdir: ContainerDir) -> bool:
        state = cdir.read_state()
        if state["Status"] != "exited" or state["StartedAt"].startswith("0001-"):
            return False
        policy, retries = shim.parse_restart_policy(cdir.read_config()["Spec"]["restart_policy"])
        if policy == "always":
            return True
        if state["ManualStopped"]:
            return False
        if policy == "unless-stopped":
            return True
        return policy == "on-failure" and state["ExitCode"] != 0 and (
            not retries or state["RestartCount"] < retries)

    # -- logs, attach -------------------------------------------------------------------

    def logs(self, id_or_name: str, follow: bool = False, since: float = 0,
             until: float | None = None, tail: int | None = None, timestamps: bool = False,
             stdout: bool = True, stderr: bool = True) -> Iterator[LogEntry]:
        """The container's output; ``timestamps`` is applied by ``LogEntry.format``."""
        c = self.get(id_or_name)
        cdir = self._cdir(c.id)

        def running() -> bool:
            if not cdir.state_file.exists():
                return False
            self._check_supervisor(cdir)
            return cdir.read_state()["Status"] in ("running", "paused", "restarting")

        if tail is not None and tail < 0:
            tail = None
        return read_logs(c.log_path, follow=follow, since=since, until=until, tail=tail,
                         stdout=stdout, stderr=stderr, still_running=running)

    def attach(self, id_or_name: str, stdin: bool = True, stdout: bool = True,
               stderr: bool = True, logs: bool = False, stream: bool = True) -> AttachSession:
        c = self.get(id_or_name)
        live = stream and c.state.status in ("running", "paused", "restarting")
        # A live attach gets its backlog from the supervisor, with no gap before the
        # live output (see Supervisor._send_backlog); a stopped container's is its log.
        backlog = list(self.logs(c.id, stdout=stdout, stderr=stderr)) if logs and not live \
            else []
        sock = None
        if live:
            path = self.sock_dir / f"{c.id[:16]}.attach"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
            except OSError as exc:
                sock.close()
                raise RuntimeFailure(f"cannot attach to container {c.name}: {exc}") from exc
            import json

            sock.sendall(json.dumps({"stdin": stdin and c.spec.open_stdin, "stdout": stdout,
                                     "stderr": stderr, "logs": logs}).encode() + b"\n")
        return AttachSession(sock, backlog, tty=c.spec.tty)

    # -- delegated: exec, top, stats, diff ----------------------------------------------

    def top(self, id_or_name: str, ps_args: str = "") -> dict:
        from engine.runtime import top as top_mod

        c = self._running(id_or_name)
        return top_mod.top(c.pid, ps_args)

    def stats(self, id_or_name: str) -> dict:
        from engine.runtime import cgroups

        c = self.get(id_or_name)
        return cgroups.stats(c)

    def changes(self, id_or_name: str) -> list[dict]:
        from engine.runtime import diff

        c = self.get(id_or_name)
        return diff.changes(c.upper_dir, [Path(p) for p in c.config["LayerDirs"]],
                            ignore=["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"])

    def _execs(self):
        from engine.runtime.exec import ExecManager

        if not hasattr(self, "_exec_manager"):
            self._exec_manager = ExecManager(self)
        return self._exec_manager

    def exec_create(self, id_or_name: str, cmd: list[str], tty: bool = False, user: str = "",
                    env: list[str] | None = None, workdir: str = "", stdin: bool = False) -> str:
        return self._execs().create(id_or_name, cmd, tty=tty, user=user, env=env,
                                    workdir=workdir, stdin=stdin)

    def exec_start(self, exec_id: str, height: int = 0, width: int = 0):
        return self._execs().start(exec_id, height=height, width=width)

    def exec_inspect(self, exec_id: str) -> dict:
        return self._execs().inspect(exec_id)

    def _running(self, id_or_name: str) -> Container:
        c = self.get(id_or_name)
        if c.state.status not in ("running", "paused"):
            raise Conflict(f"Container {c.id} is not running")
        return c

    # -- export, commit -----------------------------------------------------------------

    @contextlib.contextmanager
    def _merged_root(self, c: Container) -> Iterator[Path]:
        """The container's merged root, mounted for the duration when it is stopped."""
        cdir = self._cdir(c.id)
        self._wait_exit_finished(cdir)  # its supervisor unmounts the root after the exit
        mounted_here = False
        if not rootfs_mod.is_mounted(cdir.rootfs):
            rootfs_mod.mount_overlay([Path(p) for p in c.config["LayerDirs"]], cdir.upper,
                                     cdir.work, cdir.rootfs)
            mounted_here = True
        try:
            yield cdir.rootfs
        finally:
            if mounted_here and self.get(c.id).state.status not in ("running", "paused",
                                                                    "restarting"):
                rootfs_mod.unmount(cdir.rootfs)

    def export(self, id_or_name: str, dest: str | Path | BinaryIO) -> None:
        """The container's merged root filesystem as a tar stream (``docker export``)."""
        c = self.get(id_or_name)
        with self._merged_root(c) as root, archive.tar_writer(dest) as tar:
            for entry in sorted(os.listdir(root)):
                tar.add(root / entry, arcname=entry, recursive=True)

    # -- docker cp ------------------------------------------------------------------------

    def archive_stat(self, id_or_name: str, path: str) -> dict:
        """Docker's PathStat of the container's ``path`` (``HEAD .../archive``)."""
        c = self.get(id_or_name)
        with self._merged_root(c) as root:
            return archive.in_container_view(root, c.config.get("Mounts") or [],
                                             lambda: archive.path_stat(root, path))

    def archive_get(self, id_or_name: str, path: str, dest: str | Path | BinaryIO) -> dict:
        """A tar of the container's ``path`` written to ``dest``; returns its PathStat."""
        c = self.get(id_or_name)

        def copy_out() -> dict:
            info = archive.path_stat(root, path)
            archive.read_archive(root, path, dest)
            return info

        with self._merged_root(c) as root:
            return archive.in_container_view(root, c.config.get("Mounts") or [], copy_out)

    def archive_put(self, id_or_name: str, path: str, src: BinaryIO | bytes) -> int:
        """Extract a tar into the container's directory ``path`` (``docker cp`` in)."""
        c = self.get(id_or_name)
        mounts = c.config.get("Mounts") or []
        archive.refuse_read_only(mounts, path, c.spec.read_only, c.name)
        if isinstance(src, (bytes, bytearray)):
            src = io.BytesIO(src)
        with self._op_lock(c.id), self._merged_root(c) as root:
            return archive.in_container_view(root, mounts,
                                             lambda: archive.write_archive(root, path, src))

    def commit(self, id_or_name: str, reference: str | None = None, comment: str = "",
               author: str = "", changes: list[str] | None = None,
               config: dict | None = None, pause: bool = True):
        """A new image from the container's upper dir on top of its image."""
        c = self.get(id_or_name)
        paused_here = False
        if pause and c.state.status == "running":
            self.pause(c.id)
            paused_here = True
        try:
            parent = self.engine.images.resolve(c.image_id)
            merged = dict(c.config["ImageConfig"])
            merged.update({"Env": c.config["Env"], "Cmd": c.config["Cmd"],
                           "Entrypoint": c.config["Entrypoint"],
                           "WorkingDir": c.config["WorkingDir"],
                           "Labels": {**(merged.get("Labels") or {}), **c.spec.labels}})
            if c.spec.user:
                merged["User"] = c.spec.user
            merged.update(config or {})
            if changes:  # docker commit --change "ENV a=1": the Dockerfile words it allows
                merged = apply_changes(merged, changes)
            return self.engine.images.commit(
                parent, c.upper_dir, reference=reference, config=merged,
                created_by=" ".join([c.path, *c.args]), comment=comment, author=author)
        finally:
            if paused_here:
                with contextlib.suppress(EngineError):
                    self.unpause(c.id)

    # -- events -------------------------------------------------------------------------

    def _event(self, action: str, cid: str, name: str, spec: ContainerSpec, **extra: Any) -> None:
        attrs: dict[str, Any] = {"name": name, "image": spec.image}
        attrs.update(spec.labels or {})
        attrs.update(extra)
        self.engine.events.emit("container", action, cid, attrs)


class AttachSession:
    """A live connection to a container's stdio through its supervisor.

    ``read()`` returns ``(stream, data)`` with stream 1 (stdout) or 2 (stderr),
    or None at the end; ``exit_code`` is set once the container exited.
    """

    def __init__(self, sock: socket.socket | None, backlog: list[LogEntry], tty: bool) -> None:
        self.sock = sock
        self.tty = tty
        self.exit_code: int | None = None
        self._backlog = [(1 if e.stream == "stdout" else 2, e.data) for e in backlog]
        self._buf = b""

    def write(self, data: bytes) -> None:
        if self.sock is not None and data:
            self.sock.sendall(struct.pack(">BxxxI", shim.FRAME_STDIN, len(data)) + data)

    def close_stdin(self) -> None:
        if self.sock is not None:
            self.sock.sendall(struct.pack(">BxxxI", shim.FRAME_CLOSE_STDIN, 0))

    def resize(self, height: int, width: int) -> None:
        if self.sock is not None:
            payload = f"{int(height)} {int(width)}".encode()
            self.sock.sendall(struct.pack(">BxxxI", shim.FRAME_RESIZE, len(payload)) + payload)

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        if self._backlog:
            return self._backlog.pop(0)
        if self.sock is None:
            return None
        self.sock.settimeout(timeout)
        while True:
            if len(self._buf) >= 8:
                stream, length = self._buf[0], struct.unpack(">I", self._buf[4:8])[0]
                if len(self._buf) >= 8 + length:
                    data, self._buf = self._buf[8:8 + length], self._buf[8 + length:]
                    if stream == shim.STREAM_EXIT:
                        with contextlib.suppress(ValueError):
                            self.exit_code = int(data)
                        continue
                    return stream, data
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise
            except OSError:
                chunk = b""
            if not chunk:
                return None
            self._buf += chunk

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        while (item := self.read()) is not None:
            yield item

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> AttachSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_pending_deletes: list[threading.Thread] = []


def _delete_later(path: Path) -> None:
    """rm -rf in a thread; a process that exits first waits for it (atexit)."""
    if not _pending_deletes:
        atexit.register(finish_deletes)
    thread = threading.Thread(target=shutil.rmtree, args=(path, True), daemon=True)
    _pending_deletes[:] = [t for t in _pending_deletes if t.is_alive()]
    _pending_deletes.append(thread)
    thread.start()


@functools.cache
def _cgroup_bases() -> tuple[tuple[str, str], ...]:
    """Where containers' cgroups go on this host (a host's hierarchies do not move)."""
    base = "/sys/fs/cgroup"
    if os.path.exists(f"{base}/cgroup.controllers"):
        return (("unified", base),)
    return tuple((c, f"{base}/{c}") for c in ("memory", "cpu", "cpuacct", "cpuset", "pids",
                                               "freezer", "blkio", "devices")
                 if os.path.isdir(f"{base}/{c}"))


def finish_deletes() -> None:
    """Wait for the deletes :func:`_delete_later` started (a supervisor ends with
    ``os._exit``, which runs no ``atexit`` hook)."""
    for thread in list(_pending_deletes):
        thread.join()


def container_caps(spec: ContainerSpec) -> list[str]:
    """The capability set ``spec`` asks for (Docker's default changed by its adds and drops)."""
    return privileges.capabilities(DEFAULT_CAPS, spec.cap_add, spec.cap_drop, spec.privileged)


def _check_types(spec: ContainerSpec) -> None:
    """Fields come from forms and API bodies: wrong types are the caller's error, said so."""
    def strings(name: str, value: Any, optional: bool = True) -> None:
        if value is None and optional:
            return
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"{name} must be a list of strings, not {value!r:.80}")

    if not isinstance(spec.image, str) or not spec.image:
        raise InvalidArgument("image must be a non-empty string")
    strings("cmd", spec.cmd)
    strings("entrypoint", spec.entrypoint)
    strings("env", spec.env, optional=False)
    strings("cap_add", spec.cap_add, optional=False)
    strings("cap_drop", spec.cap_drop, optional=False)
    if not isinstance(spec.privileged, bool):
        raise InvalidArgument(f"privileged must be true or false, not {spec.privileged!r:.40}")
    if not isinstance(spec.labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in spec.labels.items()):
        raise InvalidArgument("labels must map strings to strings")
    for name in ("memory", "memory_swap", "cpu_shares", "cpu_period", "cpu_quota", "nano_cpus",
                 "pids_limit", "log_max_size", "log_max_files"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"{name} must be an integer, not {value!r:.40}")
    for name in ("name", "working_dir", "user", "hostname", "domainname", "cpuset_cpus",
                 "restart_policy", "network_mode", "stop_signal"):
        value = getattr(spec, name)
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"{name} must be a string, not {value!r:.40}")
        if value and "\x00" in value:
            raise InvalidArgument(f"{name} holds a NUL byte")
    if spec.working_dir and not spec.working_dir.startswith("/"):
        raise InvalidArgument(f"the working directory '{spec.working_dir}' is invalid, it needs "
                              "to be an absolute path")
    if spec.tty_size is not None and (len(spec.tty_size) != 2 or not all(
            isinstance(v, int) and 0 < v < 10000 for v in spec.tty_size)):
        raise InvalidArgument(f"invalid terminal size {spec.tty_size!r}")


def _validate(spec: ContainerSpec) -> None:
    _check_types(spec)
    container_caps(spec)  # an unknown capability is refused at create
    name, _, count = (spec.restart_policy or "no").partition(":")
    if name not in RESTART_POLICIES or (count and (name != "on-failure" or not count.isdigit())):
        raise InvalidArgument(f"invalid restart policy {spec.restart_policy!r}: use no, always, "
                              "unless-stopped or on-failure[:N]")
    if spec.auto_remove and name != "no":
        raise InvalidArgument("Conflicting options: AutoRemove and restart policy")
    if spec.stop_signal:
        parse_signal(spec.stop_signal)
    if spec.hostname and not re.match(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,62})$", spec.hostname):
        raise InvalidArgument(f"invalid hostname {spec.hostname!r}")


def _matches(c: Container, filters: dict) -> bool:
    def values(key: str) -> list[str]:
        v = filters.get(key)
        if v is None:
            return []
        if isinstance(v, dict):
            return [k for k, on in v.items() if on]
        return [v] if isinstance(v, str) else list(v)

    if (st := values("status")) and c.state.status not in st:
        return False
    if (names := values("name")) and not any(re.search(n.lstrip("/"), c.name) for n in names):
        return False
    if (ids := values("id")) and not any(c.id.startswith(i) for i in ids):
        return False
    if (ex := values("exited")) and not (c.state.status == "exited"
                                         and str(c.state.exit_code) in ex):
        return False
    if (anc := values("ancestor")) and not ({c.image_name, c.image_id} & set(anc)):
        return False
    labels = c.labels
    for lab in values("label"):
        key, eq, val = lab.partition("=")
        if key not in labels or (eq and labels[key] != val):
            return False
    return True


def _docker_mount(m: dict, specs: list[MountSpec]) -> dict:
    """An OCI mount entry as inspect's ``Mounts`` shows it (volumes by name)."""
    opts = m.get("options") or []
    spec = next((s for s in specs if s.target.rstrip("/") == m["destination"].rstrip("/")), None)
    kind = spec.type if spec else ("volume" if "/volumes/" in m.get("source", "") else "bind")
    out = {"Type": kind, "Source": m.get("source", ""), "Destination": m["destination"],
           "Mode": "", "RW": "ro" not in opts, "Propagation": "" if kind == "volume" else
           "rprivate"}
    if kind == "volume":
        out["Name"] = spec.source if spec and spec.source else Path(m.get("source", "")).parent.name
        out["Driver"] = "local"
    return out
