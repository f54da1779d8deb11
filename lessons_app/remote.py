"""Reaching the lessons' operations on a host, as ``estiba.gateway`` does for the engine."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from celery.exceptions import TimeoutError as CeleryTimeout

from estiba import bus, gateway, ops
from estiba.celery import app, host_queue


def call(op: str, *args: Any, host: str | None = None, timeout: float = 30, **kwargs: Any) -> Any:
    host = host or gateway.default_host()
    gateway._check_host(host)
    result = app.send_task("lessons.call", args=[op, list(args), kwargs], queue=host_queue(host))
    try:
        answer = result.get(timeout=timeout, propagate=True, disable_sync_subtasks=False)
    except CeleryTimeout:
        raise gateway.HostUnavailable(
            f"host {host!r} did not finish the lesson's {op} within {timeout:g} s") from None
    finally:
        result.forget()
    if "error" in answer:
        raise ops.error_from_json(answer["error"])
    return ops.from_json(answer["ok"])


async def acall(op: str, *args: Any, **kwargs: Any) -> Any:
    return await sync_to_async(call, thread_sensitive=False)(op, *args, **kwargs)


async def astream(op: str, *args: Any, host: str | None = None, **kwargs: Any
                  ) -> AsyncIterator[Any]:
    """The items of lesson stream ``op`` as the worker writes them to Redis."""
    host = host or gateway.default_host()
    await sync_to_async(gateway._check_host, thread_sensitive=False)(host)
    sid = uuid.uuid4().hex
    key = bus.stream_key(sid)
    r = bus.aclient()
    await sync_to_async(app.send_task, thread_sensitive=False)(
        "lessons.stream", args=[sid, op, list(args), kwargs], queue=host_queue(host))
    last, waited, started = "0", 0, False
    try:
        while True:
            got = await r.xread({key: last}, block=1000, count=200)
            if not got:
                waited += 1
                if not started and waited >= 30:
                    raise gateway.HostUnavailable(f"host {host!r} did not start the lesson's {op}")
                continue
            for _k, entries in got:
                for entry_id, fields in entries:
                    last = entry_id
                    msg = json.loads(fields[b"d"])
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
