"""Request events for the architecture lesson: who asked the API for what.

The lesson lights the client -> REST API -> daemon path of each real request.
Engine events say what the daemon did; these say which client asked. The
Docker API (``dockerapi/app.py``) calls ``publish(...)`` after each request it
answers; the dashboard's requests are tapped by ``RequestTap`` (a middleware).

Publishing is fire and forget: ``publish`` hands the message to one background
thread running its own event loop and returns at once (a few microseconds), so
neither the API nor the dashboard waits for Redis. When Redis is slow or down
the messages beyond ``MAX_PENDING`` are dropped: a lesson must never slow or
break a request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time

log = logging.getLogger("lessons.requests")

REQUESTS_GROUP = "lessons.requests"
CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
MAX_PENDING = 200
SEND_TIMEOUT = 5.0

#: What a request reaches after the REST API, by the object kind it acts on.
COMPONENTS = {"container": "containers", "exec": "containers", "image": "images",
              "build": "images", "volume": "volumes", "network": "volumes"}


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


# --- what a Docker API path acts on --------------------------------------------------------------
_API_KINDS = {"containers": "container", "images": "image", "build": "build", "volumes": "volume",
              "networks": "network", "exec": "exec", "auth": "registry", "distribution": "registry",
              "commit": "image", "events": "events", "info": "system", "version": "system",
              "system": "system", "_ping": "system", "estiba": "system"}
_VERSION = re.compile(r"^/v\d+\.\d+(?=/)")


def api_kind_action(method: str, path: str) -> tuple[str, str]:
    """``("container", "create")`` for ``POST /v1.41/containers/create``, and so on."""
    parts = [p for p in _VERSION.sub("", path).split("/") if p]
    if not parts:
        return "", ""
    kind = _API_KINDS.get(parts[0], "")
    last = parts[-1]
    if kind == "image" and last == "create":
        return kind, "pull"
    if kind == "image" and last == "push":
        return kind, "push"
    if kind in ("build", "registry"):
        return kind, "build" if kind == "build" else "login"
    if method == "DELETE":
        return kind, "remove"
    if len(parts) == 1 or (last == "json" and len(parts) == 2):
        return kind, "list" if method == "GET" else last
    if method in ("GET", "HEAD"):
        return kind, "inspect" if last == "json" else last
    return kind, last


def reaches(kind: str, action: str, daemon: bool = True) -> list[str]:
    """The components a request goes through after its client, in order."""
    if not daemon:
        return ["api"]
    path = ["api", "daemon"]
    if kind == "registry" or (kind == "image" and action in ("pull", "push")):
        path.append("registry")
    if kind in COMPONENTS:
        path.append(COMPONENTS[kind])
    return path


def message(method: str, path: str, client: str, kind: str = "", action: str = "",
            status: int | None = None, user: str = "", via: list[str] | None = None) -> dict:
    return {"type": "lesson.request", "method": method, "path": path[:200], "client": client,
            "kind": kind, "action": action, "status": status, "user": user[:150],
            "reaches": via if via is not None else reaches(kind, action)}


# --- the sender: one thread, one loop, never waited for ---------------------------------
class _Sender:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending = 0
        self.dropped = 0
        self.warned = -1e9

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="lesson-requests", daemon=True).start()
        return loop

    def submit(self, msg: dict, user_id: int | None) -> bool:
        with self.lock:
            if self.pending >= MAX_PENDING:
                self.dropped += 1
                return False
            if self.loop is None or self.loop.is_closed():
                self.loop = self._start()
            self.pending += 1
            loop = self.loop
        future = asyncio.run_coroutine_threadsafe(self._send(msg, user_id), loop)
        future.add_done_callback(self._done)
        return True

    def _done(self, future) -> None:
        with self.lock:
            self.pending -= 1
        if future.cancelled() or future.exception() is None:
            return
        now = time.monotonic()
        if now - self.warned > 60:  # once a minute at most: Redis may be down for a while
            self.warned = now
            log.warning("could not publish a request event (%d dropped so far): %r",
                        self.dropped, future.exception())

    async def _send(self, msg: dict, user_id: int | None) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        async with asyncio.timeout(SEND_TIMEOUT):
            await layer.group_send(REQUESTS_GROUP, msg)
            if user_id is not None:
                await layer.group_send(f"{REQUESTS_GROUP}.{user_id}", msg)


_sender = _Sender()


def publish(method: str, path: str, client: str, user_id: int | None = None,
            kind: str = "", action: str = "", status: int | None = None, user: str = "",
            via: list[str] | None = None) -> bool:
    """Tell the architecture lesson's sockets about one request, without waiting.

    Callable from any thread, with or without a running event loop; never raises.
    Returns False when the message was dropped (too many still on their way).
    """
    try:
        return _sender.submit(message(method, path, client, kind, action, status, user, via),
                              user_id)
    except Exception:  # a lesson must never break a request
        log.exception("could not publish a request event")
        return False


def flush(timeout: float = 5.0) -> bool:
    """Wait until every published message has been sent (for tests and shutdown)."""
    deadline = time.monotonic() + timeout
    while _sender.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _sender.pending


# --- the dashboard's requests ------------------------------------------------------------------
#: The object kind a dashboard path acts on (its first segment).
KINDS = {"containers": "container", "images": "image", "volumes": "volume",
         "networks": "network"}
#: Paths that are the lesson's own machinery or plumbing, not requests worth showing.
QUIET = ("/lessons/", "/i18n/", "/static/", "/ws/", "/favicon.ico", "/admin/jsi18n/")


def dashboard_record(request, status: int) -> dict | None:
    """The request event of one dashboard request, or None for the quiet ones."""
    if request.path.startswith(QUIET):
        return None
    parts = [p for p in request.path.split("/") if p]
    kind = KINDS.get(parts[0], "") if parts else ""
    changing = request.method in CHANGING
    action = ""
    if changing and kind:
        rest = parts[1:]
        action = rest[-1] if rest else "create"
        if action == "new":
            action = "create"
    user = getattr(request, "user", None)
    authenticated = user is not None and user.is_authenticated
    # Reads come from Django's projection; changes go through the host's worker.
    return {"method": request.method, "path": request.path,
            "client": client_of(request.headers.get("User-Agent", "")),
            "user_id": user.pk if authenticated else None,
            "user": user.get_username() if authenticated else "",
            "kind": kind, "action": action, "status": status,
            "via": reaches(kind, action, daemon=changing and bool(kind))}


class RequestTap:
    """Middleware: each dashboard request becomes a request event (after its answer)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        try:
            record = dashboard_record(request, response.status_code)
            if record is not None:
                publish(**record)
        except Exception:  # a lesson must never break a request
            log.exception("could not tap a dashboard request")
        return response
