"""Websockets of the images pages: a pull's or a push's per-layer progress, a build's output.

The pull socket receives ``{"ref": "127.0.0.1:5000/alpine:3"}`` and forwards
Docker's JSON progress lines as the worker's registry client emits them; the
pulled image is then owned by the user who pulled it. The push socket receives
``{"image": <id>, "target": "127.0.0.1:5000/app:1"}``: an image the user may
change, tagged with the target first if it is not one of its names (as ``docker
tag`` then ``docker push``), pushed with the user's login for that registry. The
build socket runs a build whose context the user uploaded (kept in Redis under a
one-time token).
"""

from __future__ import annotations

import json
import logging

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils.translation import gettext as _

from engine import errors
from engine.images import reference
from estiba import bus, gateway, permissions
from estiba.projection import generic_message, notify, upsert_image
from images_app.registries import credentials_for
from images_app.views import project_now

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
                    await self.send_json(await self.finished(item["result"]))
                else:
                    await self.send_json({"progress": item})
        except errors.EngineError as exc:
            await self.send_json({"error": str(exc)})
        except Exception:
            log.exception("%s failed", op)
            await self.send_json({"error": "internal error"})

    async def finished(self, result) -> dict:
        """The last message, once the operation gave its result: a new image, owned."""
        if result:
            await sync_to_async(_own_image)(self.scope["user"], result)
        return {"done": True, "image": result}


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


def _push_target(user, image: str, target: str) -> tuple[str, dict | None]:
    """Check who pushes what where; tag the image with ``target`` when it is a new name.

    Returns the target, normalised, and the user's login for its registry.
    """
    row = permissions.get_visible(user, "image", image)
    permissions.check_act(user, row, _("push"))
    try:
        ref = reference.parse(target)
    except errors.InvalidArgument as exc:
        raise errors.InvalidArgument(f"the target {target!r} is not an image reference: "
                                     f"{exc}") from None
    if ref.digest:
        raise errors.InvalidArgument("push to a name:tag, not to a digest")
    wanted = ref.familiar()
    if wanted not in row.tags:
        gateway.call("images.tag", row.engine_id, wanted, host=row.host)
        project_now(row)
    return wanted, credentials_for(user, wanted)


class PushConsumer(_ImageSocket):
    async def receive_json(self, content: dict, **kwargs) -> None:
        image, target = content.get("image"), content.get("target")
        if not (isinstance(image, str) and image and isinstance(target, str)
                and target.strip() and len(target) <= REF_MAX):
            await self.send_json({"error": "give the image and where to push it, e.g. "
                                           "127.0.0.1:5000/name:tag"})
            return
        try:
            target, auth = await sync_to_async(_push_target)(self.scope["user"], image,
                                                             target.strip())
        except (errors.EngineError, permissions.Refused) as exc:
            await self.send_json({"error": str(exc)})
            return
        self.target = target
        await self._forward("registry.push", target, auth=auth)

    async def finished(self, result) -> dict:
        return {"done": True, "target": self.target, "digest": result}


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
