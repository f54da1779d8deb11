"""The build cache: which image a build step produced last time.

A step is reused when nothing that decides its result changed: the parent
image, the instruction with its arguments *after* substitution, the build
args it could see, and for COPY/ADD a digest of the content and metadata of
every source. All of that is hashed into one key; the index maps keys to
image IDs. The images themselves live in the image store (like Docker's
intermediate images), so a pruned image simply becomes a cache miss.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


def cache_key(*parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(blob.encode("utf-8", "surrogateescape")).hexdigest()


class BuildCache:
    """A JSON index ``key -> image id`` under the engine root, safe across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path.with_suffix(".lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def put(self, key: str, image_id: str) -> None:
        with self._locked():
            data = self._load()
            data[key] = image_id
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)

    def forget(self, key: str) -> None:
        with self._locked():
            data = self._load()
            if data.pop(key, None) is not None:
                tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(data))
                os.replace(tmp, self.path)
