"""What a host's worker does besides running tasks: heartbeat, recovery, the projector.

When the Celery worker is ready it:

- recovers what a crash left (containers first, then their networks, volumes
  and policies);
- beats on its own timer (a third of the heartbeat timeout), so a slow engine
  call never makes the host look offline;
- publishes the transient events emitted in this process (pull progress, build
  output) to the Redis channel ``estiba:events`` as they happen;
- starts the projector (``estiba.projector``), the process that follows the
  engine's event journal into Redis and the dashboard's database, and starts it
  again if it dies.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
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


def publish_transient(event: Any) -> None:
    if not event.transient:
        return
    from estiba.projector import publish

    try:
        publish(event)
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


class Projector:
    """The projector process, started again when it dies (at most once a second)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._keep, daemon=True, name="estiba-projector")

    def start(self) -> None:
        self.thread.start()

    def _spawn(self) -> subprocess.Popen:
        env = dict(os.environ, ESTIBA_PROJECTOR_PARENT=str(os.getpid()))
        return subprocess.Popen([sys.executable, "-m", "estiba.projector"], env=env,
                                cwd=Path(__file__).resolve().parents[1])

    def _keep(self) -> None:
        while not _stop.is_set():
            started = time.monotonic()
            self.proc = self._spawn()
            code = self.proc.wait()
            if _stop.is_set():
                return
            log.warning("the projector exited (%s); starting it again", code)
            _stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_projector: Projector | None = None


def start_background() -> None:
    """Start the worker's threads and the projector (once the Celery worker is ready)."""
    from estiba.gil import favor_waiting_threads

    favor_waiting_threads()
    engine = get_engine()
    beat_redis()
    # The heartbeat first: recovering many containers may take longer than its timeout.
    global _heartbeat_thread, _projector
    _heartbeat_thread = threading.Thread(target=heartbeat_loop, daemon=True,
                                         name="estiba-heartbeat_loop")
    _heartbeat_thread.start()
    try:
        engine.recover()  # containers first, then their networks and volumes, then policies
    except Exception as exc:
        log.warning("could not recover after a crash: %s", exc)
    engine.events.subscribe(publish_transient)
    _projector = Projector()
    _projector.start()


def stop_background() -> None:
    from estiba import bus

    _stop.set()
    if _projector is not None:
        _projector.stop()
    if _heartbeat_thread is not None:  # a beat under way must not outlive the key's removal
        _heartbeat_thread.join(timeout=5)
    try:
        bus.client().delete(bus.heartbeat_key(host()), bus.ready_key(host()))
    except Exception:
        pass
