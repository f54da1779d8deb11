"""The API's own HTTP/1.1 server on a real UNIX socket: bodies, keep-alive, streams, hijack.

These tests drive dockerapi/http.py with raw bytes, as a client would send
them, through a small dispatch function (no engine needed).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockerapi.http import Request, Response, error_response, json_response, serve_connection


async def dispatch(req: Request) -> Response | None:
    if req.path == "/echo":
        body = await req.body()
        return json_response({"len": len(body), "body": body.decode(), "q": req.query})
    if req.path == "/stream":
        async def gen():
            for i in range(3):
                yield f"{i}\n".encode()
        return Response(200, stream=gen())
    if req.path == "/hijack":
        reader, writer = await req.hijack()
        while data := await reader.read(100):
            writer.write(data.upper())
            await writer.drain()
            if b"bye" in data:
                break
        writer.close()
        return None
    return error_response(404, f"page not found: {req.path}")


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "t.sock")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def main():
        srv = await asyncio.start_unix_server(
            lambda r, w: serve_connection(r, w, dispatch, "unix"), path=path)
        started.set()
        async with srv:
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    started.wait(5)
    yield path
    loop.call_soon_threadsafe(stop.set)
    thread.join(5)
    loop.close()


def talk(path: str, data: bytes, until: bytes = b"", timeout: float = 5) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        out = b""
        while until not in out or not until:
            piece = s.recv(65536)
            if not piece:
                break
            out += piece
        return out


def test_content_length_body_and_query(sock_path):
    out = talk(sock_path, b"POST /echo?a=1&b=x%20y HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                          b"Connection: close\r\n\r\nhello")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Api-Version: 1.41" in head
    assert json.loads(body) == {"len": 5, "body": "hello", "q": {"a": "1", "b": "x y"}}


def test_chunked_body_and_keep_alive(sock_path):
    req = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
    second = b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = talk(sock_path, req + second)
    first, rest = out.split(b"HTTP/1.1 404", 1)
    assert b'"body": "abcdefg"' in first
    assert b'{"message": "page not found: /nothing"}' in rest


def test_streamed_response_is_chunked(sock_path):
    out = talk(sock_path, b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"2\r\n0\n\r\n2\r\n1\n\r\n2\r\n2\n\r\n0\r\n\r\n"


def test_hijack_upgrades_and_carries_raw_bytes(sock_path):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall(b"POST /hijack HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                  b"Upgrade: tcp\r\nContent-Length: 0\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101 UPGRADED")
        assert b"Upgrade: tcp" in head
        s.sendall(b"hello ")
        assert s.recv(100) == b"HELLO "
        s.sendall(b"bye")
        assert s.recv(100) == b"BYE"
        assert s.recv(100) == b""


def test_malformed_request_gets_a_400(sock_path):
    out = talk(sock_path, b"NONSENSE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert b"malformed request line" in out
