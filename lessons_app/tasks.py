"""The lessons' Celery tasks: ``lessons.call`` and ``lessons.stream`` on the host's queue.

They mirror ``estiba.tasks`` (same Redis stream protocol, same error shape)
for the operations of ``lessons_app.ops``, which read the kernel rather than
change engine objects.
"""

from __future__ import annotations

import json
import logging

from celery import shared_task
from django.conf import settings

from engine import errors
from estiba import bus
from estiba import ops as estiba_ops
from lessons_app import ops

log = logging.getLogger("lessons.tasks")


class UnknownLessonOp(errors.InvalidArgument):
    """The task named an operation no lesson has."""


def _engine():
    from estiba.worker import get_engine

    return get_engine()


def _error(exc: BaseException) -> dict:
    if not isinstance(exc, errors.EngineError):
        log.exception("lesson operation failed")
    return estiba_ops.error_to_json(exc, settings.ESTIBA_HOSTNAME)


@shared_task(name="lessons.call")
def call(op: str, args: list, kwargs: dict) -> dict:
    try:
        fn = ops.CALLS.get(op)
        if fn is None:
            raise UnknownLessonOp(f"no lesson operation named {op!r}")
        return {"ok": estiba_ops.to_json(fn(_engine(), *args, **kwargs))}
    except Exception as exc:
        return {"error": _error(exc)}


def _xadd(r, key: str, message: dict) -> None:
    r.xadd(key, {"d": json.dumps(message)}, maxlen=5000, approximate=True)
    r.expire(key, bus.STREAM_TTL)


@shared_task(name="lessons.stream")
def stream(sid: str, op: str, args: list, kwargs: dict) -> None:
    r = bus.client()
    key = bus.stream_key(sid)
    _xadd(r, key, {"started": True})
    try:
        fn = ops.STREAMS.get(op)
        if fn is None:
            raise UnknownLessonOp(f"no lesson stream named {op!r}")
        for item in fn(_engine(), *args, **kwargs):
            if r.exists(bus.cancel_key(sid)):
                return
            _xadd(r, key, {"item": estiba_ops.to_json(item)})
        _xadd(r, key, {"end": True})
    except Exception as exc:
        _xadd(r, key, {"error": _error(exc)})
