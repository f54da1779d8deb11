"""Content-addressable blobs, as the OCI image layout stores them.

Every manifest, config and compressed layer is a file ``blobs/sha256/<hex>``
named by the SHA-256 of its bytes, so identical content is stored once and
corruption is detectable by re-hashing. A blob is written to ``tmp/`` first
and renamed into place only when complete and (if a digest was expected)
verified: ``rename`` is atomic, so after a kill -9 a blob is either whole or
absent, and the leftovers in ``tmp/`` carry the writer's pid so the next
store opening can tell an abandoned file from one still being written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import IO

from engine.errors import InvalidArgument

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_digest(digest: str, what: str = "digest") -> str:
    """Return ``digest`` if it is ``sha256:<64 hex>``; else raise InvalidArgument."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise InvalidArgument(f"invalid {what}: {digest!r} (expected sha256:<64 hex digits>)")
    return digest


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: object) -> bytes:
    """JSON bytes for configs and manifests estiba writes (stable, so digests are stable)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def tmp_name(prefix: str = "tmp") -> str:
    return f".{prefix}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def pid_of_tmp(name: str) -> int | None:
    """The writer's pid from a name made by :func:`tmp_name` (None if not one of ours)."""
    parts = name.split("-")
    if len(parts) >= 3 and parts[-2].isdigit():
        return int(parts[-2])
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter:
    """A temp file that hashes what is written and becomes a blob on ``commit``."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.path = store.tmp / tmp_name("blob")
        self.fh: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed in commit/abort
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.fh.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.fh.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()

    def commit(self, expected: str | None = None) -> str:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        digest = self.digest
        if expected is not None and expected != digest:
            self.abort()
            raise InvalidArgument(f"blob digest mismatch: expected {expected}, got {digest}")
        self.store.adopt(self.path, digest)
        return digest

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self.fh.closed:
            self.abort()


class BlobStore:
    """``blobs/sha256/<hex>`` under an OCI layout root, plus a ``tmp/`` for writers."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = Path(root)
        self.dir = self.root / "blobs" / "sha256"
        self.tmp = Path(tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.dir / digest.split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise InvalidArgument(f"blob {digest} is missing from the store") from None

    def open(self, digest: str) -> IO[bytes]:
        return open(self.path(digest), "rb")

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        if not self.has(digest):
            with self.writer() as w:
                w.write(data)
                w.commit(digest)
        return digest

    def adopt(self, path: Path, digest: str) -> None:
        """Rename a complete, verified temp file into place (atomic)."""
        os.chmod(path, 0o644)
        os.replace(path, self.path(digest))

    def remove(self, digest: str) -> int:
        p = self.path(digest)
        try:
            size = p.stat().st_size
            p.unlink()
            return size
        except FileNotFoundError:
            return 0

    def all(self) -> list[str]:
        names = ("sha256:" + p.name for p in self.dir.iterdir())
        return [d for d in names if DIGEST_RE.match(d)]
