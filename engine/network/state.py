"""Network state on disk: one JSON file per network and per container sandbox.

The files are the truth (ARCHITECTURE.md, rule 2): the kernel objects
(bridges, veths, namespaces, nftables rules) are derived from them and can be
rebuilt or cleaned up from them after a crash. Each file is replaced
atomically (write a temporary file, fsync, rename), so a kill -9 at any point
leaves either the old or the new state, never a torn one; one lock file
serialises writers across the worker, the CLI and tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def atomic_write_json(path: Path, data: Any, durable: bool = True) -> None:
    """Replace ``path`` atomically. ``durable=False`` skips the fsync: the rename is still
    atomic for a process crash, and state that a reboot makes stale anyway (a
    running container's sandbox) need not pay ~1.5 ms per write to survive power loss."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, separators=(",", ":"), sort_keys=True)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The file's JSON, or None when it is missing or unreadable (a torn temp never is)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


class StateLock:
    """A re-entrant lock held across threads (RLock) and processes (flock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._rlock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._rlock:
            if self._depth == 0:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
