"""The lessons' websockets: live copy-ups, live cgroup figures, requests in motion, builds.

Each consumer checks on connect that the user may see the container (as the
HTTP views do), then relays a stream the host's worker pushes through Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import tarfile
import time

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext, gettext_noop

from engine import errors
from estiba import gateway, permissions
from estiba.projection import ADMIN_GROUP, user_group
from lessons_app import remote
from lessons_app.requests import REQUESTS_GROUP

log = logging.getLogger("lessons.consumers")

MAX_DOCKERFILE = 64 * 1024
#: What the sockets may say; translated per socket (``_Relay._``).
INTERNAL_ERROR = gettext_noop("internal error")
BUILD_RUNNING = gettext_noop("a build is already running")


def language_of(scope: dict) -> str:
    """The socket's language, as LocaleMiddleware would pick it: the language cookie,
    then Accept-Language, then LANGUAGE_CODE."""
    supported = dict(settings.LANGUAGES)
    wanted = (scope.get("cookies") or {}).get(settings.LANGUAGE_COOKIE_NAME, "")
    if wanted in supported:
        return wanted
    headers = dict(scope.get("headers") or [])
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    for lang, _q in translation.trans_real.parse_accept_lang_header(accept):
        with contextlib.suppress(LookupError):
            return translation.get_supported_language_variant(lang)
    return settings.LANGUAGE_CODE


class _Relay(AsyncWebsocketConsumer):
    """Accept, check the user, then run ``pump()`` until the socket closes."""

    needs_container = True

    def _(self, text: str) -> str:
        """``text`` translated into the socket's language (no middleware runs here)."""
        with translation.override(language_of(self.scope)):
            return gettext(text)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (user and user.is_authenticated):
            await self.close(code=4401)
            return
        self.row = None
        try:
            if self.needs_container:
                ref = self.scope["url_route"]["kwargs"]["ref"]
                self.row = await sync_to_async(permissions.get_visible)(user, "container", ref)
        except errors.EngineError as exc:
            await self.accept()
            await self.send(text_data=json.dumps({"error": str(exc)}))
            await self.close(code=4403)
            return
        await self.accept()
        await self.started()

    async def started(self) -> None:
        self.task = asyncio.create_task(self._run(self.pump()))

    async def _run(self, coro) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except errors.EngineError as exc:
            await self.send(text_data=json.dumps({"error": str(exc)}))
        except Exception:
            log.exception("lesson websocket %s failed", type(self).__name__)
            await self.send(text_data=json.dumps({"error": self._(INTERNAL_ERROR)}))

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "task", None)
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def pump(self) -> None:
        raise NotImplementedError


class UnionConsumer(_Relay):
    async def pump(self) -> None:
        async for item in remote.astream("watch_upper", self.row.engine_id, host=self.row.host):
            if "tick" not in item:
                await self.send(text_data=json.dumps(item))


class CgroupsConsumer(_Relay):
    async def pump(self) -> None:
        async for item in remote.astream("cgroup_stream", self.row.engine_id,
                                         host=self.row.host):
            await self.send(text_data=json.dumps(item))


class ArchitectureConsumer(_Relay):
    """Engine events (from the projection's groups) and API requests, as they happen."""

    needs_container = False

    async def started(self) -> None:
        user = self.scope["user"]
        self.joined = [ADMIN_GROUP, REQUESTS_GROUP] if permissions.is_admin(user) else [
            user_group(user.pk), f"{REQUESTS_GROUP}.{user.pk}"]
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def estiba_event(self, message: dict) -> None:
        await self.send(text_data=json.dumps(
            {"event": {k: v for k, v in message.items() if k != "type"}}))

    async def lesson_request(self, message: dict) -> None:
        await self.send(text_data=json.dumps(
            {"request": {k: v for k, v in message.items() if k != "type"}}))


def dockerfile_context(text: str) -> bytes:
    """A build context holding only the Dockerfile (the lesson's COPY copies it)."""
    data = text.encode()
    if len(data) > MAX_DOCKERFILE:
        raise errors.InvalidArgument(f"Dockerfile: {len(data)} bytes, more than {MAX_DOCKERFILE}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class BuildConsumer(_Relay):
    """The browser sends ``{"dockerfile": ..., "no_cache": bool}``; each build line comes back."""

    needs_container = False

    async def started(self) -> None:
        self.task = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        if self.task and not self.task.done():
            await self.send(text_data=json.dumps(
                {"error": self._(BUILD_RUNNING)}))
            return
        try:
            msg = json.loads(text_data or "{}")
            context = dockerfile_context(str(msg.get("dockerfile", "")))
        except (ValueError, errors.EngineError) as exc:
            await self.send(text_data=json.dumps({"error": str(exc)}))
            return
        user = self.scope["user"]
        self.task = asyncio.create_task(self._run(self._build(
            context, f"lesson-build:u{user.pk}", bool(msg.get("no_cache")))))

    async def _build(self, context: bytes, tag: str, no_cache: bool) -> None:
        result = None
        async for item in gateway.astream("builder.build", context, tags=[tag],
                                          no_cache=no_cache):
            if "result" in item:
                result = item["result"]
            else:
                await self.send(text_data=json.dumps({"line": item}))
        image_id = (result or {}).get("Id") or (result or {}).get("id")
        layers = await remote.acall("layers", image_id or tag) if (image_id or result) else None
        await self.send(text_data=json.dumps({"done": True, "image": image_id, "layers": layers}))
