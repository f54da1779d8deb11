"""Routing: Docker's paths (with or without ``/v1.xx``) to handler coroutines.

The route table is the whole API surface in one place; the handlers live in
``dockerapi/routes/`` by object kind. Errors become Docker's error JSON: the
engine's typed errors carry their HTTP status (``EngineError.status``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from dockerapi.http import HTTPError, Request, Response, error_response
from engine.errors import EngineError

log = logging.getLogger("estiba.api")

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
VERSION_RE = re.compile(r"^/v(\d+\.\d+)(/.*)$")

RouteHandler = Callable[..., Awaitable[Response | None]]


class Api:
    """The route table, the backend (engine access) and the ownership policy."""

    def __init__(self, backend: Any, policy: Any) -> None:
        self.backend = backend
        self.policy = policy
        self.routes: list[tuple[str, re.Pattern, RouteHandler]] = []
        from dockerapi.routes import containers, execs, images, login, objects, system

        for module in (system, login, containers, execs, images, objects):
            module.register(self)

    def route(self, method: str, pattern: str, handler: RouteHandler) -> None:
        self.routes.append((method, re.compile("^" + pattern + "$"), handler))

    async def __call__(self, req: Request) -> Response | None:
        log.debug("%s %s %s", req.peer, req.method, req.path)
        status: int | None = None
        try:
            resp = await self._dispatch(req)
            status = 101 if req.hijacked else (resp.status if resp is not None else 204)
            return resp
        except HTTPError as exc:
            status = exc.status
            raise
        except BaseException:
            status = 500
            raise
        finally:
            _tell_the_lesson(req, status)

    async def _dispatch(self, req: Request) -> Response | None:
        m = VERSION_RE.match(req.path)
        if m:
            req.version, req.path = m.group(1), m.group(2)
            if _vtuple(req.version) < _vtuple(MIN_API_VERSION):
                return error_response(400, f"client version {req.version} is too old. "
                                      f"Minimum supported API version is {MIN_API_VERSION}")
            if _vtuple(req.version) > _vtuple(API_VERSION):  # Docker refuses it too
                return error_response(400, f"client version {req.version} is too new. "
                                      f"Maximum supported API version is {API_VERSION}")
        allowed = False
        for method, pattern, handler in self.routes:
            match = pattern.match(req.path)
            if not match:
                continue
            if method != req.method and not (method == "GET" and req.method == "HEAD"):
                allowed = True
                continue
            req.params = match.groupdict()
            try:
                await self.policy.authenticate(req)
                return await handler(self, req, **req.params)
            except HTTPError:
                raise
            except EngineError as exc:
                status = exc.status if 300 <= exc.status < 600 else 500
                if status == 304:
                    return Response(304, b"", content_type="")
                return error_response(status, exc.message)
            except (KeyError, TypeError, ValueError) as exc:
                log.exception("bad request %s %s", req.method, req.path)
                return error_response(400, f"{type(exc).__name__}: {exc}")
            except Exception as exc:
                log.exception("handler for %s %s failed", req.method, req.path)
                return error_response(500, f"{type(exc).__name__}: {exc}")
        if allowed:
            return error_response(405, f"method {req.method} not allowed on {req.path}")
        return error_response(404, f"page not found: {req.method} {req.path}")


def _lesson_publisher() -> Callable[..., Any] | None:
    """``lessons_app.requests.publish`` when Django is set up and the lessons are installed."""
    try:
        from django.apps import apps

        if not apps.ready or not apps.is_installed("lessons_app"):
            return None
        from lessons_app.requests import api_kind_action, client_of, publish, reaches
    except Exception:
        return None

    def tell(req: Request, status: int | None) -> None:
        kind, action = api_kind_action(req.method, req.path)
        user = req.user
        publish(req.method, (f"/v{req.version}" if req.version else "") + req.path,
                client_of(req.headers.get("user-agent", "")),
                getattr(user, "pk", None), kind=kind, action=action, status=status,
                user=user.get_username() if user is not None else
                ("root" if req.peer == "unix" else ""),
                via=reaches(kind, action, daemon=kind not in ("", "system")))

    return tell


_publisher: Any = False  # not looked up yet
QUIET_PATHS = {"/_ping"}  # every client pings first: not a request worth lighting


def _tell_the_lesson(req: Request, status: int | None) -> None:
    """Publish the request to the architecture lesson: fire and forget, never raises."""
    global _publisher
    if req.path in QUIET_PATHS:
        return
    try:
        if _publisher is False:
            _publisher = _lesson_publisher()
        if _publisher is not None:
            _publisher(req, status)
    except Exception:
        log.debug("could not tell the lesson about %s %s", req.method, req.path, exc_info=True)


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))
