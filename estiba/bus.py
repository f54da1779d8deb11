"""Redis names and clients shared by the worker, the gateway and the consumers.

One Redis carries everything that moves: Celery's queues, the engine's events
(pub/sub channel ``estiba:events``), streams of long output
(``estiba:stream:<id>``, a Redis stream, so a reader that arrives late misses
nothing) and terminal sessions (``estiba:session:<id>:in`` / ``:out``).
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings

EVENTS_CHANNEL = "estiba:events"
#: How long a stream or session key lives after its last write (seconds).
STREAM_TTL = 600
#: How long an answer no caller took any more (it gave up) stays in Redis (seconds).
REPLY_TTL = 300

#: Connection options of every client. redis-py 8 made 5 s the default socket timeout,
#: which breaks any blocking read longer than that (a BLPOP waiting 30 s for a worker's
#: answer, a stream read): a blocking command carries its own timeout, so none here.
CLIENT_OPTIONS = {"socket_timeout": None, "socket_keepalive": True}

_local = threading.local()


def client() -> redis.Redis:
    """A thread-local client for the configured REDIS_URL."""
    url = settings.REDIS_URL
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != url:
        cached = (url, redis.Redis.from_url(url, **CLIENT_OPTIONS))
        _local.client = cached
    return cached[1]


def aclient() -> aioredis.Redis:
    """A new asyncio client (one per consumer: asyncio clients belong to one event loop)."""
    return aioredis.Redis.from_url(settings.REDIS_URL, **CLIENT_OPTIONS)


_loop_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def loop_client() -> aioredis.Redis:
    """The asyncio client of the running event loop, shared by its tasks (a pool)."""
    loop = asyncio.get_running_loop()
    url = settings.REDIS_URL
    cached = _loop_clients.get(loop)
    if cached is None or cached[0] != url:
        cached = (url, aioredis.Redis.from_url(url, **CLIENT_OPTIONS))
        _loop_clients[loop] = cached
    return cached[1]


def reply_key(rid: str) -> str:
    """The list a worker pushes one call's answer to (``estiba.gateway.call``)."""
    return f"estiba:reply:{rid}"


def stream_key(sid: str) -> str:
    return f"estiba:stream:{sid}"


def cancel_key(sid: str) -> str:
    return f"estiba:stream:{sid}:cancel"


def session_in(sid: str) -> str:
    return f"estiba:session:{sid}:in"


def session_out(sid: str) -> str:
    return f"estiba:session:{sid}:out"


def heartbeat_key(host: str) -> str:
    return f"estiba:host:{host}:alive"


def ready_key(host: str) -> str:
    """Set once the host's worker has projected its engine (its first reconcile)."""
    return f"estiba:host:{host}:ready"


def events_offset_key(host: str) -> str:
    return f"estiba:host:{host}:events-offset"
