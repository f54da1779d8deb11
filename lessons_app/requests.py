"""Request events for the architecture lesson: who asked the API for what.

The lesson lights the client -> REST API -> daemon path of each real request.
Engine events say what the daemon did; these say which client asked. Any
process with Django settings (daphne, the Docker API server) calls
``publish(...)``; the dashboard's own changes are tapped by ``RequestTap``.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger("lessons.requests")

REQUESTS_GROUP = "lessons.requests"
CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def client_of(user_agent: str) -> str:
    """A short name of the client from its User-Agent header."""
    ua = (user_agent or "").lower()
    if ua.startswith("docker-client") or ("docker/" in ua and "docker-sdk" not in ua):
        return "docker CLI"
    if "docker-sdk-python" in ua or "python-requests" in ua:
        return "docker-py"
    if ua.startswith("estiba"):
        return "estiba CLI"
    if "mozilla" in ua:
        return "browser"
    return ua.split("/")[0][:30] or "client"


def message(method: str, path: str, client: str, kind: str = "", action: str = "") -> dict:
    return {"type": "lesson.request", "method": method, "path": path[:200], "client": client,
            "kind": kind, "action": action}


def publish(method: str, path: str, client: str, user_id: int | None = None,
            kind: str = "", action: str = "") -> None:
    """Tell the architecture lesson's sockets about one request (never raises)."""
    layer = get_channel_layer()
    if layer is None:
        return
    msg = message(method, path, client, kind, action)
    try:
        async_to_sync(_send)(layer, msg, user_id)
    except Exception:  # a lesson must never break a request
        log.exception("could not publish a request event")


async def _send(layer, msg: dict, user_id: int | None) -> None:
    await layer.group_send(REQUESTS_GROUP, msg)
    if user_id is not None:
        await layer.group_send(f"{REQUESTS_GROUP}.{user_id}", msg)


async def apublish(method: str, path: str, client: str, user_id: int | None = None,
                   kind: str = "", action: str = "") -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await _send(layer, message(method, path, client, kind, action), user_id)
    except Exception:
        log.exception("could not publish a request event")


#: The object kind a dashboard path acts on (its first segment).
KINDS = {"containers": "container", "images": "image", "volumes": "volume",
         "networks": "network"}


class RequestTap:
    """Middleware: each change made through the dashboard becomes a request event."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.method in CHANGING and not request.path.startswith(("/lessons/", "/i18n/")):
            first = request.path.strip("/").split("/")[0]
            user = getattr(request, "user", None)
            publish(request.method, request.path, client_of(request.headers.get("User-Agent", "")),
                    user.pk if user is not None and user.is_authenticated else None,
                    kind=KINDS.get(first, ""))
        return response
