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
        m = VERSION_RE.match(req.path)
        if m:
            req.version, req.path = m.group(1), m.group(2)
            if _vtuple(req.version) < _vtuple(MIN_API_VERSION):
                return error_response(400, f"client version {req.version} is too old. "
                                      f"Minimum supported API version is {MIN_API_VERSION}")
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


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))
