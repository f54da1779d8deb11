"""Run a small Python function inside another process's namespaces.

``setns(2)`` changes the namespaces of the calling *thread*, and some kinds
(mnt, user, pid) refuse a multithreaded caller. A worker or a web server has
threads, so the switch happens in a forked child: it joins the namespaces,
runs the function, sends the JSON-able result back through a pipe and exits.
The parent never changes namespace. Python 3.11 has no ``os.setns``; libc's is
called through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from engine.errors import NotFound, RuntimeFailure

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace open at ``fd`` (the calling thread only)."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def run_in_namespaces(
    pid: int, kinds: Iterable[str], func: Callable[[], Any], timeout: float = 10.0
) -> Any:
    """``func()`` evaluated inside ``pid``'s namespaces of the given kinds."""
    fds = []
    try:
        for kind in kinds:
            try:
                fds.append(os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
            except FileNotFoundError as exc:
                raise NotFound(f"process {pid}: no {kind} namespace (has it exited?)") from exc
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            os.close(read_end)
            try:
                for fd in fds:
                    setns(fd)
                payload = {"ok": func()}
            except BaseException as exc:  # report anything to the parent
                payload = {"error": f"{type(exc).__name__}: {exc}"}
            data = json.dumps(payload, default=str).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view) :]
            os._exit(0)
        os.close(write_end)
        chunks = []
        with os.fdopen(read_end, "rb") as fh:
            while chunk := fh.read(65536):
                chunks.append(chunk)
        os.waitpid(child, 0)
    finally:
        for fd in fds:
            os.close(fd)
    if not chunks:
        raise RuntimeFailure(f"process {pid}: the child that joined its namespaces said nothing")
    result = json.loads(b"".join(chunks))
    if "error" in result:
        raise RuntimeFailure(f"inside the namespaces of process {pid}: {result['error']}")
    return result["ok"]
