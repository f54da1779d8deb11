"""How the API server reaches an engine: through the gateway, or in-process.

``GatewayBackend`` is the normal path (ARCHITECTURE.md rule 3): every call is
a Celery task on the host's worker (``estiba.gateway.call``), long output comes
back through Redis (``gateway.stream``) and terminals are two-way byte streams
(``gateway.session``). ``LocalBackend`` runs the same ``dockerapi.ops``
functions on an ``Engine`` inside the server process — for a single host with
no broker (``estiba-api --local``) and to compare the gateway's cost in the
bench. Both present the same coroutine interface to the handlers, and both
raise the engine's own error classes, which the handlers map to HTTP statuses.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from dockerapi import ops


class Session(Protocol):
    """A live exec or attach: bytes both ways, as the engine's ExecSession offers."""

    def write(self, data: bytes) -> None: ...
    def read(self) -> Any: ...  # bytes, or (stream, bytes); b"" at the end
    def resize(self, height: int, width: int) -> None: ...
    def close(self) -> None: ...


async def iterate_in_thread(it_factory, cancel: threading.Event | None = None,
                            ) -> AsyncIterator[Any]:
    """Run a blocking iterator in a thread, yielding its items to the event loop."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue(maxsize=256)
    done = object()
    cancel = cancel or threading.Event()

    def put(item: Any) -> None:
        fut = asyncio.run_coroutine_threadsafe(q.put(item), loop)
        try:
            fut.result()
        except Exception:
            cancel.set()

    def pump() -> None:
        try:
            for item in it_factory():
                if cancel.is_set():
                    break
                put(("item", item))
                if cancel.is_set():
                    break
        except BaseException as exc:
            if not cancel.is_set():
                put(("error", exc))
        finally:
            close = getattr(it_factory, "close", None)
            if close:
                close()
            if not cancel.is_set():
                put(("done", done))

    thread = threading.Thread(target=pump, daemon=True, name="api-stream")
    thread.start()
    try:
        while True:
            kind, item = await q.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        cancel.set()
        while not q.empty():
            q.get_nowait()


class LocalBackend:
    """The ops on an Engine in this process (no Celery, no Redis)."""

    def __init__(self, engine) -> None:
        self.engine = engine

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        fn = ops.OPS[name]
        return await asyncio.to_thread(fn, self.engine, *args, **kwargs)

    def stream(self, name: str, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        fn = ops.STREAMS[name]
        return iterate_in_thread(lambda: fn(self.engine, *args, **kwargs))

    async def exec_session(self, exec_id: str) -> Session:
        return await asyncio.to_thread(self.engine.containers.exec_start, exec_id)

    async def attach_session(self, id: str, **kwargs: Any) -> Session:
        return await asyncio.to_thread(self.engine.containers.attach, id, **kwargs)


def blocking_reader(session: Session) -> Iterator[tuple[str, bytes]]:
    """``(stream, bytes)`` pieces from a session until it ends (``None`` or ``b""``)."""
    while True:
        piece = session.read()
        if piece is None:
            return
        if isinstance(piece, tuple):
            name, data = piece
            if isinstance(name, int):
                name = {1: "stdout", 2: "stderr"}.get(name, "stdout")
        else:
            name, data = "stdout", piece
        if not data:
            if isinstance(piece, tuple):
                continue
            return
        yield name, data
