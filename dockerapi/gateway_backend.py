"""The API's operations on the host's worker, through ``estiba.gateway``.

The worker runs only the engine methods ``estiba.ops`` whitelists, and returns
engine objects already as Docker JSON; this module maps each operation of
``dockerapi.ops`` onto those calls so the handlers do not care which backend
they have. Long output (pull progress, logs, build output, events) arrives as a
Redis stream through ``gateway.stream``; terminals through ``gateway.session``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from dockerapi.backend import iterate_in_thread
from engine.errors import EngineError, InvalidArgument

LONG = 3600.0


class GatewayBackend:
    def __init__(self, host: str | None = None) -> None:
        from estiba import gateway

        self.gw = gateway
        self.host = host

    # --- plumbing -------------------------------------------------------------------------
    async def _call(self, op: str, *args: Any, _timeout: float = 60, **kwargs: Any) -> Any:
        return await self.gw.acall(op, *args, host=self.host, timeout=_timeout, **kwargs)

    def _call_in_thread(self, op: str, *args: Any, _timeout: float = 60, **kwargs: Any) -> Any:
        """The same, blocking: for the streams' threads and for calls that carry a file."""
        return self.gw.call(op, *args, host=self.host, timeout=_timeout, **kwargs)

    def _stream(self, op: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return self.gw.stream(op, *args, host=self.host, **kwargs)

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self, "op_" + name, None)
        if fn is None:
            raise InvalidArgument(f"{name} is not available through the workers yet")
        return await fn(*args, **kwargs)

    def stream(self, name: str, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        fn = getattr(self, "st_" + name)
        return iterate_in_thread(lambda: fn(*args, **kwargs))

    # --- terminals and files --------------------------------------------------------------
    # The worker's sessions do not yet carry the engine's (stream, bytes) pieces nor
    # open an exec made earlier (``containers.exec_start``), and it does not export
    # containers, read their files (``docker cp`` out) or save images to a file:
    # until it does, these few reads use the engine on this host directly (the API
    # server runs as root on the host whose socket it serves).
    # ESTIBA_API_SESSIONS=gateway sends the sessions to the worker.
    @cached_property
    def local(self):
        from django.conf import settings

        from dockerapi.backend import LocalBackend
        from engine import Engine, EngineConfig

        return LocalBackend(Engine(config=EngineConfig(
            root=Path(settings.ESTIBA_ROOT), run_dir=Path(settings.ESTIBA_RUN_DIR),
            prefix=settings.ESTIBA_PREFIX, default_registry=settings.ESTIBA_REGISTRY)))

    @property
    def sessions_via_gateway(self) -> bool:
        return os.environ.get("ESTIBA_API_SESSIONS", "local") == "gateway"

    async def exec_session(self, exec_id: str):
        if not self.sessions_via_gateway:
            return await self.local.exec_session(exec_id)
        return _Session(await asyncio.to_thread(
            self.gw.session, "containers.exec_start", exec_id, host=self.host))

    async def attach_session(self, id: str, **kwargs: Any):
        if not self.sessions_via_gateway:
            return await self.local.attach_session(id, **kwargs)
        return _Session(await asyncio.to_thread(
            self.gw.session, "containers.attach", id, host=self.host, **kwargs))

    async def op_container_export(self, id: str, dest: str) -> None:
        await asyncio.to_thread(self.local.engine.containers.export, id, dest)

    async def op_container_archive_stat(self, id: str, path: str) -> dict:
        return await asyncio.to_thread(self.local.engine.containers.archive_stat, id, path)

    async def op_container_archive_get(self, id: str, path: str, dest: str) -> dict:
        return await asyncio.to_thread(self.local.engine.containers.archive_get, id, path, dest)

    async def op_container_archive_put(self, id: str, path: str, src: str) -> int:
        """A change, so through the host's worker (the tar travels in the task)."""
        return await asyncio.to_thread(lambda: self._call_in_thread(
            "containers.archive_put", id, path, _read_spooled(src), _timeout=600))

    async def op_image_save(self, refs: list[str], dest: str) -> None:
        await asyncio.to_thread(self.local.engine.images.save, refs, dest)

    # --- system ---------------------------------------------------------------------------
    async def op_system_info(self) -> dict:
        return await self._call("engine.info")

    async def op_system_df(self) -> dict:
        return await self._call("engine.disk_usage", _timeout=300)

    async def op_events_history(self, since_nano: int = 0, until_nano: int | None = None) -> list:
        return [e for e in await self._call("events.history", since_nano, until_nano)
                if not e.get("transient")]

    async def op_events_offset(self) -> None:
        return None

    def st_events_follow(self, offset: int | None = None) -> Iterator[dict]:
        for item in self._stream("events.follow", offset):
            yield item.get("docker", item)

    # --- containers -----------------------------------------------------------------------
    async def op_container_create(self, spec: dict) -> dict:
        data = await self._call("containers.create", spec)
        return {"Id": data["Id"], "Warnings": []}

    async def op_container_list(self, all: bool = False, filters: dict | None = None,
                          limit: int = 0, size: bool = False) -> list:
        extra = {"size": True} if size else {}
        items = await self._call("containers.list", all=all, filters=filters or None, **extra)
        items.sort(key=lambda c: c.get("Created", 0), reverse=True)
        return items[:limit] if limit and limit > 0 else items

    async def op_container_inspect(self, id: str) -> dict:
        return await self._call("containers.get", id)

    async def op_container_action(self, action: str, id: str, **kwargs: Any) -> None:
        if action not in ("start", "stop", "restart", "kill", "pause", "unpause"):
            raise InvalidArgument(f"unknown container action {action!r}")
        # ``timeout`` is the gateway's own keyword: the engine's goes positionally.
        args = [kwargs.pop("timeout")] if "timeout" in kwargs else []
        await self._call(f"containers.{action}", id, *args, _timeout=120, **kwargs)

    async def op_container_wait(self, id: str, condition: str = "not-running",
                          timeout: float | None = None) -> int:
        return await self._call("containers.wait", id, condition=condition, _timeout=LONG)

    async def op_container_remove(self, id: str, force: bool = False,
                                  volumes: bool = False) -> None:
        await self._call("containers.remove", id, force=force, volumes=volumes, _timeout=120)

    async def op_container_rename(self, id: str, name: str) -> None:
        await self._call("containers.rename", id, name)

    async def op_container_top(self, id: str, ps_args: str = "") -> dict:
        return await self._call("containers.top", id, ps_args)

    async def op_container_changes(self, id: str) -> list:
        return await self._call("containers.changes", id)

    async def op_container_stats(self, id: str) -> dict:
        return await self._call("containers.stats", id)

    def st_container_stats_stream(self, id: str) -> Iterator[dict]:
        yield from self._stream("containers.stats_stream", id)

    def st_container_logs(self, id: str, **kwargs: Any) -> Iterator[list]:
        for entry in self._stream("containers.logs", id, **kwargs):
            data = entry.get("data", b"")
            if isinstance(data, str):
                data = data.encode()
            yield [entry.get("stream", "stdout"), entry.get("time_nano", 0),
                   data.decode("latin-1")]

    async def op_container_prune(self, filters: dict | None = None) -> dict:
        return await self._call("containers.prune", filters or None, _timeout=300)

    async def op_container_commit(self, id: str, reference: str | None, **kwargs: Any) -> dict:
        made = await self._call("containers.commit", id, reference, _timeout=600, **kwargs)
        return {"Id": made["Id"]}

    # --- exec -----------------------------------------------------------------------------
    async def op_exec_create(self, id: str, cmd: list, **kwargs: Any) -> dict:
        return {"Id": await self._call("containers.exec_create", id, cmd, **kwargs)}

    async def op_exec_inspect(self, exec_id: str) -> dict:
        return await self._call("containers.exec_inspect", exec_id)

    # --- images ---------------------------------------------------------------------------
    async def op_image_list(self, all: bool = False, filters: dict | None = None) -> list:
        return await self._call("images.list", filters=filters or None, all=all)

    async def op_image_inspect(self, ref: str) -> dict:
        return await self._call("images.resolve", ref)

    async def op_image_history(self, ref: str) -> list:
        return await self._call("images.history", ref)

    async def op_image_tag(self, src: str, reference: str) -> None:
        await self._call("images.tag", src, reference)

    async def op_image_remove(self, ref: str, force: bool = False) -> list:
        return await self._call("images.remove", ref, force=force, _timeout=300)

    async def op_image_prune(self, dangling_only: bool = True, filters: dict | None = None) -> dict:
        return await self._call("images.prune", dangling_only=dangling_only, filters=filters,
                          _timeout=600)

    def st_image_pull(self, reference: str, auth: dict | None = None,
                      platform: str | None = None) -> Iterator[dict]:
        extra = {"platform": platform} if platform else {}
        yield from self._progress_lines("registry.pull", reference, auth=_creds(auth), **extra)

    def st_image_push(self, reference: str, auth: dict | None = None) -> Iterator[dict]:
        yield from self._progress_lines("registry.push", reference, auth=_creds(auth))

    def st_image_build(self, context: str, **kwargs: Any) -> Iterator[dict]:
        try:
            with open(context, "rb") as fh:
                data = fh.read()
        finally:
            os.unlink(context)
        yield from self._progress_lines("builder.build", data, **kwargs)

    def _progress_lines(self, op: str, *args: Any, **kwargs: Any) -> Iterator[dict]:
        """Docker's JSON lines of a pull, push or build: the engine writes them all (the
        digest, the ID, "Successfully tagged"); its result is not one of them, and an
        error becomes the last line."""
        try:
            for item in self._stream(op, *args, **kwargs):
                if not (isinstance(item, dict) and "result" in item and len(item) == 1):
                    yield item
        except EngineError as exc:
            yield {"error": exc.message, "errorDetail": {"message": exc.message}}

    async def op_image_load(self, src: str) -> list[str]:
        images = await asyncio.to_thread(lambda: self._call_in_thread(
            "images.load", _read_spooled(src), _timeout=600))
        return [name for i in images for name in (i.get("RepoTags") or [i.get("Id", "")])]

    async def op_image_import(self, src: str, reference: str | None,
                              changes: list[str] | None = None, message: str = "") -> str:
        image = await asyncio.to_thread(lambda: self._call_in_thread(
            "images.import_rootfs", _read_spooled(src), reference, comment=message,
            changes=changes or None, _timeout=600))
        return image["Id"]

    # --- volumes --------------------------------------------------------------------------
    async def _volumes(self, filters: dict | None = None) -> list:
        return await self._call("volumes.list", filters=filters or None) if filters else \
            await self._call("volumes.list")

    async def op_volume_create(self, name: str | None = None, driver: str = "local",
                         labels: dict | None = None, options: dict | None = None) -> dict:
        return await self._call("volumes.create", name, driver=driver, labels=labels or {},
                          driver_opts=options or {})

    async def op_volume_list(self, filters: dict | None = None) -> dict:
        return {"Volumes": await self._volumes(filters), "Warnings": []}

    async def op_volume_inspect(self, name: str) -> dict:
        return await self._call("volumes.get", name)

    async def op_volume_remove(self, name: str, force: bool = False) -> None:
        await self._call("volumes.remove", name, force=force)

    async def op_volume_prune(self, filters: dict | None = None) -> dict:
        result = await self._call("volumes.prune")
        return result if isinstance(result, dict) else {"VolumesDeleted": result or [],
                                                        "SpaceReclaimed": 0}

    # --- networks -------------------------------------------------------------------------
    async def op_network_create(self, body: dict) -> dict:
        from dockerapi.ops import network_create_kwargs

        name, kwargs = network_create_kwargs(body)
        data = await self._call("networks.create", name, **kwargs)
        return {"Id": data.get("Id", ""), "Warning": ""}

    async def op_network_list(self, filters: dict | None = None) -> list:
        return await self._call("networks.list", filters=filters or None) if filters else \
            await self._call("networks.list")

    async def op_network_inspect(self, id: str) -> dict:
        return await self._call("networks.get", id)

    async def op_network_remove(self, id: str) -> None:
        await self._call("networks.remove", id)

    async def op_network_prune(self, filters: dict | None = None) -> dict:
        result = await self._call("networks.prune")
        return result if isinstance(result, dict) else {"NetworksDeleted": result or []}

    async def op_network_connect(self, id: str, container: str,
                                 endpoint: dict | None = None) -> None:
        endpoint = endpoint or {}
        ipam = endpoint.get("IPAMConfig") or {}
        await self._call("networks.connect", id, container,
                         aliases=endpoint.get("Aliases") or [],
                         ipv4_address=ipam.get("IPv4Address") or None)

    async def op_network_disconnect(self, id: str, container: str, force: bool = False) -> None:
        await self._call("networks.disconnect", id, container, force=force)


class _Session:
    """The gateway's session, read like the engine's: ``None`` only at the end."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def read(self) -> bytes | None:
        while True:
            data = self.inner.read(timeout=1.0)
            if data is None:
                if self.inner.exit_code is not None:
                    return None
                continue
            return data or None

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    def resize(self, height: int, width: int) -> None:
        self.inner.resize(height, width)

    def close(self) -> None:
        self.inner.close()

    @property
    def exit_code(self) -> int | None:
        return self.inner.exit_code


def _creds(auth: dict | None) -> dict | None:
    if not auth:
        return None
    from dockerapi.ops import credentials_dict

    return credentials_dict(auth)


def _read_spooled(path: str) -> bytes:
    """The upload the handler spooled to ``path``, read whole and removed (in a thread:
    it may be large, and so is the task that carries it)."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)
