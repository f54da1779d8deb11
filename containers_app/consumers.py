"""Websockets of a container's page: live logs, live stats, and a terminal.

Each consumer checks on connect that the user may see (logs, stats) or act on
(terminal) the container, exactly as the HTTP views do, then bridges a gateway
stream or session to the browser. Nothing here polls: the worker pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from engine import errors
from estiba import gateway, permissions

log = logging.getLogger("estiba.consumers")


class _ContainerSocket(AsyncWebsocketConsumer):
    need_act = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        ref = self.scope["url_route"]["kwargs"]["ref"]
        if not (user and user.is_authenticated):
            await self.close(code=4401)
            return
        try:
            self.row = await sync_to_async(permissions.get_visible)(user, "container", ref)
            if self.need_act:
                await sync_to_async(permissions.check_act)(user, self.row, "open a terminal in")
        except errors.EngineError as exc:
            # Accept then close with the reason, so the page can say why.
            await self.accept()
            await self.send(text_data=json.dumps({"error": str(exc)}))
            await self.close(code=4403)
            return
        await self.accept()
        self.task = asyncio.create_task(self._run())

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "task", None)
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        try:
            await self.pump()
        except asyncio.CancelledError:
            raise
        except errors.EngineError as exc:
            await self.send(text_data=json.dumps({"error": str(exc)}))
        except Exception:
            log.exception("websocket %s failed", type(self).__name__)
            await self.send(text_data=json.dumps({"error": "internal error"}))

    async def pump(self) -> None:
        raise NotImplementedError


class LogsConsumer(_ContainerSocket):
    """The container's log, then each new line as it is written."""

    async def pump(self) -> None:
        batch: list[dict] = []
        async for entry in gateway.astream("containers.logs", self.row.engine_id, follow=True,
                                           tail=1000, host=self.row.host):
            data = entry.get("data", b"")
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            batch.append({"s": entry.get("stream", "stdout"), "t": text})
            if len(batch) >= 100:
                await self.send(text_data=json.dumps({"lines": batch}))
                batch = []
            else:
                await self.send(text_data=json.dumps({"lines": batch}))
                batch = []
        await self.send(text_data=json.dumps({"end": True}))


def _summarise(sample: dict, previous: dict | None) -> dict:
    """CPU %, memory and pids from Docker's stats JSON (two samples give the CPU delta)."""
    cpu = sample.get("cpu_stats") or {}
    pre = sample.get("precpu_stats") or (previous or {}).get("cpu_stats") or {}
    total = (cpu.get("cpu_usage") or {}).get("total_usage", 0)
    pre_total = (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system, pre_system = cpu.get("system_cpu_usage", 0), pre.get("system_cpu_usage", 0)
    percpu = (cpu.get("cpu_usage") or {}).get("percpu_usage") or []
    ncpu = cpu.get("online_cpus") or len(percpu) or 1
    cpu_percent = 0.0
    if system > pre_system and total >= pre_total and pre_total:
        cpu_percent = (total - pre_total) / (system - pre_system) * ncpu * 100
    mem = sample.get("memory_stats") or {}
    return {
        "cpu": round(cpu_percent, 2),
        "mem": mem.get("usage", 0),
        "mem_limit": mem.get("limit", 0),
        "pids": (sample.get("pids_stats") or {}).get("current", 0),
        "pids_limit": (sample.get("pids_stats") or {}).get("limit", 0),
        "read": sample.get("read", ""),
    }


class StatsConsumer(_ContainerSocket):
    async def pump(self) -> None:
        previous = None
        async for sample in gateway.astream("containers.stats_stream", self.row.engine_id,
                                            host=self.row.host):
            await self.send(text_data=json.dumps({"stats": _summarise(sample, previous)}))
            previous = sample
        await self.send(text_data=json.dumps({"end": True}))


class TerminalConsumer(_ContainerSocket):
    """xterm.js <-> an exec with a tty. Text frames are JSON control messages
    (``{"resize": [rows, cols]}``, ``{"data": "..."}``); binary frames are keystrokes."""

    need_act = True
    session: gateway.AsyncSession | None = None

    async def pump(self) -> None:
        qs = self.scope.get("query_string", b"").decode()
        rows, cols = 24, 80
        for part in qs.split("&"):
            key, _, value = part.partition("=")
            if key == "rows" and value.isdigit():
                rows = max(1, min(int(value), 500))
            if key == "cols" and value.isdigit():
                cols = max(1, min(int(value), 1000))
        self.session = await gateway.asession(
            "containers.exec", self.row.engine_id, ["/bin/sh"], tty=True,
            env=["TERM=xterm-256color"], rows=rows, cols=cols, host=self.row.host)
        async for chunk in self.session.output():
            await self.send(bytes_data=chunk)
        await self.send(text_data=json.dumps({"exit": self.session.exit_code}))
        await self.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None:
            return
        if bytes_data is not None:
            await self.session.write(bytes_data[:65536])
            return
        try:
            msg = json.loads(text_data or "{}")
        except ValueError:
            return
        if "data" in msg and isinstance(msg["data"], str):
            await self.session.write(msg["data"].encode()[:65536])
        elif isinstance(msg.get("resize"), list) and len(msg["resize"]) == 2:
            rows, cols = msg["resize"]
            valid = isinstance(rows, int) and isinstance(cols, int)
            if valid and 0 < rows < 500 and 0 < cols < 1000:
                await self.session.resize(rows, cols)

    async def disconnect(self, code: int) -> None:
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self.session.close()
        await super().disconnect(code)
