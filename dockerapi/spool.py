"""Request bodies written to disk: tarballs for load, import, build and ``docker cp``.

A body may be gigabytes, so it is spooled to a private file (mode 0600) a piece
at a time, never held in memory, and refused with 413 past ``MAX_CONTEXT``; a
body that fails halfway leaves no file behind. ``docker import URL`` is spooled
the same way from the URL (:class:`UrlSpool`): plain HTTP or HTTPS only, the
same size cap, timeouts on connecting and on every read.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from urllib.parse import urlparse

from dockerapi.http import BadRequest, HTTPError, Request
from dockerapi.ops import spool_dir

MAX_CONTEXT = int(os.environ.get("ESTIBA_API_MAX_CONTEXT", str(2 * 1024**3)))


async def spool_body(req: Request, prefix: str) -> str:
    """The request body in a new spool file; returns its path (the caller removes it)."""
    path = spool_dir() / f"{prefix}-{uuid.uuid4().hex}.tar"
    size = 0
    try:
        with open(path, "wb") as fh:
            os.chmod(path, 0o600)
            async for piece in req.iter_body():
                size += len(piece)
                if size > MAX_CONTEXT:
                    raise HTTPError(413, f"request body larger than {MAX_CONTEXT} bytes")
                fh.write(piece)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return str(path)


class UrlSpool:
    """A URL's content on its way into a spool file, opened first so that a bad URL or
    an error answer is refused before any response starts."""

    CHUNK = 1 << 20

    def __init__(self, url: str, prefix: str) -> None:
        import requests

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise BadRequest(f"cannot import from {url:.100}: give an http:// or https:// URL, "
                             "or '-' and the tarball as the body")
        self.url, self.path = url, spool_dir() / f"{prefix}-{uuid.uuid4().hex}.tar"
        try:
            self.response = requests.get(url, stream=True, timeout=(10, 60))
        except requests.RequestException as exc:
            raise BadRequest(f"cannot import from {url:.100}: {type(exc).__name__}") from None
        if self.response.status_code != 200:
            self.response.close()
            raise BadRequest(f"cannot import from {url:.100}: the server answered HTTP "
                             f"{self.response.status_code}")
        length = self.response.headers.get("content-length", "")
        self.total = int(length) if length.isdigit() else None
        if self.total is not None and self.total > MAX_CONTEXT:
            self.response.close()
            raise HTTPError(413, f"{url:.100} is larger than {MAX_CONTEXT} bytes")

    def download(self, progress: Callable[[int, int | None], None]) -> str:
        """Write it all to the spool file (blocking); returns its path (the caller removes it)."""
        import requests

        size = 0
        try:
            with self.response, open(self.path, "wb") as fh:
                os.chmod(self.path, 0o600)
                for piece in self.response.iter_content(self.CHUNK):
                    size += len(piece)
                    if size > MAX_CONTEXT:
                        raise HTTPError(413, f"{self.url:.100} is larger than {MAX_CONTEXT} bytes")
                    fh.write(piece)
                    progress(size, self.total)
        except requests.RequestException as exc:
            self.path.unlink(missing_ok=True)
            raise BadRequest(f"download of {self.url:.100} failed: {type(exc).__name__}") from None
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        return str(self.path)
