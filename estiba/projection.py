"""Keep the database's mirror of engine objects current, and tell browsers.

The engine's files are the truth; the ``Container``/``Image``/``Volume``/
``Network`` rows are a projection of it for listing, filtering and ownership.
Two things move it: each engine event (applied as it happens) and a periodic
reconcile that compares the engine's lists with the rows — the safety net for
anything that changed behind estiba's back (a container killed with ``kill
-9`` from a shell shows as exited within a reconcile interval).

Every change is announced to the Channels groups that may see it: ``events``
(admins) and ``user.<owner id>``. A message carries the row's public fields, so
a page updates itself without asking the server again.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import close_old_connections

from containers_app.models import Container
from images_app.models import Image
from networks_app.models import Network
from volumes_app.models import Volume

log = logging.getLogger("estiba.projection")

ADMIN_GROUP = "events"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


# --- what a browser is told --------------------------------------------------------------

def container_message(row: Container, action: str) -> dict:
    return {
        "kind": "container", "action": action, "id": row.engine_id, "host": row.host,
        "name": row.name, "image": row.image, "state": row.state, "status": row.status,
        "command": row.command,
    }


def generic_message(kind: str, row: Any, action: str) -> dict:
    return {"kind": kind, "action": action, "id": row.engine_id, "host": row.host,
            "name": str(row)}


def notify(owner_id: int | None, message: dict) -> None:
    """Send ``message`` to the admins and to the owner's browsers."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "estiba.event", "t": time.time(), **message}
    groups = [ADMIN_GROUP] + ([user_group(owner_id)] if owner_id else [])
    try:
        async_to_sync(_send_all)(layer, groups, message)
    except Exception:  # a browser update must never stop the projection
        log.exception("could not notify browsers")


async def _send_all(layer, groups: list[str], message: dict) -> None:
    for group in groups:
        await layer.group_send(group, message)


# --- containers --------------------------------------------------------------------------

def _ts(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and value > 0:
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str) and value and not value.startswith("0001"):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")[:32])
        except ValueError:
            return None
    return None


def container_fields(summary: dict) -> dict:
    """Row fields from Docker's container summary (``docker ps`` JSON) or inspect JSON."""
    if "State" in summary and isinstance(summary["State"], dict):  # inspect shape
        state = summary["State"]
        config = summary.get("Config") or {}
        return {
            "name": (summary.get("Name") or "").lstrip("/"),
            "image": config.get("Image") or summary.get("Image", ""),
            "command": " ".join((config.get("Entrypoint") or []) + (config.get("Cmd") or [])),
            "state": state.get("Status", ""),
            "status": state.get("Status", ""),
            "created": _ts(summary.get("Created")),
        }
    names = summary.get("Names") or []
    return {
        "name": (names[0] if names else "").lstrip("/"),
        "image": summary.get("Image", ""),
        "command": summary.get("Command", ""),
        "state": summary.get("State", ""),
        "status": summary.get("Status", ""),
        "created": _ts(summary.get("Created")),
    }


def upsert_container(host: str, summary: dict, action: str = "update") -> Container:
    fields = container_fields(summary)
    engine_id = summary.get("Id") or summary.get("ID")
    row, created = Container.objects.get_or_create(
        host=host, engine_id=engine_id, defaults={**fields, "data": summary})
    changed = created
    if not created:
        for key, value in fields.items():
            if value is not None and getattr(row, key) != value:
                setattr(row, key, value)
                changed = True
        if changed or row.data != summary:
            row.data = summary
            row.save()
    if changed or action not in ("update",):
        notify(row.owner_id, container_message(row, action))
    return row


def drop(kind_model: type, kind: str, host: str, engine_id: str) -> None:
    for row in kind_model.objects.filter(host=host, engine_id=engine_id):
        owner = row.owner_id
        row.delete()
        message = (container_message(row, "destroy") if kind == "container"
                   else generic_message(kind, row, "destroy"))
        notify(owner, message)


# --- images, volumes, networks ------------------------------------------------------------

def upsert_image(host: str, data: dict) -> Image:
    layers = (data.get("RootFS") or {}).get("Layers") or []
    fields = {
        "tags": data.get("RepoTags") or [],
        "size": int(data.get("Size") or 0),
        "layers": len(layers) or int(data.get("Layers") or 0),
        "created": _ts(data.get("Created")),
        "data": data,
    }
    row, created = Image.objects.get_or_create(host=host, engine_id=data["Id"], defaults=fields)
    if not created and any(getattr(row, k) != v for k, v in fields.items() if k != "data"):
        for k, v in fields.items():
            setattr(row, k, v)
        row.save()
        notify(row.owner_id, generic_message("image", row, "update"))
    elif created:
        notify(row.owner_id, generic_message("image", row, "create"))
    return row


