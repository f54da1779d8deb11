"""Layer compression: plain tar, gzip and zstd, told apart by their magic bytes.

OCI layers come as ``tar``, ``tar+gzip`` or ``tar+zstd``. The media type says
which, but registries and archives lie or are vague (Docker's schema2 calls
every layer ``tar.gzip``), so the bytes decide: gzip starts ``1f 8b``, zstd
``28 b5 2f fd``, anything else is read as a tar stream. Readers here are
streams, so a 1 GB layer never sits in memory, and :class:`HashingReader`
computes the uncompressed digest (the layer's *diff ID*) on the way through.
gzip is inflated by ISA-L (the ``isal`` package) where it is installed: the same
deflate format, about three times zlib's speed, and inflating is most of the CPU
a pull spends; zlib takes over on a host without it. Layers go through ISA-L's
own gzip reader (:class:`_IsalGzipStream`), which inflates into the caller's
buffer with one release of the GIL per buffer.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from typing import IO

import zstandard

try:  # ISA-L's inflate: about 3x zlib's speed on this machine class, same stream format
    from isal import isal_zlib as _inflate
    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _inflate.error)
except ImportError:  # pragma: no cover - a host without the wheel falls back to zlib
    _inflate = zlib  # type: ignore[assignment]
    _INFLATE_ERRORS = (zlib.error,)
#: ISA-L's gzip reader in C (isal >= 1.6): members, header, inflate, CRC and trailer in one
#: call that fills the caller's buffer without the GIL.
_GzipReader = getattr(_inflate, "_GzipReader", None)

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


#: A gzip member header longer than this (a file name without its NUL) is refused.
MAX_GZIP_HEADER = 1 << 20


def _gzip_header_len(buf: bytes) -> int:
    """Length of the gzip member header ``buf`` starts with; 0 if more bytes are needed."""
    if len(buf) < 10:
        return 0
    if buf[:2] != GZIP_MAGIC or buf[2] != 8:
        raise zlib.error("incorrect header check (not a gzip member)")
    flags, pos = buf[3], 10
    if flags & 0xE0:
        raise zlib.error("unknown gzip header flags set")
    if flags & 4:  # FEXTRA: a length, then that many bytes
        if len(buf) < pos + 2:
            return 0
        pos += 2 + int.from_bytes(buf[pos:pos + 2], "little")
    for flag in (8, 16):  # FNAME, FCOMMENT: NUL-terminated
        if flags & flag:
            end = buf.find(b"\0", pos)
            if end < 0:
                return 0
            pos = end + 1
    if flags & 2:  # FHCRC
        pos += 2
    return pos if len(buf) >= pos else 0


class _GzipStream:
    """A fast gzip reader (zlib directly; handles concatenated members).

    With ``check_crc=False`` the members are inflated as raw deflate and the
    header and trailer parsed here: the trailer's length is checked, its CRC-32
    is not. That is for callers that verify a digest of the output anyway (a
    layer's diff ID): computing the CRC was a tenth of an unpack's CPU time.
    """

    def __init__(self, raw: IO[bytes], check_crc: bool = True) -> None:
        self.raw = raw
        self.check_crc = check_crc
        self.d: zlib._Decompress | None = None  # the current member's decompressor
        self.rest = b""       # compressed bytes read but not given to a decompressor yet
        self.out = 0          # bytes the current member inflated to (its trailer's ISIZE)
        self.first = True
        self.buf = b""
        self.eof = False

    def _start_member(self) -> bool:
        """Set up the next member's decompressor; False at the end (or zero padding)."""
        rest = self.rest or self.raw.read(CHUNK)
        if not self.first and not rest.strip(b"\x00"):
            return False
        self.first = False
        if self.check_crc:
            self.d = _inflate.decompressobj(16 + zlib.MAX_WBITS)
        else:
            while not (size := _gzip_header_len(rest)):
                if len(rest) > MAX_GZIP_HEADER:
                    raise zlib.error("gzip header too long")
                more = self.raw.read(CHUNK)
                if not more:
                    raise EOFError("compressed layer is truncated (inside a gzip header)")
                rest += more
            rest = memoryview(rest)[size:]  # the rest of the chunk, not a copy of it
            self.d = _inflate.decompressobj(-zlib.MAX_WBITS)
        self.rest, self.out = rest, 0
        return True

    def _end_member(self) -> None:
        rest = self.d.unused_data
        if not self.check_crc:  # zlib checked the trailer itself otherwise
            while len(rest) < 8:
                more = self.raw.read(CHUNK)
                if not more:
                    raise EOFError("compressed layer is truncated (inside a gzip trailer)")
                rest += more
            if int.from_bytes(rest[4:8], "little") != self.out & 0xFFFFFFFF:
                raise zlib.error("incorrect length check (gzip trailer)")
            rest = rest[8:]
        self.rest, self.d = rest, None

    def _inflate(self, n: int) -> bytes:
        """Feed the current member's decompressor once; at most ``n`` bytes out."""
        if self.d.unconsumed_tail:
            data = self.d.unconsumed_tail
        elif self.rest:
            data, self.rest = self.rest, b""
        else:
            data = self.raw.read(CHUNK)
            if not data:
                raise EOFError("compressed layer is truncated (gzip stream ends early)")
        # max_length bounds memory: a "gzip bomb" is decompressed a chunk at a time.
        try:
            piece = self.d.decompress(data, n)
        except _INFLATE_ERRORS as exc:  # one error class for callers, whichever inflates
            raise zlib.error(str(exc)) from None
        self.out += len(piece)
        return piece

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
            if self.d is None:
                if not self._start_member():
                    self.eof = True
                    break
            elif self.d.eof:
                self._end_member()
                continue
            piece = self._inflate(n - have)
            if piece:
                parts.append(piece)
                have += len(piece)
        out = parts[0] if len(parts) == 1 else b"".join(parts)
        if len(out) > n:  # only from an earlier read's leftover
            out, self.buf = out[:n], out[n:]
        return out


class _IsalGzipStream:
    """gzip inflated by ISA-L's own reader, straight into the caller's buffer.

    ``decompress()`` of a decompressor object grows its output from 16 KiB by
    doubling: seven ``realloc`` copies and seven trips through the GIL for each
    MiB, which four layers unpacking at once queue on. ``readinto`` here is one
    call per buffer, filled whole (short only at the end), that holds the GIL
    only while it asks ``raw.readinto`` for more input. The CRC-32 is always
    checked: ISA-L computes it while inflating, for next to nothing.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.r = _GzipReader(raw, CHUNK)

    def readinto(self, b) -> int:
        try:
            return self.r.readinto(b)
        except EOFError:
            raise EOFError("compressed layer is truncated (gzip stream ends early)") from None
        except (gzip.BadGzipFile, OverflowError, *_INFLATE_ERRORS) as exc:
            raise zlib.error(str(exc)) from None  # zlib's class, whichever inflates

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        buf = bytearray(n)
        got = self.readinto(buf)
        del buf[got:]
        return bytes(buf)


def open_decompressed(raw: IO[bytes], check_crc: bool = True) -> IO[bytes]:
    """Wrap a (possibly compressed) layer stream in a reader of its tar bytes.

    ``check_crc=False`` skips gzip's CRC-32, for a caller that checks the diff ID
    (where zlib inflates: ISA-L checks it for free).
    """
    head = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
    if not head:
        raise ValueError("open_decompressed needs a peekable stream (io.BufferedReader)")
    kind = detect(head)
    if kind == "gzip":
        if _GzipReader is not None:
            return _IsalGzipStream(raw)  # type: ignore[return-value]
        return _GzipStream(raw, check_crc)  # type: ignore[return-value]
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
