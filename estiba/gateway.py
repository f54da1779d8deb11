"""The one way Django code reaches an engine: through the host's Celery worker.

``call(op, ...)`` runs a whitelisted engine operation (``estiba.ops``) on a
host's worker and returns its JSON-able result, or raises the engine error it
raised — the same class from ``engine.errors``, the same message — so views,
the REST API and the CLI treat a remote engine like a local one. The task is a
Celery task on the host's queue; its answer comes back on a Redis list named
in the task (``bus.reply_key``), which the caller BLPOPs: a few tenths of a
millisecond, where Celery's result backend took several milliseconds a call.
``stream(op, ...)`` yields the items of a generator operation (logs -f, stats,
pull progress, build output) as the worker writes them to a Redis stream.
``session(op, ...)`` opens a two-way byte stream (a terminal) bridged through
Redis. ``acall``, ``astream`` and ``asession`` are the same for async code (the
API server, Channels); ``acall`` runs on the caller's event loop, with no thread.

A host whose worker has no heartbeat fails at once with ``HostUnavailable``
instead of waiting for a timeout.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from redis.exceptions import NoScriptError

from engine import errors
from estiba import bus, ops
from estiba.celery import host_queue


class HostUnavailable(errors.EngineError):
    """No worker answers for the host (not started, crashed, or too slow)."""

    status = 503


def default_host() -> str:
    return settings.ESTIBA_HOSTNAME


def host_alive(host: str | None = None) -> bool:
    return bool(bus.client().exists(bus.heartbeat_key(host or default_host())))


def _no_worker(host: str) -> HostUnavailable:
    return HostUnavailable(
        f"host {host!r} has no running estiba worker (no heartbeat in the last "
        f"{settings.ESTIBA_HEARTBEAT_TIMEOUT} s)"
    )


def _check_host(host: str) -> None:
    if not host_alive(host):
        raise _no_worker(host)


#: Queue the message only if the host's heartbeat is there: one round trip, and never a
#: task left in the queue of a host that is down, to run whenever its worker comes back.
_PUSH_IF_ALIVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"""
_PUSH_IF_ALIVE_SHA = hashlib.sha1(_PUSH_IF_ALIVE.encode()).hexdigest()


_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"
_NO_WORKFLOW = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _task_message(task: str, args: list, host: str) -> tuple[str, str]:
    """The queue and the message that run the Celery task ``task`` on ``host``'s worker.

    The message is Celery's task protocol 2 in kombu's Redis envelope — what
    ``app.send_task`` sends, built here because kombu's publish makes a new Redis
    client object and re-checks the connection on every call (about 1.3 ms of CPU;
    this takes 0.15). The answers never use Celery's result backend (calls reply on
    their own list, streams and sessions on Redis streams), so no result is kept,
    and the arguments are not repeated in the headers, where monitors would show
    what a login carries.
    """
    queue = host_queue(host)
    task_id = str(uuid.uuid4())
    body = json.dumps([args, {}, _NO_WORKFLOW]).encode()
    message = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None,
            "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [None, None], "root_id": task_id, "parent_id": None,
            "argsrepr": f"({len(args)} arguments)", "kwargsrepr": "{}", "origin": _ORIGIN,
            "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        },
    }
    return queue, json.dumps(message)


def _push_args(task: str, args: list, host: str) -> list[Any]:
    """What ``_PUSH_IF_ALIVE`` is run with: its two keys and the message."""
    queue, message = _task_message(task, args, host)
    return [2, bus.heartbeat_key(host), queue, message]


def _send(task: str, args: list, host: str) -> None:
    """Queue ``task`` for ``host``'s worker, if it has one (else ``HostUnavailable``):
    one script that checks the heartbeat and LPUSHes the message."""
    client, push = bus.client(), _push_args(task, args, host)
    try:
        pushed = client.evalsha(_PUSH_IF_ALIVE_SHA, *push)
    except NoScriptError:  # the first call since Redis started
        pushed = client.eval(_PUSH_IF_ALIVE, *push)
    if not pushed:
        raise _no_worker(host)


async def _asend(client: Any, task: str, args: list, host: str) -> None:
    """``_send`` on an asyncio client."""
    push = _push_args(task, args, host)
    try:
        pushed = await client.evalsha(_PUSH_IF_ALIVE_SHA, *push)
    except NoScriptError:
        pushed = await client.eval(_PUSH_IF_ALIVE, *push)
    if not pushed:
        raise _no_worker(host)


