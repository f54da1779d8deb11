"""The projector: a host's engine events into the dashboard's database, in its own process.

The worker starts it (``python -m estiba.projector``) and restarts it if it
dies; it dies with the worker. It does what keeps the dashboard current:

- follows the engine's event journal (``EventBus.follow``) from the offset kept
  in Redis, publishes every event to the Redis channel ``estiba:events`` (the
  REST API's ``/events`` reads it) and applies it to the projection, which
  tells the browsers;
- reconciles the engine's objects with the projection every few seconds;
- sends the projection's messages to the browsers on one event loop of its own
  (``NotifyLoop``), not a new loop per message.

Why a process and not threads of the worker: applying an event is Python and
SQLite work, about 25 ms of CPU for a ``run --rm``, and in the worker's process
every line of it held the GIL that the task starting the next container was
waiting for. A process of its own, at a lower priority, competes only for a
core, and the kernel gives the task the core first. The journal is a file the
engine appends to, so this process reads it without asking the worker.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import threading
import time
from typing import Any

from estiba.worker import host

log = logging.getLogger("estiba.projector")

#: How much lower than the worker the projector runs (``nice``): events wait a
#: moment when the host is busy; the tasks that make them do not.
NICENESS = 5

_stop = threading.Event()


def _publish(r: Any, event: Any) -> None:
    from estiba import bus
    from estiba.ops import event_json

    payload = {"host": host(), **event_json(event)}
    r.publish(bus.EVENTS_CHANNEL, json.dumps(payload))


def publish(event: Any) -> None:
    """Publish one event to ``estiba:events`` (the worker's transient events use this)."""
    from estiba import bus

    _publish(bus.client(), event)


def follow_events(engine: Any) -> None:
    """Publish and apply each journal event, resuming from the offset kept in Redis."""
    from estiba import bus, projection

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


def reconcile_loop(engine: Any) -> None:
    from django.conf import settings

    from estiba import projection

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
    connection per message; the projector notifies for every engine event (six
    for a ``run --rm``), so that cost (about 5 ms of CPU each) added up. This
    loop lives as long as the process and keeps the channel layer's connections
    open.
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


def _die_with(parent: int) -> None:
    """Ask the kernel for SIGTERM when the worker goes, even by ``kill -9``."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it went before the request was made
        raise SystemExit(0)


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "estiba.settings")
    parent = int(os.environ.get("ESTIBA_PROJECTOR_PARENT", os.getppid()))
    _die_with(parent)
    signal.signal(signal.SIGTERM, lambda *_: _stop.set())
    os.nice(NICENESS)
    django.setup()
    logging.basicConfig(level=logging.WARNING,
                        format="[%(asctime)s: %(levelname)s/projector] %(message)s")
    from estiba import projection
    from estiba.gil import favor_waiting_threads
    from estiba.worker import get_engine

    favor_waiting_threads()
    notify = NotifyLoop()
    projection.set_sender(notify.send)
    engine = get_engine()
    threads = [threading.Thread(target=target, args=(engine,), daemon=True,
                                name=f"estiba-{target.__name__}")
               for target in (follow_events, reconcile_loop)]
    for thread in threads:
        thread.start()
    while not _stop.wait(1.0):
        if os.getppid() != parent:
            break
    _stop.set()
    for thread in threads:
        thread.join(timeout=5)
    notify.stop()


if __name__ == "__main__":
    main()
