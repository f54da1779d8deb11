"""The three Celery tasks a host's worker runs: call, stream, session.

Each receives a whitelisted operation name (``estiba.ops``) and runs it on the
host's engine. ``call`` returns ``{"ok": value}`` or ``{"error": {...}}`` — the
error travels as data so the caller can raise the same engine error class.
``stream`` and ``session`` write their output to Redis streams the gateway
reads, because a Celery result can only carry one value at the end.
"""

from __future__ import annotations

import base64
import json
import logging
import threading

from celery import shared_task
from django.conf import settings

from estiba import bus, ops
from estiba.worker import get_engine

log = logging.getLogger("estiba.tasks")


def _host() -> str:
    return settings.ESTIBA_HOSTNAME


def _answer(op: str, args: list, kwargs: dict) -> dict:
    try:
        return {"ok": ops.run_call(get_engine(), op, args, kwargs)}
    except Exception as exc:
        if not isinstance(exc, ops.errors.EngineError):
            log.exception("operation %s failed", op)
        return {"error": ops.error_to_json(exc, _host())}


@shared_task(name="estiba.call")
def call(op: str, args: list, kwargs: dict, reply: str | None = None) -> dict | None:
    """Run ``op``; the answer goes to the caller's ``reply`` list (or is the task's result)."""
    answer = _answer(op, args, kwargs)
    if reply is None:
        return answer
    pipe = bus.client().pipeline(transaction=False)
    pipe.rpush(reply, json.dumps(answer))
    pipe.expire(reply, bus.REPLY_TTL)
    pipe.execute()
    return None


def _xadd(r, key: str, message: dict) -> None:
    r.xadd(key, {"d": json.dumps(message)}, maxlen=20000, approximate=True)
    r.expire(key, bus.STREAM_TTL)


@shared_task(name="estiba.stream")
def stream(sid: str, op: str, args: list, kwargs: dict) -> None:
    r = bus.client()
    key = bus.stream_key(sid)
    _xadd(r, key, {"started": True})
    try:
        for item in ops.run_stream(get_engine(), op, args, kwargs):
            if r.exists(bus.cancel_key(sid)):
                return
            _xadd(r, key, {"item": item})
        _xadd(r, key, {"end": True})
    except Exception as exc:
        if not isinstance(exc, ops.errors.EngineError):
            log.exception("stream %s failed", op)
        _xadd(r, key, {"error": ops.error_to_json(exc, _host())})


def _exit_code(sess) -> int | None:
    wait = getattr(sess, "wait", None)
    if callable(wait):
        try:
            return wait(timeout=5)
        except Exception:
            return None
    return getattr(sess, "exit_code", None)


@shared_task(name="estiba.session")
def session(sid: str, op: str, args: list, kwargs: dict) -> None:
    """Bridge a two-way byte session: input from ``:in``, output to ``:out``."""
    r = bus.client()
    out_key, in_key = bus.session_out(sid), bus.session_in(sid)
    try:
        sess = ops.open_session(get_engine(), op, args, kwargs)
    except Exception as exc:
        if not isinstance(exc, ops.errors.EngineError):
            log.exception("session %s failed", op)
        _xadd(r, out_key, {"error": ops.error_to_json(exc, _host())})
        return
    _xadd(r, out_key, {"ready": True})
    finished = threading.Event()

    def pump_output() -> None:
        rr = bus.client()
        try:
            while True:
                chunk = sess.read()
                if chunk is None:
                    break
                stream, data = chunk if isinstance(chunk, tuple) else (1, chunk)
                if not data:
                    break
                _xadd(rr, out_key, {"data": base64.b64encode(data).decode(), "s": stream})
        except Exception as exc:  # the session ended under us
            log.info("session %s output ended: %s", sid, exc)
        finally:
            finished.set()
            _xadd(rr, out_key, {"exit": _exit_code(sess)})

    threading.Thread(target=pump_output, daemon=True, name=f"session-{sid[:8]}").start()
    last = "0"
    idle = 0.0
    try:
        while not finished.is_set():
            got = r.xread({in_key: last}, block=500, count=100)
            if not got:
                idle += 0.5
                if idle > 3600:
                    break
                continue
            idle = 0.0
            for _key, entries in got:
                for entry_id, fields in entries:
                    last = entry_id
                    msg = json.loads(fields[b"d"])
                    if "data" in msg:
                        sess.write(base64.b64decode(msg["data"]))
                    elif "resize" in msg:
                        rows, cols = msg["resize"]
                        sess.resize(int(rows), int(cols))
                    elif msg.get("close"):
                        return
    finally:
        try:
            sess.close()
        except Exception:
            pass
        finished.wait(5)
        r.delete(in_key)
