"""A small HTTP/1.1 server on asyncio streams, with Docker's connection hijack.

Why not daphne (ASGI)? The docker CLI and docker-py run ``attach`` and
``exec start`` by *hijacking* the HTTP connection: the request carries
``Connection: Upgrade`` / ``Upgrade: tcp``, the daemon answers
``101 UPGRADED`` and from then on the same TCP (or UNIX) socket carries the
raw terminal bytes in both directions. ASGI has no way to hand a view the raw
socket (its websocket upgrade speaks the websocket framing, not raw bytes), so
the API runs its own server: one asyncio task per connection, requests parsed
here by hand (request line, headers, a body sized by ``Content-Length`` or sent
``chunked``), keep-alive, chunked streaming responses for logs/events/pull
progress, and ``Request.hijack()`` that gives a handler the raw reader and
writer. The handlers are plain coroutines; the Django side (ORM, the gateway to
the workers) is reached from them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger("estiba.api.http")

MAX_HEADER = 64 * 1024
REASONS = {
    101: "UPGRADED", 200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
    413: "Payload Too Large", 500: "Internal Server Error", 501: "Not Implemented",
}


class HTTPError(Exception):
    """An error answered as Docker does: ``{"message": ...}`` with a status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BadRequest(HTTPError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


@dataclass
class Response:
    """A whole body (``body``) or a streamed one (``stream``, sent chunked)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None
    content_type: str = "application/json"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = b"" if data is None else json.dumps(data).encode() + b"\n"
    return Response(status, body, dict(headers or {}))


def empty(status: int = 204) -> Response:
    return Response(status, b"", content_type="")


def error_response(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


class Request:
    """One parsed request; the body is read on demand (it may be a large tar)."""

    def __init__(self, method: str, target: str, headers: dict[str, str],
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        self.method = method
        parts = urlsplit(target)
        self.raw_path = unquote(parts.path)
        self.path = self.raw_path
        self.query_list = parse_qsl(parts.query, keep_blank_values=True)
        self.query: dict[str, str] = dict(self.query_list)
        self.headers = headers
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.version = ""  # the /v1.xx prefix, if any
        self.params: dict[str, str] = {}
        self.user: Any = None  # set by the auth step (a Django user, or None for the socket root)
        self.is_admin = False
        self.hijacked = False
        self._body_done = False
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        try:
            self._remaining = int(length) if length else 0
        except ValueError as exc:
            raise BadRequest(f"bad Content-Length header: {length!r}") from exc
        if self._remaining < 0:
            raise BadRequest(f"bad Content-Length header: {length!r}")
        self._chunk_left = 0

    # --- query helpers -------------------------------------------------------------
    def qbool(self, name: str, default: bool = False) -> bool:
        value = self.query.get(name)
        if value is None:
            return default
        return value.lower() not in ("", "0", "false", "no")

    def qint(self, name: str, default: int | None = None) -> int | None:
        value = self.query.get(name)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise BadRequest(f"query parameter {name!r} must be an integer, not {value!r}") from exc

    def qjson(self, name: str, default: Any = None) -> Any:
        value = self.query.get(name)
        if not value:
            return default
        try:
            return json.loads(value)
        except ValueError as exc:
            raise BadRequest(f"query parameter {name!r} is not valid JSON") from exc

    # --- body --------------------------------------------------------------------
    async def iter_body(self, size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """The body in pieces, whatever its transfer encoding."""
        if self._body_done:
            return
        if self._chunked:
            while True:
                if self._chunk_left == 0:
                    line = await self.reader.readline()
                    try:
                        self._chunk_left = int(line.split(b";")[0].strip() or b"0", 16)
                    except ValueError as exc:
                        raise BadRequest("malformed chunked request body") from exc
                    if self._chunk_left == 0:
                        # trailers, then the blank line
                        while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                            pass
                        break
                data = await self.reader.read(min(size, self._chunk_left))
                if not data:
                    raise BadRequest("request body ended early")
                self._chunk_left -= len(data)
                if self._chunk_left == 0:
                    await self.reader.readexactly(2)
                yield data
        else:
            while self._remaining > 0:
                data = await self.reader.read(min(size, self._remaining))
                if not data:
                    raise BadRequest("request body ended early")
                self._remaining -= len(data)
                yield data
        self._body_done = True

    async def body(self, limit: int = 16 * 1024 * 1024) -> bytes:
        out = bytearray()
        async for piece in self.iter_body():
            out += piece
            if len(out) > limit:
                raise HTTPError(413, f"request body larger than {limit} bytes")
        return bytes(out)

    async def json(self, default: Any = None) -> Any:
        data = await self.body()
        if not data.strip():
            return default
        try:
            return json.loads(data)
        except ValueError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from exc

    async def drain(self) -> None:
        async for _ in self.iter_body():
            pass

    # --- hijack --------------------------------------------------------------------
    async def hijack(self, content_type: str = "application/vnd.docker.raw-stream"
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Answer 101 (or 200 to a client that did not ask to upgrade) and give up HTTP."""
        await self.drain()
        upgrade = "upgrade" in self.headers.get("connection", "").lower()
        if upgrade:
            head = ("HTTP/1.1 101 UPGRADED\r\n"
                    f"Content-Type: {content_type}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\r\n"
        self.writer.write(head.encode())
        await self.writer.drain()
        self.hijacked = True
        return self.reader, self.writer


Handler = Callable[[Request], Awaitable[Response | None]]


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        peer: str) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise HTTPError(431, "request headers too large") from exc
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, proto = lines[0].split(" ", 2)
    except ValueError as exc:
        raise BadRequest(f"malformed request line: {lines[0][:80]!r}") from exc
    if not proto.startswith("HTTP/1."):
        raise BadRequest(f"unsupported protocol {proto[:20]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"malformed header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    if proto == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
        headers.setdefault("connection", "close")
    return Request(method.upper(), target, headers, reader, writer, peer)


async def write_response(writer: asyncio.StreamWriter, resp: Response, keep_alive: bool,
                         head_only: bool = False,
                         reader: asyncio.StreamReader | None = None) -> bool:
    """Send ``resp``; returns whether the connection may carry another request."""
    headers = {"Api-Version": "1.41", "Docker-Experimental": "false", "Ostype": "linux",
               "Server": "estiba/0.1 (linux)"}
    if resp.content_type:
        headers["Content-Type"] = resp.content_type
    headers.update(resp.headers)
    if resp.stream is not None:
        headers["Transfer-Encoding"] = "chunked"
    elif resp.status not in (204, 304) and not (100 <= resp.status < 200):
        headers["Content-Length"] = str(len(resp.body))
    if not keep_alive:
        headers["Connection"] = "close"
    reason = REASONS.get(resp.status, "Status")
    head = f"HTTP/1.1 {resp.status} {reason}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode("latin-1"))
    if resp.stream is None:
        if not head_only and resp.body:
            writer.write(resp.body)
        await writer.drain()
        return keep_alive
    await writer.drain()
    stream = resp.stream
    # A follower (logs -f, events) may wait long for its next item: look at the
    # client's side meanwhile (without reading from it), so a client that hangs
    # up ends the stream within a second.
    iterator = stream.__aiter__()
    try:
        while True:
            nxt = asyncio.ensure_future(iterator.__anext__())
            while True:
                done, _ = await asyncio.wait({nxt}, timeout=1.0)
                if done:
                    break
                if writer.is_closing() or (reader is not None and reader.at_eof()):
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt
                    return False
            try:
                piece = nxt.result()
            except StopAsyncIteration:
                break
            if piece:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(BaseException):
                await aclose()
    return keep_alive


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           dispatch: Handler, peer: str) -> None:
    """Answer requests on one connection until it closes or is hijacked."""
    try:
        while True:
            try:
                req = await _read_request(reader, writer, peer)
            except HTTPError as exc:
                await write_response(writer, error_response(exc.status, exc.message), False)
                return
            if req is None:
                return
            keep_alive = req.headers.get("connection", "").lower() != "close"
            try:
                resp = await dispatch(req)
            except HTTPError as exc:
                resp = error_response(exc.status, exc.message)
            if req.hijacked:
                return
            if resp is None:
                resp = empty()
            if not req._body_done:
                try:
                    await asyncio.wait_for(req.drain(), 30)
                except (TimeoutError, HTTPError):
                    keep_alive = False
            if not await write_response(writer, resp, keep_alive, req.method == "HEAD", reader):
                return
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
        pass
    except Exception:  # one broken connection must not take the server down
        log.exception("connection from %s failed", peer)
    finally:
        try:
            writer.close()
        except Exception:
            pass
