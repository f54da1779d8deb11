"""Bridging a hijacked connection to a live exec or attach session.

After ``101 UPGRADED`` the client's socket carries its stdin to us and the
process's output back. Two pumps run: client -> session (``write``) and
session -> client (``read`` in a thread, since sessions block). Output is raw
for a tty, stdcopy frames otherwise. When the process ends we close our side,
which is how the docker CLI learns that ``exec`` or ``run -it`` is over.
Resize requests arrive on *another* connection (``POST /exec/{id}/resize``),
so live sessions are kept by key here; a resize that comes before the session
exists is remembered and applied when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from dockerapi.backend import blocking_reader
from dockerapi.translate import frame

log = logging.getLogger("estiba.api.hijack")

_live: dict[str, Any] = {}
_active: dict[str, int] = {}
_pending_size: dict[str, tuple[int, int]] = {}


def resize(key: str, height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        return
    session = _live.get(key)
    if session is None:
        _pending_size[key] = (height, width)
        return
    try:
        session.resize(height, width)
    except Exception:
        log.debug("resize of %s failed", key, exc_info=True)


async def drained(key: str, timeout: float) -> None:
    """Wait (at most ``timeout``) until no client is attached under ``key``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _active.get(key) and loop.time() < deadline:
        await asyncio.sleep(0.02)


def register(key: str, session: Any) -> None:
    _live[key] = session
    size = _pending_size.pop(key, None)
    if size:
        resize(key, *size)


def unregister(key: str, session: Any) -> None:
    if _live.get(key) is session:
        del _live[key]


@contextlib.contextmanager
def attached(key: str):
    """Count a client as attached under ``key`` for as long as the block runs."""
    _active[key] = _active.get(key, 0) + 1
    try:
        yield
    finally:
        _active[key] -= 1
        if _active[key] <= 0:
            del _active[key]


async def bridge(key: str, session: Any, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, tty: bool, stdin: bool) -> None:
    """Pump bytes both ways until the process's output ends."""
    register(key, session)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=64)

    def pump_out() -> None:
        try:
            for name, data in blocking_reader(session):
                asyncio.run_coroutine_threadsafe(queue.put((name, data)), loop).result()
        except Exception as exc:
            log.debug("session %s output ended: %s", key, exc)
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop)

    async def pump_in() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await asyncio.to_thread(session.write, data)
        # The client closed its stdin: pass the EOF on (``echo x | docker exec -i``).
        close_stdin = getattr(session, "close_stdin", None)
        if close_stdin is not None:
            await asyncio.to_thread(close_stdin)

    out_future = loop.run_in_executor(None, pump_out)
    in_task = asyncio.ensure_future(pump_in()) if stdin else None
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            name, data = item
            writer.write(data if tty else frame(name, data))
            await writer.drain()
        # The output ends a moment before the exit is recorded: wait for it, so a
        # client that inspects the exec when its stream closes sees the exit code.
        wait = getattr(session, "wait", None)
        if wait is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(wait, 5)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        unregister(key, session)
        if in_task is not None:
            in_task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(session.close)
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            await writer.drain()
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(out_future, 5)
