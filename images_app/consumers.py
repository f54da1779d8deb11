"""Websockets of the images page: a pull's per-layer progress, a build's step output.

The pull socket receives ``{"ref": "127.0.0.1:5000/alpine:3"}`` and forwards
Docker's JSON progress lines as the worker's registry client emits them; the
pulled image is then owned by the user who pulled it. The build socket runs a
build whose context the user uploaded (kept in Redis under a one-time token).
"""

from __future__ import annotations

import json
import logging

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from engine import errors
from estiba import bus, gateway, permissions
from estiba.projection import generic_message, notify, upsert_image
from images_app.registries import credentials_for

log = logging.getLogger("estiba.consumers")
REF_MAX = 512


def _own_image(user, data: dict) -> None:
    """The puller or builder owns a new image; an image someone already owns keeps its owner."""
    row = upsert_image(gateway.default_host(), data)
    if row.owner_id is None and not permissions.is_admin(user):
        row.owner = user
        row.save(update_fields=["owner"])
        notify(user.pk, generic_message("image", row, "create"))


class _ImageSocket(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (user and user.is_authenticated):
            await self.close(code=4401)
            return
        await self.accept()

    async def _forward(self, op: str, *args, **kwargs) -> None:
        try:
            async for item in gateway.astream(op, *args, **kwargs):
                if isinstance(item, dict) and "result" in item:
                    if item["result"]:
                        await sync_to_async(_own_image)(self.scope["user"], item["result"])
                    await self.send_json({"done": True, "image": item["result"]})
                else:
                    await self.send_json({"progress": item})
        except errors.EngineError as exc:
            await self.send_json({"error": str(exc)})
        except Exception:
            log.exception("%s failed", op)
            await self.send_json({"error": "internal error"})


class PullConsumer(_ImageSocket):
    async def receive_json(self, content: dict, **kwargs) -> None:
        ref = content.get("ref")
        if not isinstance(ref, str) or not ref.strip() or len(ref) > REF_MAX:
            await self.send_json({"error": "give an image reference, e.g. 127.0.0.1:5000/name:tag"})
            return
        ref = ref.strip()
        try:
            auth = await sync_to_async(credentials_for)(self.scope["user"], ref)
        except errors.EngineError as exc:  # a saved login that can no longer be read
            await self.send_json({"error": str(exc)})
            return
        await self._forward("registry.pull", ref, auth=auth)


class BuildConsumer(_ImageSocket):
    async def receive_json(self, content: dict, **kwargs) -> None:
        token = self.scope["url_route"]["kwargs"]["token"]
        r = bus.aclient()
        try:
            raw = await r.getdel(f"estiba:build:{token}")
        finally:
            await r.aclose()
        if not raw:
            await self.send_json({"error": "this build has expired; upload the context again"})
            return
        job = json.loads(raw)
        if job.get("user") != self.scope["user"].pk:
            await self.send_json({"error": "this build belongs to another user"})
            return
        await self._forward("builder.build", {"__bytes__": job["context"]},
                            dockerfile=job["dockerfile"], tags=job["tags"],
                            no_cache=job["no_cache"],
                            host_urls=permissions.is_admin(self.scope["user"]))
