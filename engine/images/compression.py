"""Layer compression: plain tar, gzip and zstd, told apart by their magic bytes.

OCI layers come as ``tar``, ``tar+gzip`` or ``tar+zstd``. The media type says
which, but registries and archives lie or are vague (Docker's schema2 calls
every layer ``tar.gzip``), so the bytes decide: gzip starts ``1f 8b``, zstd
``28 b5 2f fd``, anything else is read as a tar stream. Readers here are
streams, so a 1 GB layer never sits in memory, and :class:`HashingReader`
computes the uncompressed digest (the layer's *diff ID*) on the way through.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from typing import IO

import zstandard

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20


def detect(head: bytes) -> str:
    """"gzip", "zstd" or "tar" from the first bytes of a layer blob."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "tar"


class _GzipStream:
    """A fast gzip reader (zlib directly; handles concatenated members)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.buf = b""
        self.eof = False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        # Pieces of at most the bytes still wanted, joined once: a 1 MiB read copies
        # its bytes once, not three times (append, slice out, slice off).
        parts = [self.buf] if self.buf else []
        have = len(self.buf)
        self.buf = b""
        while have < n and not self.eof:
            if self.d.eof:
                rest = self.d.unused_data or self.raw.read(CHUNK)
                if not rest.strip(b"\x00"):  # end of stream, or zero padding after it
                    self.eof = True
                    break
                self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # a concatenated member
                data = rest
            else:
                data = self.d.unconsumed_tail or self.raw.read(CHUNK)
                if not data:
                    raise EOFError("compressed layer is truncated (gzip stream ends early)")
            # max_length bounds memory: a "gzip bomb" is decompressed a chunk at a time.
            piece = self.d.decompress(data, n - have)
            if piece:
                parts.append(piece)
                have += len(piece)
        out = parts[0] if len(parts) == 1 else b"".join(parts)
        if len(out) > n:  # only from an earlier read's leftover
            out, self.buf = out[:n], out[n:]
        return out


def open_decompressed(raw: IO[bytes]) -> IO[bytes]:
    """Wrap a (possibly compressed) layer stream in a reader of its tar bytes."""
    head = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
    if not head:
        raise ValueError("open_decompressed needs a peekable stream (io.BufferedReader)")
    kind = detect(head)
    if kind == "gzip":
        return _GzipStream(raw)  # type: ignore[return-value]
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_size=CHUNK)
    return raw


class HashingReader:
    """Pass reads through, hashing and counting what went by."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.sha.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def gzip_writer(dest: IO[bytes], level: int = 1) -> gzip.GzipFile:
    """A gzip stream for layers estiba makes (level 1: fast, still ~3x smaller than tar)."""
    return gzip.GzipFile(fileobj=dest, mode="wb", compresslevel=level, mtime=0)
