"""What a host's worker does besides running tasks: events, reconcile, heartbeat.

When the Celery worker is ready it starts these daemon threads:

- the event publisher follows the engine's event journal
  (``EventBus.follow``) from where it last stopped, publishes every event to
  the Redis channel ``estiba:events`` (the REST API's ``/events`` reads it) and
  applies it to the projection, which tells the browsers;
- transient events (pull progress, build output) emitted in this process are
  published to the same channel as they happen;
- the heartbeat beats on its own timer (a third of the heartbeat timeout), so
  a long reconcile pass or a slow engine call never makes the host look
  offline;
- the reconcile loop compares the engine's objects with the projection every
  few seconds;
- the projection's messages to the browsers go out on one event loop thread of
  the worker's own (``NotifyLoop``), not a new loop per message.
"""

from __future__ import annotations

import asyncio
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
_heartbeat_thread: threading.Thread | None = None


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


def beat_redis() -> None:
    """Say in Redis that this host's worker is alive (for the gateway's host check)."""
    from estiba import bus

    bus.client().set(bus.heartbeat_key(host()), 1, ex=settings.ESTIBA_HEARTBEAT_TIMEOUT)


def heartbeat(engine: Any) -> None:
    """One beat: the Redis key first (cheap), then the host's row and its facts."""
    from django.db import close_old_connections

    from hosts_app.models import Host

    beat_redis()
    close_old_connections()
    try:
        info = engine.info()
    except Exception as exc:  # a piece of the engine is missing: still say we are alive
        info = {"error": str(exc)}
    from estiba.ops import to_json

    Host.objects.update_or_create(
        name=host(), defaults={"last_seen": datetime.now(tz=UTC), "info": to_json(info)})


def heartbeat_period() -> float:
    """Beat three times per timeout: one late or failed beat never reads as offline."""
    return max(0.5, settings.ESTIBA_HEARTBEAT_TIMEOUT / 3)


def heartbeat_loop() -> None:
    """Beat on a timer of its own, whatever the reconcile loop is doing."""
    from django.db import connection

    engine = get_engine()
    period = heartbeat_period()
    try:
        while not _stop.is_set():
            started = time.monotonic()
            try:
                heartbeat(engine)
            except Exception as exc:  # the database is busy or gone: keep Redis current
                log.warning("heartbeat: %s", exc)
                try:
                    beat_redis()
                except Exception:
                    log.exception("heartbeat not written to Redis")
            _stop.wait(max(0.1, period - (time.monotonic() - started)))
    finally:
        connection.close()


def reconcile_loop() -> None:
    from estiba import projection

    engine = get_engine()
    interval = settings.ESTIBA_RECONCILE_INTERVAL
    tick = 0
    while not _stop.is_set():
        started = time.monotonic()
        steps = [("containers", projection.reconcile_containers)]
        if tick % 5 == 0:
            steps += [("images", projection.reconcile_images),
                      ("volumes", projection.reconcile_volumes),
                      ("networks", projection.reconcile_networks)]
        for name, step in steps:
            try:
                step(engine, host())
            except Exception as exc:
                log.debug("reconcile %s: %s", name, exc)
        if tick == 0:  # the dashboard now shows what the engine has (make run waits for it)
            _say_ready()
        tick += 1
        _stop.wait(max(0.1, interval - (time.monotonic() - started)))


def _say_ready() -> None:
    from estiba import bus

    try:
        bus.client().set(bus.ready_key(host()), "1")
    except Exception as exc:
        log.warning("could not say the worker is ready: %s", exc)


class NotifyLoop:
    """One event loop thread for the projection's messages to the browsers.

    ``async_to_sync`` from a plain thread builds a loop, a thread and a Redis
    connection per message; the worker notifies for every engine event (six for
    a ``run --rm``), so that cost (about 5 ms of CPU each) competed with the
    tasks themselves. This loop lives as long as the worker and keeps the channel
    layer's connections open.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="estiba-notify")
        self.thread.start()

    def send(self, layer: Any, groups: list[str], message: dict) -> None:
        from estiba.projection import _send_all

        future = asyncio.run_coroutine_threadsafe(_send_all(layer, groups, message), self.loop)
        future.result(timeout=10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


_notify_loop: NotifyLoop | None = None


def start_background() -> None:
    """Start the worker's threads (called once the Celery worker is ready)."""
    from estiba import projection
    from estiba.gil import favor_waiting_threads

    favor_waiting_threads()
    global _notify_loop
    _notify_loop = NotifyLoop()
    projection.set_sender(_notify_loop.send)
    engine = get_engine()
    beat_redis()
    # The heartbeat first: recovering many containers may take longer than its timeout.
    global _heartbeat_thread
    _heartbeat_thread = threading.Thread(target=heartbeat_loop, daemon=True,
                                         name="estiba-heartbeat_loop")
    _heartbeat_thread.start()
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
    if _notify_loop is not None:
        _notify_loop.stop()
    if _heartbeat_thread is not None:  # a beat under way must not outlive the key's removal
        _heartbeat_thread.join(timeout=5)
    try:
        bus.client().delete(bus.heartbeat_key(host()), bus.ready_key(host()))
    except Exception:
        pass