def call(op: str, *args: Any, host: str | None = None, timeout: float = 30, **kwargs: Any) -> Any:
    """Run ``op`` on ``host``'s engine and return its result (engine errors re-raised)."""
    host = host or default_host()
    # The answer comes back on a Redis list of its own (BLPOP wakes at once), not
    # through Celery's result backend, which costs a SUBSCRIBE, a GET, an UNSUBSCRIBE
    # and a DEL per call on this side, and a SET and a PUBLISH on the worker's.
    reply = bus.reply_key(uuid.uuid4().hex)
    _send("estiba.call", [op, ops.to_json(list(args)), ops.to_json(kwargs), reply], host)
    got = bus.client().blpop([reply], timeout=max(timeout, 0.01))
    return _answer(got, op, host, timeout)


async def acall(op: str, *args: Any, host: str | None = None, timeout: float = 30,
                **kwargs: Any) -> Any:
    """``call`` on the caller's event loop: sent and awaited with no thread in between
    (handing each call to a thread and back cost the API server about a millisecond)."""
    host = host or default_host()
    client = bus.loop_client()
    reply = bus.reply_key(uuid.uuid4().hex)
    await _asend(client, "estiba.call",
                 [op, ops.to_json(list(args)), ops.to_json(kwargs), reply], host)
    got = await client.blpop([reply], timeout=max(timeout, 0.01))
    return _answer(got, op, host, timeout)


def _answer(got: Any, op: str, host: str, timeout: float) -> Any:
    """The result in a worker's answer, or the engine error it carries."""
    if got is None:
        raise HostUnavailable(f"host {host!r} did not finish {op} within {timeout:g} s")
    answer = ops.loads(got[1])
    if "error" in answer:
        raise ops.error_from_json(answer["error"])
    return answer["ok"]


def _decode(raw: bytes) -> dict:
    return json.loads(raw)


def stream(
    op: str, *args: Any, host: str | None = None, start_timeout: float = 30, **kwargs: Any
) -> Iterator[Any]:
    """Yield the items of the generator operation ``op`` as the worker produces them.

    The task is sent at once (not at the first ``next``), so the worker starts
    while the caller prepares; closing the iterator cancels the worker's side.
    """
    host = host or default_host()
    sid = uuid.uuid4().hex
    _send("estiba.stream", [sid, op, ops.to_json(list(args)), ops.to_json(kwargs)], host)
    return _read_stream(sid, op, host, start_timeout)


def _read_stream(sid: str, op: str, host: str, start_timeout: float) -> Iterator[Any]:
    r = bus.client()
    key = bus.stream_key(sid)
    last, started = "0", False
    try:
        waited = 0.0
        while True:
            got = r.xread({key: last}, block=1000, count=200)
            if not got:
                waited += 1
                if not started and waited >= start_timeout:
                    raise HostUnavailable(
                        f"host {host!r} did not start {op} in {start_timeout:g} s")
                if started and not host_alive(host):
                    raise HostUnavailable(f"host {host!r} stopped answering during {op}")
                continue
            for _k, entries in got:
                for entry_id, fields in entries:
                    last = entry_id
                    msg = _decode(fields[b"d"])
                    if msg.get("started"):
                        started = True
                    elif "item" in msg:
                        yield ops.from_json(msg["item"])
                    elif "error" in msg:
                        raise ops.error_from_json(msg["error"])
                    elif msg.get("end"):
                        return
    finally:
        r.set(bus.cancel_key(sid), 1, ex=bus.STREAM_TTL)
        r.delete(key)


async def astream(
    op: str, *args: Any, host: str | None = None, start_timeout: float = 30, **kwargs: Any
) -> AsyncIterator[Any]:
    """``stream`` for async code: never blocks the event loop."""
    host = host or default_host()
    sid = uuid.uuid4().hex
    key = bus.stream_key(sid)
    r = bus.aclient()
    await sync_to_async(_send, thread_sensitive=False)(
        "estiba.stream", [sid, op, ops.to_json(list(args)), ops.to_json(kwargs)], host
    )
    last, started, waited = "0", False, 0.0
    try:
        while True:
            got = await r.xread({key: last}, block=1000, count=200)
            if not got:
                waited += 1
                if not started and waited >= start_timeout:
                    raise HostUnavailable(
                        f"host {host!r} did not start {op} in {start_timeout:g} s")
                continue
            for _k, entries in got:
                for entry_id, fields in entries:
                    last = entry_id
                    msg = _decode(fields[b"d"])
                    if msg.get("started"):
                        started = True
                    elif "item" in msg:
                        yield ops.from_json(msg["item"])
                    elif "error" in msg:
                        raise ops.error_from_json(msg["error"])
                    elif msg.get("end"):
                        return
    finally:
        await r.set(bus.cancel_key(sid), 1, ex=bus.STREAM_TTL)
        await r.delete(key)
        await r.aclose()