def upsert_volume(host: str, data: dict) -> Volume:
    fields = {"driver": data.get("Driver", "local"), "mountpoint": data.get("Mountpoint", ""),
              "created": _ts(data.get("CreatedAt")), "data": data}
    row, created = Volume.objects.update_or_create(
        host=host, engine_id=data["Name"], defaults=fields)
    if created:
        notify(row.owner_id, generic_message("volume", row, "create"))
    return row


def upsert_network(host: str, data: dict) -> Network:
    configs = (data.get("IPAM") or {}).get("Config") or []
    fields = {"name": data.get("Name", ""), "driver": data.get("Driver", ""),
              "subnet": (configs[0].get("Subnet", "") if configs else ""), "data": data}
    row, created = Network.objects.update_or_create(
        host=host, engine_id=data.get("Id") or data.get("ID") or data["Name"], defaults=fields)
    if created:
        notify(row.owner_id, generic_message("network", row, "create"))
    return row


# --- events -------------------------------------------------------------------------------

def apply_event(engine: Any, host: str, event: Any) -> None:
    """Bring the projection in line with one engine event (run in the worker)."""
    from estiba.ops import to_json

    close_old_connections()
    kind, action, actor = event.type, event.action, event.actor_id
    try:
        if kind == "container":
            if action == "destroy":
                drop(Container, "container", host, actor)
                return
            try:
                summary = _container_summary(engine, actor)
            except LookupError:
                drop(Container, "container", host, actor)
                return
            upsert_container(host, summary, action)
        elif kind == "image":
            if action in ("delete", "untag"):
                _refresh_images(engine, host)
                return
            try:
                upsert_image(host, to_json(engine.images.resolve(actor)))
            except Exception:
                _refresh_images(engine, host)
        elif kind == "volume":
            if action == "destroy":
                drop(Volume, "volume", host, actor)
            else:
                reconcile_volumes(engine, host)
        elif kind == "network":
            if action == "destroy":
                drop(Network, "network", host, actor)
            else:
                reconcile_networks(engine, host)
    except Exception:
        log.exception("could not apply %s %s %s", kind, action, actor)


def _container_summary(engine: Any, container_id: str) -> dict:
    from engine import errors

    try:
        container = engine.containers.get(container_id)
    except errors.NotFound:
        raise LookupError(container_id) from None
    return container.to_docker_summary()


def _refresh_images(engine: Any, host: str) -> None:
    reconcile_images(engine, host)


# --- reconcile ----------------------------------------------------------------------------

def reconcile_containers(engine: Any, host: str) -> None:
    summaries = {s["Id"]: s for s in
                 (c.to_docker_summary() for c in engine.containers.list(all=True))}
    for engine_id in set(Container.objects.filter(host=host).values_list("engine_id", flat=True)):
        if engine_id not in summaries:
            drop(Container, "container", host, engine_id)
    for summary in summaries.values():
        upsert_container(host, summary)


def reconcile_images(engine: Any, host: str) -> None:
    from estiba.ops import to_json

    images = {i.id: to_json(i) for i in engine.images.list()}
    for engine_id in set(Image.objects.filter(host=host).values_list("engine_id", flat=True)):
        if engine_id not in images:
            drop(Image, "image", host, engine_id)
    for data in images.values():
        upsert_image(host, data)


def reconcile_volumes(engine: Any, host: str) -> None:
    from estiba.ops import to_json

    listed = to_json(engine.volumes.list())
    if isinstance(listed, dict):  # Docker's {"Volumes": [...], "Warnings": [...]}
        listed = listed.get("Volumes") or []
    names = {v["Name"]: v for v in listed}
    for name in set(Volume.objects.filter(host=host).values_list("engine_id", flat=True)):
        if name not in names:
            drop(Volume, "volume", host, name)
    for data in names.values():
        upsert_volume(host, data)


def reconcile_networks(engine: Any, host: str) -> None:
    from estiba.ops import to_json

    listed = {(n.get("Id") or n.get("ID") or n["Name"]): n for n in to_json(engine.networks.list())}
    for engine_id in set(Network.objects.filter(host=host).values_list("engine_id", flat=True)):
        if engine_id not in listed:
            drop(Network, "network", host, engine_id)
    for data in listed.values():
        upsert_network(host, data)
