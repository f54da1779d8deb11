"""A small client of estiba's Docker-compatible API, on the standard library only.

The CLI must start fast and install without heavy dependencies, so it speaks
HTTP/1.1 with ``http.client`` over a UNIX socket (root, no token) or TCP (with
the token ``estiba login`` saved), and does the connection hijack for
``exec -it`` / ``run -it`` by hand on the raw socket.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

DEFAULT_HOST = "unix:///run/estiba/estiba.sock"
API = "/v1.41"


class ApiError(Exception):
    """An error answer from the daemon (its message), or no daemon at all."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "estiba" / "config.json"


def load_config() -> dict:
    try:
        return json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}


def save_config(data: dict) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)
    return path


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


class Client:
    def __init__(self, host: str | None = None, token: str | None = None,
                 timeout: float | None = 300) -> None:
        cfg = load_config()
        self.host = host or os.environ.get("ESTIBA_HOST") or cfg.get("host") or DEFAULT_HOST
        self.token = token or os.environ.get("ESTIBA_TOKEN") or (
            cfg.get("token") if (cfg.get("host") or "") == self.host else None)
        self.timeout = timeout
        parts = urlsplit(self.host)
        if parts.scheme == "unix":
            self.unix_path: str | None = parts.path
        elif parts.scheme in ("tcp", "http"):
            self.unix_path = None
            self.addr = (parts.hostname or "127.0.0.1", parts.port or 2375)
        else:
            raise ApiError(f"unsupported host {self.host!r}: use unix:///path or tcp://host:port")

    # --- plumbing ----------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        if self.unix_path:
            return _UnixConnection(self.unix_path, self.timeout)
        return http.client.HTTPConnection(*self.addr, timeout=self.timeout)

    def _headers(self, extra: dict | None = None) -> dict:
        headers = {"Host": "estiba", "User-Agent": "estiba-cli/0.1"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def request(self, method: str, path: str, params: dict | None = None, body: Any = None,
                headers: dict | None = None, prefix: str = API) -> http.client.HTTPResponse:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = prefix + path + (("?" + urlencode(query, doseq=True)) if query else "")
        hdrs = self._headers(headers)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn = self._conn()
        try:
            conn.request(method, url, body=body, headers=hdrs)
            resp = conn.getresponse()
        except FileNotFoundError:
            raise ApiError(f"cannot reach estiba at {self.host}: no such socket (is it "
                           "running? `make run`)") from None
        except PermissionError:
            raise ApiError(f"permission denied on {self.host}: the socket is root's; use sudo "
                           "or `estiba login` and --host tcp://127.0.0.1:2375") from None
        except OSError as exc:
            raise ApiError(f"cannot reach estiba at {self.host}: {exc.strerror or exc}") from None
        if resp.status >= 400:
            data = resp.read()
            try:
                message = json.loads(data)["message"]
            except (ValueError, KeyError, TypeError):
                message = data.decode(errors="replace").strip() or resp.reason
            raise ApiError(message, resp.status)
        return resp

    def get(self, path: str, **params: Any) -> Any:
        data = self.request("GET", path, params).read()
        return json.loads(data) if data.strip() else None

    def post(self, path: str, body: Any = None, params: dict | None = None, **kw: Any) -> Any:
        data = self.request("POST", path, params, body, **kw).read()
        return json.loads(data) if data.strip() else None

    def delete(self, path: str, **params: Any) -> Any:
        data = self.request("DELETE", path, params).read()
        return json.loads(data) if data.strip() else None

    def json_lines(self, resp: http.client.HTTPResponse) -> Iterator[dict]:
        """Docker's JSON-lines streams (pull/push/build progress, events)."""
        buf = b""
        while True:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
        if buf.strip():
            yield json.loads(buf)

    def raw_stream(self, resp: http.client.HTTPResponse, tty: bool) -> Iterator[tuple[int, bytes]]:
        """Log/attach output: raw for a tty, else Docker's 8-byte framed (stdcopy) stream."""
        if tty:
            while chunk := resp.read1(65536):
                yield 1, chunk
            return
        while True:
            head = resp.read(8)
            if len(head) < 8:
                return
            stream, size = struct.unpack(">BxxxL", head)
            yield stream, resp.read(size)

    def hijack(self, path: str, body: Any = None, params: dict | None = None,
               ) -> tuple[socket.socket, bytes]:
        """POST with ``Upgrade: tcp``; the raw socket after ``101`` and bytes already read."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = API + path + (("?" + urlencode(query)) if query else "")
        data = json.dumps(body or {}).encode()
        head = [f"POST {url} HTTP/1.1"] + [f"{k}: {v}" for k, v in self._headers({
            "Content-Type": "application/json", "Content-Length": str(len(data)),
            "Connection": "Upgrade", "Upgrade": "tcp"}).items()]
        if self.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: Any = self.unix_path
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target = self.addr
        try:
            sock.connect(target)
        except OSError as exc:
            raise ApiError(f"cannot reach estiba at {self.host}: {exc.strerror or exc}") from None
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            piece = sock.recv(4096)
            if not piece:
                raise ApiError("the daemon closed the connection")
            buf += piece
        header, _, rest = buf.partition(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        if status >= 400:
            try:
                message = json.loads(rest)["message"]
            except (ValueError, KeyError):
                message = rest.decode(errors="replace")
            raise ApiError(message, status)
        return sock, rest
