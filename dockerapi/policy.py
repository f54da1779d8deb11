"""Who is calling, and what they may see: the dashboard's ownership rules, for the API.

On the UNIX socket the caller is root (the socket is mode 0600/0660, like
docker.sock), so it acts as an administrator. On TCP a caller must present a
token (``Authorization: Bearer <token>``, obtained with ``estiba login``); the
token names a Django user and ``estiba.permissions`` decides what that user
sees — an object hidden in the browser is missing from ``docker ps`` too, and
one the user may not see answers 404 exactly like one that does not exist.
``RootPolicy`` is the policy of a server running without Django (``--local``,
socket only).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from dockerapi.http import HTTPError, Request
from engine.errors import NotFound

OPEN_PATHS = ("/_ping", "/version", "/estiba/login")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RootPolicy:
    """Everyone on the socket is root; TCP callers are refused."""

    async def authenticate(self, req: Request) -> None:
        if req.peer == "unix":
            req.is_admin = True
            return
        if req.path in OPEN_PATHS:
            return
        raise HTTPError(401, "this server accepts only its UNIX socket (no user database)")

    async def check(self, req: Request, kind: str, engine_id: str, name: str = "") -> None:
        return None

    async def check_create(self, req: Request, kind: str, spec: Any) -> None:
        return None

    async def check_admin_or_owner(self, req: Request, kind: str, ref: str) -> None:
        return None

    async def record(self, req: Request, kind: str, engine_id: str, name: str = "") -> None:
        return None

    async def forget(self, req: Request, kind: str, engine_id: str) -> None:
        return None

    async def filter_list(self, req: Request, kind: str, items: list) -> list:
        return items

    async def may_see_event(self, req: Request, event: dict) -> bool:
        return True

    async def filter_df(self, req: Request, data: dict) -> dict:
        return data


class DjangoPolicy(RootPolicy):
    """Tokens and ownership from the Django database (``estiba.permissions``)."""

    CACHE_SECONDS = 30.0

    def __init__(self) -> None:
        from estiba import permissions

        self.perm = permissions
        self._tokens: dict[str, tuple[float, Any]] = {}

    def _user_for(self, token: str) -> Any:
        from dockerapi.models import ApiToken

        row = (ApiToken.objects.select_related("user")
               .filter(key_hash=token_hash(token), user__is_active=True).first())
        if row is None:
            return None
        ApiToken.objects.filter(pk=row.pk).update(last_used=_now())
        return row.user

    async def authenticate(self, req: Request) -> None:
        if req.peer == "unix":
            req.is_admin = True
            return
        auth = req.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else \
            req.headers.get("x-estiba-token", "")
        if not token:
            if req.path in OPEN_PATHS:
                return
            raise HTTPError(401, "authentication required: run `estiba login` and send "
                            "the token as 'Authorization: Bearer <token>'")
        cached = self._tokens.get(token)
        if cached and cached[0] > time.monotonic():
            user = cached[1]
        else:
            user = await asyncio.to_thread(self._user_for, token)
            if user is None:
                raise HTTPError(401, "invalid or revoked token: run `estiba login` again")
            self._tokens[token] = (time.monotonic() + self.CACHE_SECONDS, user)
        req.user = user
        req.is_admin = self.perm.is_admin(user)

    async def _owner(self, kind: str, engine_id: str) -> int | None:
        return await asyncio.to_thread(self.perm.owner_id_of, kind, engine_id)

    async def check(self, req: Request, kind: str, engine_id: str, name: str = "") -> None:
        if req.is_admin:
            return
        owner = await self._owner(kind, engine_id)
        if owner == req.user.pk:
            return
        if owner is None and kind in self.perm.SHARED_WHEN_UNOWNED:
            return
        raise NotFound(f"No such {kind}: {name.lstrip('/') or engine_id}")

    async def check_create(self, req: Request, kind: str, spec: Any) -> None:
        if kind == "container" and not req.is_admin:
            await asyncio.to_thread(self.perm.check_container_spec, req.user, spec)

    async def check_admin_or_owner(self, req: Request, kind: str, ref: str) -> None:
        if req.is_admin:
            return
        if kind == "image":
            from engine.errors import Forbidden

            raise Forbidden(f"only an administrator may change the image {ref}")

    async def record(self, req: Request, kind: str, engine_id: str, name: str = "") -> None:
        if req.user is None:
            return  # root on the socket: the projection records it from the engine's event
        try:
            await asyncio.to_thread(self.perm.record_owner, req.user, kind, engine_id)
        except Exception:  # the projection may lack a field; ownership then comes from events
            import logging

            logging.getLogger("estiba.api").exception("could not record owner of %s %s",
                                                      kind, engine_id)

    async def filter_list(self, req: Request, kind: str, items: list) -> list:
        if req.is_admin:
            return items
        ids = await asyncio.to_thread(self.perm.visible_engine_ids, req.user, kind)
        if ids is None:
            return items
        key = "Name" if kind == "volume" else "Id"
        return [i for i in items if i.get(key) in ids]

    async def may_see_event(self, req: Request, event: dict) -> bool:
        if req.is_admin:
            return True
        kind = event.get("Type")
        if kind not in ("container", "volume", "network"):
            return kind == "image"
        actor = (event.get("Actor") or {}).get("ID", "")
        owner = await self._owner(kind, actor)
        return owner == req.user.pk or (owner is None and kind == "network")

    async def filter_df(self, req: Request, data: dict) -> dict:
        if req.is_admin:
            return data
        data = dict(data)
        data["Containers"] = await self.filter_list(req, "container", data.get("Containers") or [])
        data["Volumes"] = await self.filter_list(req, "volume", data.get("Volumes") or [])
        return data


def _now():
    from django.utils import timezone

    return timezone.now()
