"""``docker import --change`` / ``commit --change``: Dockerfile lines applied to a config.

Only the instructions that change image metadata are allowed (Docker's list:
CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
WORKDIR); they edit the runtime config (``config["config"]``) without running
anything. JSON ("exec") and shell forms are both accepted, as in a Dockerfile.
"""

from __future__ import annotations

import copy
import json
import shlex

from engine.errors import InvalidArgument

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
           "VOLUME", "WORKDIR")


def _exec_or_shell(arg: str) -> list[str]:
    text = arg.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text]


def _pairs(arg: str, what: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` or the legacy ``k v`` form."""
    words = shlex.split(arg)
    if not words:
        raise InvalidArgument(f"{what} needs at least one argument")
    if "=" not in words[0]:
        key, _, value = arg.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{what}: {word!r} is not key=value")
        out.append((key, value))
    return out


def apply_changes(config: dict, changes: list[str]) -> dict:
    """Return a copy of the runtime ``config`` with each change line applied."""
    cfg = copy.deepcopy(config)
    for line in changes:
        instruction, _, arg = line.strip().partition(" ")
        op = instruction.upper()
        if op not in ALLOWED:
            raise InvalidArgument(f"change {line!r}: {instruction} is not one of "
                                  f"{', '.join(ALLOWED)}")
        arg = arg.strip()
        if op == "CMD":
            cfg["Cmd"] = _exec_or_shell(arg)
        elif op == "ENTRYPOINT":
            cfg["Entrypoint"] = _exec_or_shell(arg)
        elif op == "ENV":
            env = [e for e in cfg.get("Env") or []]
            for key, value in _pairs(arg, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
            cfg["Env"] = env
        elif op == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs(arg, "LABEL"))
            cfg["Labels"] = labels
        elif op == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for port in arg.split():
                if "/" not in port:
                    port += "/tcp"
                number, _, proto = port.partition("/")
                if not number.isdigit() or proto not in ("tcp", "udp", "sctp"):
                    raise InvalidArgument(f"change {line!r}: bad port {port!r}")
                ports[port] = {}
            cfg["ExposedPorts"] = ports
        elif op == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            paths = _exec_or_shell(arg) if arg.startswith("[") else arg.split()
            if paths[:2] == ["/bin/sh", "-c"]:
                paths = arg.split()
            for p in paths:
                vols[p] = {}
            cfg["Volumes"] = vols
        elif op == "ONBUILD":
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), arg]
        elif op == "STOPSIGNAL":
            cfg["StopSignal"] = arg
        elif op == "USER":
            cfg["User"] = arg
        elif op == "WORKDIR":
            cfg["WorkingDir"] = arg if arg.startswith("/") else (
                (cfg.get("WorkingDir") or "/").rstrip("/") + "/" + arg)
    return cfg
