"""System endpoints: _ping, version, info, events, system/df, and estiba's login."""

from __future__ import annotations

import asyncio
import json
import platform
import time
from typing import Any

from dockerapi.http import BadRequest, Request, Response, json_response
from dockerapi.translate import parse_filters
from engine.hostinfo import VERSION

API_VERSION = "1.41"


def register(api) -> None:
    api.route("GET", r"/_ping", ping)
    api.route("GET", r"/version", version)
    api.route("GET", r"/info", info)
    api.route("GET", r"/events", events)
    api.route("GET", r"/system/df", system_df)


async def ping(api, req: Request) -> Response:
    return Response(200, b"OK", {"Cache-Control": "no-cache, no-store, must-revalidate",
                                 "Pragma": "no-cache", "Builder-Version": "1"},
                    content_type="text/plain; charset=utf-8")


async def version(api, req: Request) -> Response:
    return json_response({
        "Platform": {"Name": "estiba"},
        "Components": [{"Name": "Engine", "Version": VERSION,
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": "1.24",
                                    "Os": "linux", "Arch": _arch()}}],
        "Version": VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": "1.24",
        "GitCommit": "estiba", "GoVersion": "python" + platform.python_version(),
        "Os": "linux", "Arch": _arch(), "KernelVersion": platform.release(),
        "BuildTime": "", "Experimental": False,
    })


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


async def info(api, req: Request) -> Response:
    host = await api.backend.call("system_info")
    containers = await api.backend.call("container_list", all=True)
    images = await api.backend.call("image_list")
    states = [c.get("State", "") for c in containers]
    cgroup = str(host.get("cgroup_version", 1))
    runtime = host.get("runtime", "runc")
    return json_response({
        "ID": host.get("hostname", ""), "Name": host.get("hostname", ""),
        "Containers": len(containers), "ContainersRunning": states.count("running"),
        "ContainersPaused": states.count("paused"),
        "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
        "Images": len(images), "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "DockerRootDir": host.get("root", ""), "Plugins": {
            "Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": False, "KernelMemory": False,
        "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True,
        "PidsLimit": True, "IPv4Forwarding": True, "BridgeNfIptables": False,
        "BridgeNfIp6tables": False, "Debug": False, "NFd": 0, "OomKillDisable": False,
        "NGoroutines": 0, "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": cgroup,
        "NEventsListener": 0, "KernelVersion": host.get("kernel", platform.release()),
        "OperatingSystem": "estiba on " + _os_name(), "OSVersion": "", "OSType": "linux",
        "Architecture": host.get("arch", platform.machine()), "IndexServerAddress": "",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {},
                           "Mirrors": []},
        "NCPU": host.get("ncpu", 1), "MemTotal": host.get("mem_total", 0),
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Labels": [],
        "ExperimentalBuild": False, "ServerVersion": host.get("engine_version", VERSION),
        "Runtimes": {runtime: {"path": runtime}}, "DefaultRuntime": runtime,
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False, "NodeID": "",
                  "NodeAddr": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": str(host.get("runtime_version", "")), "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""}, "SecurityOptions": ["name=seccomp"],
        "Warnings": [],
    })


def _os_name() -> str:
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


async def system_df(api, req: Request) -> Response:
    data = await api.backend.call("system_df")
    data = await api.policy.filter_df(req, data)
    return json_response(data)


def _ts(value: str | None, name: str) -> int | None:
    """Docker's since/until: unix seconds (maybe fractional) -> nanoseconds."""
    if not value:
        return None
    try:
        return int(float(value) * 1_000_000_000)
    except ValueError as exc:
        raise BadRequest(f"{name} must be a unix timestamp, not {value!r}") from exc


def event_matches(event: dict, filters: dict[str, list[str]]) -> bool:
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    for key, wanted in filters.items():
        if not wanted:
            continue
        if key == "type" and event.get("Type") not in wanted:
            return False
        if key == "event" and event.get("Action") not in wanted and not any(
                event.get("Action", "").startswith(w + ":") for w in wanted):
            return False
        if key in ("container", "image", "volume", "network"):
            if event.get("Type") != key and key != "image":
                return False
            names = {actor.get("ID", ""), attrs.get("name", "")}
            if key == "image":
                names |= {attrs.get("image", "")}
            if not any(w in names or (len(w) >= 4 and actor.get("ID", "").startswith(w))
                       for w in wanted):
                return False
        if key == "label":
            for label in wanted:
                k, _, v = label.partition("=")
                if k not in attrs or (v and attrs[k] != v):
                    return False
    return True


async def events(api, req: Request) -> Response:
    since = _ts(req.query.get("since"), "since")
    until = _ts(req.query.get("until"), "until")
    filters = parse_filters(req.query.get("filters"))
    backend = api.backend
    offset = None if until is not None else await backend.call("events_offset")
    past: list[dict[str, Any]] = []
    if since is not None or until is not None:
        past = await backend.call("events_history", since or 0, until)

    async def gen():
        last = 0
        for ev in past:
            last = max(last, ev.get("timeNano", 0))
            if event_matches(ev, filters) and await api.policy.may_see_event(req, ev):
                yield json.dumps(ev).encode() + b"\n"
        if until is not None and until <= time.time_ns():
            return
        # An ``until`` still to come ends the stream then, whether or not events come.
        deadline = None if until is None else time.monotonic() + (until - time.time_ns()) / 1e9
        follow = backend.stream("events_follow", offset)
        try:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                try:
                    ev = await asyncio.wait_for(anext(follow), left)
                except (StopAsyncIteration, TimeoutError):
                    return
                if until is not None and ev.get("timeNano", 0) > until:
                    return
                if ev.get("timeNano", 0) <= last:
                    continue
                if event_matches(ev, filters) and await api.policy.may_see_event(req, ev):
                    yield json.dumps(ev).encode() + b"\n"
        finally:
            await follow.aclose()

    return Response(200, stream=gen())
