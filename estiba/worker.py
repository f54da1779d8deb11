"""What a host's worker does besides running tasks: events, reconcile, heartbeat.

When the Celery worker is ready it starts three daemon threads:

- the event publisher follows the engine's event journal
  (``EventBus.follow``) from where it last stopped, publishes every event to
  the Redis channel ``estiba:events`` (the REST API's ``/events`` reads it) and
  applies it to the projection, which tells the browsers;
- transient events (pull progress, build output) emitted in this process are
  published to the same channel as they happen;
- the reconcile loop beats the host's heartbeat and compares the engine's
  objects with the projection every few seconds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

log = logging.getLogger("estiba.worker")

_engine = None
_engine_lock = threading.Lock()
_stop = threading.Event()


def get_engine() -> Any:
    """This host's engine (one per worker process)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            from engine import Engine, EngineConfig

            _engine = Engine(config=EngineConfig(
                root=Path(settings.ESTIBA_ROOT), run_dir=Path(settings.ESTIBA_RUN_DIR),
                prefix=settings.ESTIBA_PREFIX, default_registry=settings.ESTIBA_REGISTRY,
            ))
        return _engine


def host() -> str:
    return settings.ESTIBA_HOSTNAME


def _publish(r: Any, event: Any) -> None:
    from estiba import bus
    from estiba.ops import event_json

    payload = {"host": host(), **event_json(event)}
    r.publish(bus.EVENTS_CHANNEL, json.dumps(payload))


def follow_events() -> None:
    """Publish and apply each journal event, resuming from the offset kept in Redis."""
    from estiba import bus, projection

    engine = get_engine()
    r = bus.client()
    key = bus.events_offset_key(host())
    saved = r.get(key)
    offset = int(saved) if saved is not None else engine.events.end_offset()
    if offset > engine.events.end_offset():  # the journal was replaced
        offset = 0
    for next_offset, event in engine.events.follow(offset, stop=_stop, poll=0.02):
        try:
            _publish(r, event)
            projection.apply_event(engine, host(), event)
        except Exception:
            log.exception("event %s %s not delivered", event.type, event.action)
        r.set(key, next_offset)


def publish_transient(event: Any) -> None:
    if not event.transient:
        return
    from estiba import bus

    try:
        _publish(bus.client(), event)
    except Exception:
        log.exception("transient event not published")


def heartbeat(engine: Any) -> None:
    from django.db import close_old_connections

    from estiba import bus
    from hosts_app.models import Host

    bus.client().set(bus.heartbeat_key(host()), 1, ex=settings.ESTIBA_HEARTBEAT_TIMEOUT)
    close_old_connections()
    try:
        info = engine.info()
    except Exception as exc:  # a piece of the engine is missing: still say we are alive
        info = {"error": str(exc)}
    from estiba.ops import to_json

    Host.objects.update_or_create(
        name=host(), defaults={"last_seen": datetime.now(tz=UTC), "info": to_json(info)})


def reconcile_loop() -> None:
    from estiba import bus, projection

    engine = get_engine()
    interval = settings.ESTIBA_RECONCILE_INTERVAL
    tick = 0
    while not _stop.is_set():
        started = time.monotonic()
        bus.client().set(bus.heartbeat_key(host()), 1, ex=settings.ESTIBA_HEARTBEAT_TIMEOUT)
        steps = [("heartbeat", heartbeat), ("containers", projection.reconcile_containers)]
        if tick % 5 == 0:
            steps += [("images", projection.reconcile_images),
                      ("volumes", projection.reconcile_volumes),
                      ("networks", projection.reconcile_networks)]
        for name, step in steps:
            try:
                step(engine) if name == "heartbeat" else step(engine, host())
            except Exception as exc:
                log.debug("reconcile %s: %s", name, exc)
        tick += 1
        _stop.wait(max(0.1, interval - (time.monotonic() - started)))


def start_background() -> None:
    """Start the worker's threads (called once the Celery worker is ready)."""
    from estiba import bus

    engine = get_engine()
    bus.client().set(bus.heartbeat_key(host()), 1, ex=settings.ESTIBA_HEARTBEAT_TIMEOUT)
    try:
        engine.recover()  # containers first, then their networks and volumes, then policies
    except Exception as exc:
        log.warning("could not recover after a crash: %s", exc)
    engine.events.subscribe(publish_transient)
    for target in (follow_events, reconcile_loop):
        threading.Thread(target=target, daemon=True, name=f"estiba-{target.__name__}").start()


def stop_background() -> None:
    from estiba import bus

    _stop.set()
    try:
        bus.client().delete(bus.heartbeat_key(host()))
    except Exception:
        pass
