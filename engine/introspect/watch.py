"""Watching copy-ups and whiteouts appear in a container's upper dir.

The upper dir is where every change a container makes lands: overlayfs
*copies up* a lower file before its first write, creates a *whiteout* (a 0/0
character device) when a lower file is deleted, and writes new files there
directly. inotify (through ctypes: the standard library has no binding) on the
upper dir and each directory below it sees these as they happen: the kernel
prepares copy-ups and whiteouts in the work dir and renames them in, so both
``IN_CREATE`` and ``IN_MOVED_TO`` are watched. Each event is classified by
looking at the upper dir and the lower layers at that moment.
"""

from __future__ import annotations

import os
import select
import struct
import time
from collections.abc import Iterator
from pathlib import Path

from engine import inotify
from engine.errors import NotFound, RuntimeFailure
from engine.inotify import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_ISDIR,
    IN_MOVED_FROM,
    IN_MOVED_TO,
)
from engine.introspect.overlay import is_whiteout

MASK = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB
_HEADER = struct.Struct("iIII")


class UpperDirWatcher:
    """inotify over an upper dir; ``poll()`` returns classified changes."""

    def __init__(self, upper_dir: str | Path, lower_dirs: list[str] | None = None) -> None:
        self.upper = Path(upper_dir)
        self.lowers = [Path(p) for p in (lower_dirs or [])]
        if not self.upper.is_dir():
            raise NotFound(f"no upper dir at {self.upper}")
        self.fd = inotify.init()
        if self.fd < 0:
            raise RuntimeFailure(f"inotify_init1: {inotify.last_error()}")
        self.dirs: dict[int, Path] = {}
        self._add_tree(self.upper)

    def _add(self, path: Path) -> None:
        wd = inotify.add_watch(self.fd, path, MASK)
        if wd >= 0:
            self.dirs[wd] = path

    def _add_tree(self, top: Path) -> None:
        self._add(top)
        for root, dirnames, _ in os.walk(top):
            for name in dirnames:
                self._add(Path(root) / name)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> UpperDirWatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _in_lower(self, rel: str) -> bool:
        return any(os.path.lexists(low / rel) for low in self.lowers)

    def _new_dir(self, path: Path) -> list[dict]:
        """Watch a directory that just appeared, and report what it already holds.

        Copy-up creates the parent directories first, then the file: the file
        may land before the new directory's watch exists.
        """
        self._add_tree(path)
        found = []
        for root, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                mask = IN_CREATE | (IN_ISDIR if name in dirnames else 0)
                change = self._classify(mask, Path(root) / name)
                if change:
                    found.append(change)
        return found

    def _classify(self, mask: int, path: Path) -> dict | None:
        rel = str(path.relative_to(self.upper))
        event = {"path": "/" + rel, "time": time.time(), "dir": bool(mask & IN_ISDIR)}
        if mask & (IN_DELETE | IN_MOVED_FROM):
            return {**event, "kind": "removed"}
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None  # came and went before we looked
        if mask & (IN_CREATE | IN_MOVED_TO):
            if is_whiteout(st):
                return {**event, "kind": "whiteout"}
            if self._in_lower(rel):
                return {**event, "kind": "copy-up"}
            return {**event, "kind": "added"}
        if mask & IN_CLOSE_WRITE:
            return {**event, "kind": "written"}
        if mask & IN_ATTRIB and not (mask & IN_ISDIR):
            return {**event, "kind": "attrib"}
        return None

    def poll(self, timeout: float = 0.0) -> list[dict]:
        """Changes seen within ``timeout`` seconds (returns as soon as there are some)."""
        if self.fd < 0:
            return []
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        out, off = [], 0
        while off + _HEADER.size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, off)
            name = data[off + _HEADER.size : off + _HEADER.size + length].rstrip(b"\0")
            off += _HEADER.size + length
            base = self.dirs.get(wd)
            if base is None or not name:
                continue
            path = base / os.fsdecode(name)
            change = self._classify(mask, path)
            if change:
                out.append(change)
                if (
                    change["kind"] != "removed"
                    and change["dir"]
                    and mask & (IN_CREATE | IN_MOVED_TO)
                ):
                    out += self._new_dir(path)
        return out

    def stream(self, duration: float, tick: float = 0.5) -> Iterator[dict]:
        """Yield changes for ``duration`` seconds (for a worker's streaming op)."""
        end = time.monotonic() + duration
        while (left := end - time.monotonic()) > 0:
            yield from self.poll(min(tick, left))
