"""Volume and network endpoints: create, list, inspect, remove, prune, connect."""

from __future__ import annotations

import re

from dockerapi.http import BadRequest, HTTPError, Request, Response, empty, json_response
from dockerapi.translate import parse_filters

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def register(api) -> None:
    r = api.route
    r("GET", r"/volumes", volume_list)
    r("POST", r"/volumes/create", volume_create)
    r("POST", r"/volumes/prune", volume_prune)
    r("GET", r"/volumes/(?P<name>[^/]+)", volume_inspect)
    r("DELETE", r"/volumes/(?P<name>[^/]+)", volume_remove)
    r("GET", r"/networks", network_list)
    r("POST", r"/networks/create", network_create)
    r("POST", r"/networks/prune", network_prune)
    r("GET", r"/networks/(?P<id>[^/]+)", network_inspect)
    r("DELETE", r"/networks/(?P<id>[^/]+)", network_remove)
    r("POST", r"/networks/(?P<id>[^/]+)/connect", network_connect)
    r("POST", r"/networks/(?P<id>[^/]+)/disconnect", network_disconnect)


# --- volumes ------------------------------------------------------------------------------

async def volume_list(api, req: Request) -> Response:
    data = await api.backend.call("volume_list", parse_filters(req.query.get("filters")))
    data["Volumes"] = await api.policy.filter_list(req, "volume", data.get("Volumes") or [])
    return json_response(data)


async def volume_create(api, req: Request) -> Response:
    body = await req.json({}) or {}
    name = body.get("Name") or None
    if name is not None and (not isinstance(name, str) or not NAME_RE.match(name)):
        raise BadRequest(f"invalid volume name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                         "are allowed")
    driver = body.get("Driver") or "local"
    if driver != "local":
        raise BadRequest(f"volume driver {driver!r} is not available: only 'local'")
    labels, options = body.get("Labels") or {}, body.get("DriverOpts") or {}
    if not isinstance(labels, dict) or not isinstance(options, dict):
        raise BadRequest("Labels and DriverOpts must be objects")
    await api.policy.check_create(req, "volume", body)
    data = await api.backend.call("volume_create", name, driver, labels, options)
    await api.policy.record(req, "volume", data.get("Name", name or ""), data.get("Name", ""))
    return json_response(data, 201)


async def volume_inspect(api, req: Request, name: str) -> Response:
    data = await api.backend.call("volume_inspect", name)
    await api.policy.check(req, "volume", data.get("Name", name), data.get("Name", name))
    return json_response(data)


async def volume_remove(api, req: Request, name: str) -> Response:
    data = await api.backend.call("volume_inspect", name)
    await api.policy.check(req, "volume", data.get("Name", name), data.get("Name", name))
    await api.backend.call("volume_remove", data.get("Name", name), force=req.qbool("force"))
    await api.policy.forget(req, "volume", data.get("Name", name))
    return empty(204)


async def volume_prune(api, req: Request) -> Response:
    if not req.is_admin:
        raise HTTPError(403, "only an administrator may prune volumes")
    from dockerapi.routes.prune import prune_volumes

    return json_response(await prune_volumes(api, req, parse_filters(req.query.get("filters"))))


# --- networks -----------------------------------------------------------------------------

async def network_list(api, req: Request) -> Response:
    items = await api.backend.call("network_list", parse_filters(req.query.get("filters")))
    return json_response(items)


async def network_create(api, req: Request) -> Response:
    body = await req.json({}) or {}
    name = body.get("Name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequest(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                         "are allowed")
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise BadRequest(f"network driver {driver!r} is not available: only 'bridge'")
    await api.policy.check_create(req, "network", body)
    data = await api.backend.call("network_create", body)
    await api.policy.record(req, "network", data["Id"], name)
    return json_response(data, 201)


async def _net(api, req: Request, id: str, *, write: bool = False) -> dict:
    data = await api.backend.call("network_inspect", id)
    if write or data.get("Name") not in ("bridge", "host", "none"):
        await api.policy.check(req, "network", data.get("Id", id), data.get("Name", ""))
    return data


async def network_inspect(api, req: Request, id: str) -> Response:
    return json_response(await _net(api, req, id))


async def network_remove(api, req: Request, id: str) -> Response:
    data = await _net(api, req, id, write=True)
    await api.backend.call("network_remove", data.get("Id", id))
    await api.policy.forget(req, "network", data.get("Id", id))
    return empty(204)


async def network_prune(api, req: Request) -> Response:
    if not req.is_admin:
        raise HTTPError(403, "only an administrator may prune networks")
    from dockerapi.routes.prune import prune_networks

    return json_response(await prune_networks(api, req, parse_filters(req.query.get("filters"))))


async def _container_of(api, req: Request, body: dict) -> str:
    from dockerapi.routes.containers import _inspect

    name = body.get("Container")
    if not name or not isinstance(name, str):
        raise BadRequest("Container is required (which container to connect)")
    return (await _inspect(api, req, name))["Id"]


async def network_connect(api, req: Request, id: str) -> Response:
    body = await req.json({}) or {}
    data = await _net(api, req, id)
    container = await _container_of(api, req, body)
    await api.backend.call("network_connect", data.get("Id", id), container,
                           body.get("EndpointConfig") or {})
    return empty(200)


async def network_disconnect(api, req: Request, id: str) -> Response:
    body = await req.json({}) or {}
    data = await _net(api, req, id)
    container = await _container_of(api, req, body)
    await api.backend.call("network_disconnect", data.get("Id", id), container,
                           force=bool(body.get("Force")))
    return empty(200)
