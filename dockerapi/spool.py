"""Request bodies written to disk: tarballs for load, import, build and ``docker cp``.

A body may be gigabytes, so it is spooled to a private file (mode 0600) a piece
at a time, never held in memory, and refused with 413 past ``MAX_CONTEXT``; a
body that fails halfway leaves no file behind.
"""

from __future__ import annotations

import os
import uuid

from dockerapi.http import HTTPError, Request
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