class Session:
    """A two-way byte stream to a process on a host (sync side)."""

    def __init__(self, sid: str, host: str) -> None:
        self.sid, self.host = sid, host
        self.exit_code: int | None = None
        self._r = bus.client()
        self._last = "0"

    def _put(self, msg: dict) -> None:
        key = bus.session_in(self.sid)
        self._r.xadd(key, {"d": json.dumps(msg)})
        self._r.expire(key, bus.STREAM_TTL)

    def write(self, data: bytes) -> None:
        self._put({"data": base64.b64encode(data).decode()})

    def resize(self, rows: int, cols: int) -> None:
        self._put({"resize": [int(rows), int(cols)]})

    def close(self) -> None:
        self._put({"close": True})

    def read(self, timeout: float = 1.0) -> bytes | None:
        """Output bytes; b"" once the process ended; None when nothing came within ``timeout``."""
        got = self._r.xread({bus.session_out(self.sid): self._last}, block=int(timeout * 1000),
                            count=100)
        if not got:
            return None
        chunks = []
        for _k, entries in got:
            for entry_id, fields in entries:
                self._last = entry_id
                msg = _decode(fields[b"d"])
                if "data" in msg:
                    chunks.append(base64.b64decode(msg["data"]))
                elif "error" in msg:
                    raise ops.error_from_json(msg["error"])
                elif "exit" in msg:
                    self.exit_code = msg["exit"]
                    return b"".join(chunks) or b""
        return b"".join(chunks)


def _open(op: str, args: tuple, kwargs: dict, host: str | None) -> tuple[str, str]:
    host = host or default_host()
    sid = uuid.uuid4().hex
    _send("estiba.session", [sid, op, ops.to_json(list(args)), ops.to_json(kwargs)], host)
    return sid, host


def session(op: str, *args: Any, host: str | None = None, timeout: float = 30,
            **kwargs: Any) -> Session:
    """Open a session (``"containers.exec"``, ``"containers.attach"``); wait until it is ready."""
    sid, host = _open(op, args, kwargs, host)
    sess = Session(sid, host)
    got = sess._r.xread({bus.session_out(sid): "0"}, block=int(timeout * 1000), count=1)
    if not got:
        raise HostUnavailable(f"host {host!r} did not open {op} within {timeout:g} s")
    entry_id, fields = got[0][1][0]
    sess._last = entry_id
    msg = _decode(fields[b"d"])
    if "error" in msg:
        raise ops.error_from_json(msg["error"])
    return sess


class AsyncSession:
    """The same session for async code (the terminal's websocket consumer)."""

    def __init__(self, sid: str, host: str) -> None:
        self.sid, self.host = sid, host
        self.exit_code: int | None = None
        self._r = bus.aclient()
        self._last = "0"

    async def _put(self, msg: dict) -> None:
        key = bus.session_in(self.sid)
        await self._r.xadd(key, {"d": json.dumps(msg)})
        await self._r.expire(key, bus.STREAM_TTL)

    async def write(self, data: bytes) -> None:
        await self._put({"data": base64.b64encode(data).decode()})

    async def resize(self, rows: int, cols: int) -> None:
        await self._put({"resize": [int(rows), int(cols)]})

    async def close(self) -> None:
        try:
            await self._put({"close": True})
        finally:
            await self._r.aclose()

    async def output(self) -> AsyncIterator[bytes]:
        """Output chunks until the process ends (then ``exit_code`` is set)."""
        key = bus.session_out(self.sid)
        while True:
            got = await self._r.xread({key: self._last}, block=1000, count=100)
            for _k, entries in got or []:
                for entry_id, fields in entries:
                    self._last = entry_id
                    msg = _decode(fields[b"d"])
                    if "data" in msg:
                        yield base64.b64decode(msg["data"])
                    elif "error" in msg:
                        raise ops.error_from_json(msg["error"])
                    elif "exit" in msg:
                        self.exit_code = msg["exit"]
                        return


async def asession(op: str, *args: Any, host: str | None = None, timeout: float = 30,
                   **kwargs: Any) -> AsyncSession:
    sid, host = await sync_to_async(_open, thread_sensitive=False)(op, args, kwargs, host)
    sess = AsyncSession(sid, host)
    got = await sess._r.xread({bus.session_out(sid): "0"}, block=int(timeout * 1000), count=1)
    if not got:
        await sess._r.aclose()
        raise HostUnavailable(f"host {host!r} did not open {op} within {timeout:g} s")
    entry_id, fields = got[0][1][0]
    sess._last = entry_id
    msg = _decode(fields[b"d"])
    if "error" in msg:
        await sess._r.aclose()
        raise ops.error_from_json(msg["error"])
    return sess
