"""``POST /estiba/login``: a username and password for an API token (estiba's own path)."""

from __future__ import annotations

import asyncio

from dockerapi.http import BadRequest, HTTPError, Request, Response, json_response


def register(api) -> None:
    api.route("POST", r"/estiba/login", login)
    api.route("GET", r"/estiba/whoami", whoami)


def _issue(username: str, password: str, label: str) -> str | None:
    from django.contrib.auth import authenticate

    from dockerapi.models import ApiToken

    user = authenticate(username=username, password=password)
    if user is None or not user.is_active:
        return None
    return ApiToken.issue(user, label)


async def login(api, req: Request) -> Response:
    if not getattr(api.policy, "perm", None):
        raise HTTPError(501, "this server has no user database: use its UNIX socket")
    body = await req.json({}) or {}
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        raise BadRequest("username and password are required")
    token = await asyncio.to_thread(_issue, username, password, str(body.get("label") or "cli"))
    if token is None:
        raise HTTPError(401, f"login failed for {username!r}: wrong username or password")
    return json_response({"Status": "Login Succeeded", "Token": token}, 200)


async def whoami(api, req: Request) -> Response:
    user = req.user
    return json_response({"Username": getattr(user, "username", "root"),
                          "Admin": bool(req.is_admin)})
