"""Docker's JSON in, estiba's engine arguments out (and filters, and stdcopy frames).

Pure functions without Django or the engine, so the API process can check a
request before it bothers a worker: a malformed bind, port or memory limit is a
400 here with the field named, never a half-made container on the host.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from dockerapi.http import BadRequest

STDIN, STDOUT, STDERR = 0, 1, 2
STREAM_IDS = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR}


def frame(stream: str | int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream: [type,0,0,0,size32be] + payload."""
    kind = STREAM_IDS.get(stream, STDOUT) if isinstance(stream, str) else stream
    return struct.pack(">BxxxL", kind, len(data)) + data


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """``filters`` as Docker sends it: ``{"label": ["a=b"]}``, or the old ``{"a=b": true}`` maps."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"filters is not valid JSON: {raw[:80]!r}") from exc
    if not isinstance(data, dict):
        raise BadRequest("filters must be a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


def _str_list(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{field} must be a list of strings")
    return list(value)


def _bool(value: Any, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"{field} must be true or false, not {value!r:.40}")
    return value


#: HostConfig fields estiba does not implement, with the value that means "not asked
#: for" (what the docker CLI sends by default). Any other value is refused, so that a
#: setting is never silently dropped (a --security-opt or --device that does nothing).
UNSUPPORTED_HOST_CONFIG: dict[str, tuple[Any, ...]] = {
    "VolumesFrom": (None, []), "Dns": (None, []), "DnsOptions": (None, []),
    "DnsSearch": (None, []), "ExtraHosts": (None, []), "GroupAdd": (None, []),
    "Links": (None, []), "OomScoreAdj": (None, 0), "PidMode": (None, "", "private"),
    "IpcMode": (None, "", "private", "shareable"), "UTSMode": (None, "", "private"),
    "UsernsMode": (None, "", "host"), "CgroupnsMode": (None, "", "private"),
    "Cgroup": (None, ""), "CgroupParent": (None, ""), "SecurityOpt": (None, []),
    "ShmSize": (None, 0), "Isolation": (None, "", "default"), "VolumeDriver": (None, "", "local"),
    "BlkioWeight": (None, 0), "BlkioWeightDevice": (None, []), "BlkioDeviceReadBps": (None, []),
    "BlkioDeviceWriteBps": (None, []), "BlkioDeviceReadIOps": (None, []),
    "BlkioDeviceWriteIOps": (None, []), "CpuRealtimePeriod": (None, 0),
    "CpuRealtimeRuntime": (None, 0), "CpusetMems": (None, ""), "Devices": (None, []),
    "DeviceCgroupRules": (None, []), "DeviceRequests": (None, []),
    "MemoryReservation": (None, 0), "MemorySwappiness": (None, -1),
    "OomKillDisable": (None, False), "Ulimits": (None, []), "CpuCount": (None, 0),
    "CpuPercent": (None, 0), "IOMaximumIOps": (None, 0), "IOMaximumBandwidth": (None, 0),
    "KernelMemory": (None, 0), "KernelMemoryTCP": (None, 0), "Sysctls": (None, {}),
    "Runtime": (None, ""), "Init": (None, False), "StorageOpt": (None, {}),
    "MaskedPaths": (None,), "ReadonlyPaths": (None,),
}


def refuse_unsupported(hc: dict[str, Any]) -> None:
    """A 400 naming the first HostConfig setting estiba would otherwise ignore."""
    for name, unset in UNSUPPORTED_HOST_CONFIG.items():
        value = hc.get(name)
        if not any(value == u and type(value) is type(u) for u in unset):
            raise BadRequest(f"HostConfig.{name} is not supported by estiba (got {value!r:.60});"
                             " see the README's list of what does not work yet")
    log_type = (hc.get("LogConfig") or {}).get("Type") or "json-file"
    if log_type != "json-file":
        raise BadRequest(f"HostConfig.LogConfig.Type {log_type!r} is not supported by estiba: "
                         "it logs with json-file")


def _int(value: Any, field: str, minimum: int = 0) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{field} must be an integer, not {value!r}")
    if value < minimum:
        raise BadRequest(f"{field} must be at least {minimum}, not {value}")
    return value


def parse_bind(bind: str) -> dict[str, Any]:
    """``src:dst[:opts]`` -> a mount; a source without a slash names a volume."""
    parts = bind.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise BadRequest(f"invalid bind {bind!r}: expected SOURCE:TARGET[:ro|rw]")
    source, target = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 else []
    if not target.startswith("/"):
        raise BadRequest(f"invalid bind {bind!r}: the target must be an absolute path")
    mount: dict[str, Any] = {
        "type": "bind" if source.startswith("/") else "volume",
        "source": source, "target": target, "read_only": "ro" in opts,
    }
    for opt in opts:
        if opt in ("rprivate", "private", "rshared", "shared", "rslave", "slave"):
            mount["propagation"] = opt
        elif opt not in ("ro", "rw", "z", "Z", "nocopy", ""):
            raise BadRequest(f"invalid bind {bind!r}: unknown option {opt!r}")
    return mount


def parse_mount(m: Any) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise BadRequest("HostConfig.Mounts entries must be objects")
    kind = (m.get("Type") or "volume").lower()
    if kind not in ("bind", "volume", "tmpfs"):
        raise BadRequest(f"HostConfig.Mounts: unsupported mount type {kind!r}")
    target = m.get("Target") or m.get("Destination") or ""
    if not isinstance(target, str) or not target.startswith("/"):
        raise BadRequest(f"HostConfig.Mounts: Target must be an absolute path, not {target!r}")
    mount: dict[str, Any] = {"type": kind, "source": m.get("Source") or "", "target": target,
                             "read_only": bool(m.get("ReadOnly"))}
    if kind == "bind" and not str(mount["source"]).startswith("/"):
        raise BadRequest(f"HostConfig.Mounts: a bind Source must be an absolute path, "
                         f"not {mount['source']!r}")
    if kind == "tmpfs":
        size = (m.get("TmpfsOptions") or {}).get("SizeBytes")
        if size:
            mount["tmpfs_size"] = _int(size, "TmpfsOptions.SizeBytes", 1)
    prop = (m.get("BindOptions") or {}).get("Propagation")
    if prop:
        mount["propagation"] = prop
    return mount


def parse_size(text: str, field: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "b": 1}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError as exc:
        raise BadRequest(f"{field}: invalid size {text!r}") from exc


def restart_policy(rp: Any) -> str:
    if not rp:
        return "no"
    if not isinstance(rp, dict):
        raise BadRequest("HostConfig.RestartPolicy must be an object")
    name = rp.get("Name") or "no"
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise BadRequest(f"HostConfig.RestartPolicy: unknown policy {name!r}")
    count = rp.get("MaximumRetryCount") or 0
    if name == "on-failure" and count:
        return f"on-failure:{_int(count, 'RestartPolicy.MaximumRetryCount')}"
    return name


def container_spec(body: Any, name: str | None) -> dict[str, Any]:
    """The body of ``POST /containers/create`` -> ``ContainerSpec`` keyword arguments."""
    if not isinstance(body, dict):
        raise BadRequest("the container config must be a JSON object")
    image = body.get("Image")
    if not image:
        raise BadRequest("Config.Image is required (which image to run)")
    if not isinstance(image, str):
        raise BadRequest(f"Config.Image must be an image reference (a string), not {image!r}")
    hc = body.get("HostConfig") or {}
    if not isinstance(hc, dict):
        raise BadRequest("HostConfig must be an object")
    spec: dict[str, Any] = {"image": image, "name": name or None}
    cmd = _str_list(body.get("Cmd"), "Cmd")
    if cmd is not None:
        spec["cmd"] = cmd
    entrypoint = _str_list(body.get("Entrypoint"), "Entrypoint")
    if entrypoint is not None:
        spec["entrypoint"] = entrypoint
    spec["env"] = _str_list(body.get("Env"), "Env") or []
    for env in spec["env"]:
        if "=" not in env and not env:
            raise BadRequest("Env entries must look like NAME=value")
    for key, field in (("working_dir", "WorkingDir"), ("user", "User"), ("hostname", "Hostname"),
                       ("domainname", "Domainname"), ("stop_signal", "StopSignal")):
        value = body.get(field)
        if value:
            if not isinstance(value, str):
                raise BadRequest(f"{field} must be a string")
            spec[key] = value
    spec["tty"] = bool(body.get("Tty"))
    spec["open_stdin"] = bool(body.get("OpenStdin"))
    spec["stdin_once"] = bool(body.get("StdinOnce"))
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise BadRequest("Labels must be an object of strings")
    spec["labels"] = {str(k): str(v) for k, v in labels.items()}
    if body.get("StopTimeout") is not None:
        spec["stop_timeout"] = _int(body["StopTimeout"], "StopTimeout")
    exposed = body.get("ExposedPorts") or {}
    if not isinstance(exposed, dict):
        raise BadRequest("ExposedPorts must be an object")
    spec["exposed_ports"] = {k: {} for k in exposed}

    spec["memory"] = _int(hc.get("Memory"), "HostConfig.Memory")
    if spec["memory"] and spec["memory"] < 6 * 1024 * 1024:
        raise BadRequest("HostConfig.Memory: the minimum memory limit is 6MB")
    spec["memory_swap"] = _int(hc.get("MemorySwap"), "HostConfig.MemorySwap", -1)
    spec["cpu_shares"] = _int(hc.get("CpuShares"), "HostConfig.CpuShares")
    spec["cpu_period"] = _int(hc.get("CpuPeriod"), "HostConfig.CpuPeriod")
    spec["cpu_quota"] = _int(hc.get("CpuQuota"), "HostConfig.CpuQuota", -1)
    spec["nano_cpus"] = _int(hc.get("NanoCpus"), "HostConfig.NanoCpus")
    if hc.get("CpusetCpus"):
        spec["cpuset_cpus"] = str(hc["CpusetCpus"])
    pids = hc.get("PidsLimit")
    spec["pids_limit"] = 0 if pids is None else _int(pids, "HostConfig.PidsLimit", -1)
    spec["restart_policy"] = restart_policy(hc.get("RestartPolicy"))
    spec["auto_remove"] = bool(hc.get("AutoRemove"))
    spec["cap_add"] = _str_list(hc.get("CapAdd"), "HostConfig.CapAdd") or []
    spec["cap_drop"] = _str_list(hc.get("CapDrop"), "HostConfig.CapDrop") or []
    spec["privileged"] = _bool(hc.get("Privileged"), "HostConfig.Privileged")
    spec["read_only"] = _bool(hc.get("ReadonlyRootfs"), "HostConfig.ReadonlyRootfs")
    console = hc.get("ConsoleSize")
    if spec["tty"] and isinstance(console, list) and len(console) == 2 and all(
            isinstance(v, int) and 0 < v < 10000 for v in console):
        spec["tty_size"] = (console[0], console[1])  # rows, columns, before the first byte
    refuse_unsupported(hc)
    if spec["auto_remove"] and spec["restart_policy"] != "no":
        raise BadRequest("can't create a container with both AutoRemove and a RestartPolicy")
    mode = hc.get("NetworkMode") or "bridge"
    spec["network_mode"] = "bridge" if mode == "default" else mode
    pb = hc.get("PortBindings") or {}
    if not isinstance(pb, dict):
        raise BadRequest("HostConfig.PortBindings must be an object")
    ports: dict[str, list[dict]] = {}
    for port, bindings in pb.items():
        number, _, proto = port.partition("/")
        if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp"):
            raise BadRequest(f"HostConfig.PortBindings: invalid port {port!r}")
        key = f"{number}/{proto or 'tcp'}"
        ports[key] = [{"HostIp": (b or {}).get("HostIp") or "",
                       "HostPort": str((b or {}).get("HostPort") or "")} for b in bindings or [{}]]
        spec["exposed_ports"].setdefault(key, {})
    spec["port_bindings"] = ports
    spec["publish_all_ports"] = bool(hc.get("PublishAllPorts"))

    mounts = [parse_bind(b) for b in _str_list(hc.get("Binds"), "HostConfig.Binds") or []]
    mounts += [parse_mount(m) for m in hc.get("Mounts") or []]
    tmpfs = hc.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict):
        raise BadRequest("HostConfig.Tmpfs must be an object of path -> options")
    for target, opts in tmpfs.items():
        if not target.startswith("/"):
            raise BadRequest(f"HostConfig.Tmpfs: {target!r} is not an absolute path")
        mount: dict[str, Any] = {"type": "tmpfs", "source": "", "target": target,
                                 "read_only": False}
        for opt in str(opts or "").split(","):
            if opt.startswith("size="):
                mount["tmpfs_size"] = parse_size(opt[5:], f"HostConfig.Tmpfs[{target}]")
        mounts.append(mount)
    volumes = body.get("Volumes") or {}
    taken = {m["target"] for m in mounts}
    for target in volumes:
        if target not in taken:
            mounts.append({"type": "volume", "source": "", "target": target, "read_only": False})
    spec["mounts"] = mounts
    endpoints = ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
    if endpoints:
        nets = {}
        for net, cfg in endpoints.items():
            cfg = cfg or {}
            net = "bridge" if net == "default" else net
            ipam = cfg.get("IPAMConfig") or {}
            nets[net] = {"aliases": list(cfg.get("Aliases") or []),
                         "ipv4_address": ipam.get("IPv4Address") or None}
        spec["networks"] = nets
    return spec
