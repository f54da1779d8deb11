"""What the four prune endpoints share: Docker's filters and remove-what-is-unused.

The engine has no ``containers.prune``, the gateway does not pass a prune's
filters on to the worker's volumes/networks prune, and the engine counts a
volume used only once its container started; so container and volume prunes,
and a network prune with filters, are done here: list what the filters match,
then remove each object the engine agrees to remove. The engine refuses what
is in use (a running container, a volume or network a started container uses),
so a race with a new user ends in "skipped", never in a removal of something used.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

from dockerapi.http import BadRequest
from engine.errors import Conflict, EngineError, NotFound

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def until_seconds(value: str) -> float:
    """Docker's ``until``: a Unix timestamp, an RFC 3339 date, or a Go duration before now."""
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    if value and _DURATION.sub("", value) == "":
        return time.time() - sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise BadRequest(f"invalid until filter {value!r}: give a timestamp, an RFC 3339 "
                         "date or a duration such as 24h") from None


def split_until(filters: dict[str, list[str]]) -> tuple[dict[str, list[str]], float | None]:
    """The filters without ``until``, and the ``until`` cut-off (the earliest given)."""
    rest = {k: v for k, v in filters.items() if k != "until"}
    values = filters.get("until") or []
    return rest, (min(until_seconds(v) for v in values) if values else None)


def _created(value) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


async def prune_containers(api, req, filters: dict[str, list[str]]) -> dict:
    filters, until = split_until(filters)
    items = await api.backend.call("container_list", all=True, filters=filters or None)
    deleted: list[str] = []
    reclaimed = 0
    for item in items:
        if item.get("State") not in ("created", "exited", "dead"):
            continue
        if until is not None and _created(item.get("Created")) >= until:
            continue
        try:
            await api.backend.call("container_remove", item["Id"], force=False, volumes=False)
        except (NotFound, Conflict):
            continue  # removed meanwhile, or started again
        await api.policy.forget(req, "container", item["Id"])
        deleted.append(item["Id"])
        reclaimed += int(item.get("SizeRw") or 0)
    return {"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed}


async def _volumes_of_created_containers(api) -> set[str]:
    """Named volumes a created, never started container will mount.

    The engine marks a volume used when its container starts; Docker counts it
    used from ``create`` on, so prune must not take it from under the container.
    """
    names: set[str] = set()
    items = await api.backend.call("container_list", all=True, filters={"status": ["created"]})
    for item in items:
        try:
            data = await api.backend.call("container_inspect", item["Id"])
        except NotFound:
            continue
        for m in (data.get("HostConfig") or {}).get("Mounts") or []:
            if m.get("Type") == "volume" and m.get("Source"):
                names.add(m["Source"])
        for m in data.get("Mounts") or []:
            if m.get("Type") == "volume" and m.get("Name"):
                names.add(m["Name"])
    return names


async def prune_volumes(api, req, filters: dict[str, list[str]]) -> dict:
    if "until" in filters:
        raise BadRequest("invalid filter 'until' for volume prune")
    data = await api.backend.call("volume_list", filters or None)
    keep = await _volumes_of_created_containers(api)
    deleted: list[str] = []
    reclaimed = 0
    for vol in data.get("Volumes") or []:
        if vol["Name"] in keep:
            continue
        try:
            await api.backend.call("volume_remove", vol["Name"], force=False)
        except (NotFound, Conflict):
            continue  # in use (or gone)
        await api.policy.forget(req, "volume", vol["Name"])
        deleted.append(vol["Name"])
        reclaimed += max(int(((vol.get("UsageData") or {}).get("Size")) or 0), 0)
    return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}


PREDEFINED_NETWORKS = {"bridge", "host", "none"}


async def prune_networks(api, req, filters: dict[str, list[str]]) -> dict:
    if not filters:
        return await api.backend.call("network_prune", None)
    filters, until = split_until(filters)
    items = await api.backend.call("network_list", filters or None)
    deleted: list[str] = []
    for net in items:
        if net.get("Name") in PREDEFINED_NETWORKS or net.get("Containers"):
            continue
        if until is not None and _created(net.get("Created")) >= until:
            continue
        try:
            await api.backend.call("network_remove", net["Id"])
        except (NotFound, Conflict):
            continue
        except EngineError:
            continue  # a predefined network the engine keeps
        await api.policy.forget(req, "network", net["Id"])
        deleted.append(net["Name"])
    return {"NetworksDeleted": deleted}
