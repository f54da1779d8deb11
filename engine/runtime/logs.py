"""Container logs in Docker's ``json-file`` shape: one JSON object per line.

What a container writes to stdout and stderr is kept by its supervisor as
lines like ``{"log":"hello\\n","stream":"stdout","time":"2024-...Z"}`` — the
format of Docker's default logging driver, so the files read the same way
and ``docker logs`` semantics (since, until, tail, timestamps, follow) apply
to them. The file rotates by size (``<id>-json.log.1``, ``.2`` ...) so a
chatty container cannot fill the disk. Readers walk the rotated files oldest
first and, to follow, keep reading the live file, reopening it when the
supervisor rotates it.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.runtime.store import parse_rfc3339, rfc3339

DEFAULT_MAX_SIZE = 20 * 1024 * 1024
DEFAULT_MAX_FILES = 3
#: Docker splits a line longer than this into several log entries.
MAX_LINE = 16 * 1024


@dataclass(frozen=True)
class LogEntry:
    stream: str  # "stdout" | "stderr"
    time_nano: int
    data: bytes

    def format(self, timestamps: bool = False) -> bytes:
        """The entry as ``docker logs`` prints it."""
        return (rfc3339(self.time_nano).encode() + b" " + self.data) if timestamps else self.data


class JsonLogWriter:
    """Append entries to ``<id>-json.log``, rotating by size. Used by one supervisor only."""

    def __init__(self, path: Path, max_size: int = DEFAULT_MAX_SIZE,
                 max_files: int = DEFAULT_MAX_FILES) -> None:
        self.path = Path(path)
        self.max_size = max(int(max_size), 1024)
        self.max_files = max(int(max_files), 1)
        # Opened at the first entry (kept open for the container's life): a container
        # that writes nothing costs no file (an inode is about half a millisecond on a
        # busy ext4); readers take a missing file as an empty log.
        self._fh: Any = None
        self._size = 0
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def _open(self) -> Any:
        if self._fh is None:
            self._fh = open(self.path, "ab")  # noqa: SIM115
            self._size = self._fh.tell()
        return self._fh

    def write(self, stream: str, data: bytes) -> None:
        """Record raw output of ``stream``: one entry per complete line."""
        buf = self._partial.get(stream, b"") + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        for line in lines:
            self._emit(stream, line + b"\n")
        while len(rest) >= MAX_LINE:
            self._emit(stream, rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._partial[stream] = rest
        if self._fh is not None:
            self._fh.flush()

    def pending(self, stream: str) -> bytes:
        """What ``stream`` printed after its last newline: not in the log yet."""
        return self._partial.get(stream, b"")

    def flush_partial(self) -> None:
        """At the end of the output, a last line without newline is still an entry."""
        for stream, rest in self._partial.items():
            if rest:
                self._emit(stream, rest)
                self._partial[stream] = b""
        if self._fh is not None:
            self._fh.flush()

    def _emit(self, stream: str, data: bytes) -> None:
        line = json.dumps({"log": data.decode("utf-8", "replace"), "stream": stream,
                           "time": rfc3339()}, separators=(",", ":")).encode() + b"\n"
        fh = self._open()
        if self._size + len(line) > self.max_size and self._size > 0:
            self._rotate()
            fh = self._fh
        fh.write(line)
        self._size += len(line)

    def _rotate(self) -> None:
        self._fh.close()
        if self.max_files <= 1:
            self._fh = open(self.path, "wb")  # noqa: SIM115
            self._size = 0
            return
        for n in range(self.max_files - 1, 0, -1):
            src = self.path if n == 1 else self.path.with_name(f"{self.path.name}.{n - 1}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{n}"))
        self._fh = open(self.path, "ab")  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self.flush_partial()
        if self._fh is not None:
            self._fh.close()


def _parse(line: bytes) -> LogEntry | None:
    try:
        obj = json.loads(line)
        return LogEntry(obj.get("stream", "stdout"), parse_rfc3339(obj.get("time", "")),
                        obj.get("log", "").encode())
    except (ValueError, AttributeError, TypeError):
        return None


def _files(path: Path) -> list[Path]:
    """Rotated files oldest first, then the live one."""
    rotated = []
    n = 1
    while path.with_name(f"{path.name}.{n}").exists():
        rotated.append(path.with_name(f"{path.name}.{n}"))
        n += 1
    return [*reversed(rotated), path]


def read_logs(
    path: Path,
    *,
    follow: bool = False,
    since: float = 0,
    until: float | None = None,
    tail: int | None = None,
    stdout: bool = True,
    stderr: bool = True,
    still_running: Callable[[], bool] | None = None,
    poll: float = 0.05,
) -> Iterator[LogEntry]:
    """Entries of a json-file log, filtered as ``docker logs`` does.

    ``since``/``until`` are Unix times in seconds (fractions allowed); ``tail``
    keeps the last N entries; ``follow`` keeps yielding new entries until
    ``still_running()`` turns False and the file is drained.
    """
    since_ns = int(since * 1e9) if since else 0
    until_ns = int(until * 1e9) if until else None
    streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}

    def wanted(entry: LogEntry | None) -> bool:
        return (entry is not None and entry.stream in streams and entry.time_nano >= since_ns
                and (until_ns is None or entry.time_nano <= until_ns))

    def entries_of(fh) -> Iterator[LogEntry]:
        for line in fh:
            if not line.endswith(b"\n"):
                fh.seek(-len(line), os.SEEK_CUR)  # half-written: read it again later
                return
            entry = _parse(line)
            if wanted(entry):
                yield entry  # type: ignore[misc]

    live_inode = None
    live_fh = None
    backlog: Iterator[LogEntry]
    collected: deque[LogEntry] | list[LogEntry] = (
        deque(maxlen=tail) if tail is not None and tail >= 0 else [])
    if tail == 0:
        collected = deque(maxlen=0)
    for f in _files(path):
        try:
            fh = open(f, "rb")  # noqa: SIM115
        except FileNotFoundError:
            continue
        if f == path:
            live_fh, live_inode = fh, os.fstat(fh.fileno()).st_ino
            collected.extend(entries_of(fh))
        else:
            with fh:
                collected.extend(entries_of(fh))
    backlog = iter(list(collected))
    try:
        yield from backlog
        if not follow:
            return
        if live_fh is None:
            live_fh = open(path, "ab+")  # noqa: SIM115
            live_fh.seek(0)
            live_inode = os.fstat(live_fh.fileno()).st_ino
        while True:
            got = False
            for entry in entries_of(live_fh):
                got = True
                yield entry
            if until_ns is not None and time.time_ns() > until_ns:
                return
            try:
                rotated = os.stat(path).st_ino != live_inode
            except FileNotFoundError:
                rotated = False
            if rotated:
                yield from entries_of(live_fh)
                live_fh.close()
                live_fh = open(path, "rb")  # noqa: SIM115
                live_inode = os.fstat(live_fh.fileno()).st_ino
                continue
            if not got:
                if still_running is not None and not still_running():
                    yield from entries_of(live_fh)
                    return
                time.sleep(poll)
    finally:
        if live_fh is not None:
            live_fh.close()
