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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import DatabaseError, close_old_connections

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


#: Runs ``_send_all`` to the end; the worker sets its own (``estiba.worker``).
Sender = Callable[[Any, list[str], dict], None]
_sender: Sender | None = None


def set_sender(sender: Sender | None) -> None:
    """How ``notify`` runs its sends; ``None``: ``async_to_sync`` (right in a web process).

    In a plain thread ``async_to_sync`` makes a new event loop, thread and Redis
    connection for every message (about 5 ms of CPU), so the worker, which
    notifies for every engine event, hands them to one loop of its own instead.
    """
    global _sender
    _sender = sender


def notify(owner_id: int | None, message: dict) -> None:
    """Send ``message`` to the admins and to the owner's browsers."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "estiba.event", "t": time.time(), **message}
    groups = [ADMIN_GROUP] + ([user_group(owner_id)] if owner_id else [])
    try:
        if _sender is not None:
            _sender(layer, groups, message)
        else:
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


def _project(model: type, host: str, engine_id: str, fields: dict, row: Any = None,
             extra: dict | None = None) -> tuple[Any, bool, list[str]]:
    """Bring the row of one engine object in line with ``fields``.

    Returns (row, created, the names of the fields that changed). ``extra`` fields
    are written along with a change of ``fields``, never alone. ``row`` is the row
    if the caller already read it (reconcile reads them all in one query).

    Only the projected fields are ever written (``save(update_fields=...)``): the
    row's ``owner`` belongs to ``record_owner``, which may set it between this
    function's read and its write (the dashboard records the owner right after
    the engine made the object, while the worker projects the object's create
    event). A full ``save()`` would write back the owner as it was read: none.
    """
    extra = extra or {}
    if row is None:
        row, created = model.objects.get_or_create(host=host, engine_id=engine_id,
                                                   defaults={**fields, **extra})
        if created:
            return row, True, list(fields)
    changed = [key for key, value in fields.items()
               if value is not None and getattr(row, key) != value]
    if not changed:
        return row, False, []
    values = {**{key: fields[key] for key in changed}, **extra}
    for key, value in values.items():
        setattr(row, key, value)
    try:
        row.save(update_fields=[*values, "updated"])
    except DatabaseError:  # the row went away meanwhile (a destroy event): nothing to update
        if not model.objects.filter(pk=row.pk).exists():
            return row, False, []
        raise
    return row, False, changed


def _owner_id(row: Any) -> int | None:
    """The row's owner as the database has it now (``record_owner`` may have set it since)."""
    if row.owner_id is None:
        row.owner_id = (type(row).objects.filter(pk=row.pk).values_list("owner_id", flat=True)
                        .first())
    return row.owner_id


def upsert_container(host: str, summary: dict, action: str = "update",
                     row: Container | None = None) -> Container:
    engine_id = summary.get("Id") or summary.get("ID")
    fields = {**container_fields(summary), "data": summary}
    row, created, changed = _project(Container, host, engine_id, fields, row)
    if created or set(changed) - {"data"} or action not in ("update",):
        notify(_owner_id(row), container_message(row, action))
    return row


def drop(kind_model: type, kind: str, host: str, engine_id: str) -> None:
    for row in kind_model.objects.filter(host=host, engine_id=engine_id):
        owner = row.owner_id
        row.delete()
        message = (container_message(row, "destroy") if kind == "container"
                   else generic_message(kind, row, "destroy"))
        notify(owner, message)


# --- images, volumes, networks ------------------------------------------------------------

def upsert_image(host: str, data: dict, row: Image | None = None) -> Image:
    layers = (data.get("RootFS") or {}).get("Layers") or []
    fields = {
        "tags": data.get("RepoTags") or [],
        "size": int(data.get("Size") or 0),
        "layers": len(layers) or int(data.get("Layers") or 0),
        "created": _ts(data.get("Created")),
    }
    row, created, changed = _project(Image, host, data["Id"], fields, row, extra={"data": data})
    if created or changed:
        notify(_owner_id(row), generic_message("image", row, "create" if created else "update"))
    return row


def upsert_volume(host: str, data: dict, row: Volume | None = None) -> Volume:
    fields = {"driver": data.get("Driver", "local"), "mountpoint": data.get("Mountpoint", ""),
              "created": _ts(data.get("CreatedAt")), "data": data}
    row, created, _changed = _project(Volume, host, data["Name"], fields, row)
    if created:
        notify(_owner_id(row), generic_message("volume", row, "create"))
    return row


def upsert_network(host: str, data: dict, row: Network | None = None) -> Network:
    configs = (data.get("IPAM") or {}).get("Config") or []
    fields = {"name": data.get("Name", ""), "driver": data.get("Driver", ""),
              "subnet": (configs[0].get("Subnet", "") if configs else ""), "data": data}
    engine_id = data.get("Id") or data.get("ID") or data["Name"]
    row, created, _changed = _project(Network, host, engine_id, fields, row)
    if created:
        notify(_owner_id(row), generic_message("network", row, "create"))
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
            elif action in ("create", "connect", "disconnect"):
                # every container start and stop connects and disconnects one network:
                # that network alone, not a reconcile of them all
                _refresh_network(engine, host, actor)
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


def _refresh_network(engine: Any, host: str, network_id: str) -> None:
    from engine import errors
    from estiba.ops import to_json

    try:
        data = to_json(engine.networks.inspect(network_id))
    except errors.NotFound:
        drop(Network, "network", host, network_id)
        return
    upsert_network(host, data)


def _refresh_images(engine: Any, host: str) -> None:
    reconcile_images(engine, host)


# --- reconcile ----------------------------------------------------------------------------

def _rows(model: type, host: str) -> dict[str, Any]:
    """All of a host's rows of one kind, by engine id, in one query."""
    return {row.engine_id: row for row in model.objects.filter(host=host)}


def _reconcile(model: type, kind: str, host: str, listed: dict[str, dict], upsert) -> None:
    rows = _rows(model, host)
    for engine_id in set(rows) - set(listed):
        drop(model, kind, host, engine_id)
    for engine_id, data in listed.items():
        upsert(host, data, row=rows.get(engine_id))


def reconcile_containers(engine: Any, host: str) -> None:
    summaries = {s["Id"]: s for s in
                 (c.to_docker_summary() for c in engine.containers.list(all=True))}
    _reconcile(Container, "container", host, summaries, upsert_container)


def reconcile_images(engine: Any, host: str) -> None:
    from estiba.ops import to_json

    images = {i.id: to_json(i) for i in engine.images.list()}
    _reconcile(Image, "image", host, images, upsert_image)


def reconcile_volumes(engine: Any, host: str) -> None:
    from estiba.ops import to_json

    listed = to_json(engine.volumes.list())
    if isinstance(listed, dict):  # Docker's {"Volumes": [...], "Warnings": [...]}
        listed = listed.get("Volumes") or []
    _reconcile(Volume, "volume", host, {v["Name"]: v for v in listed}, upsert_volume)


def reconcile_networks(engine: Any, host: str) -> None:
    from estiba.ops import to_json

    listed = {(n.get("Id") or n.get("ID") or n["Name"]): n for n in to_json(engine.networks.list())}
    _reconcile(Network, "network", host, listed, upsert_network)
