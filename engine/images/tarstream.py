"""A small, fast, streaming reader of tar headers (ustar, PAX and GNU long names).

Why not ``tarfile``? It is correct, but in stream mode it costs ~150 µs of
Python per member, which made unpacking a 20,000-file layer 3x slower than
GNU tar. A layer applier needs only a few things from each header — name,
type, mode, owners, size, mtime, link target, PAX records — so this reader
parses exactly those, from a buffer refilled 1 MiB at a time.

The refills come from a helper thread that reads (and so decompresses) them
and hashes them (the diff ID): zlib, zstd and hashlib all release the GIL, so
that work runs beside this thread, which parses headers and creates files and
is the busier of the two. Pieces are handed over as the decompressor makes
them, cut at block boundaries, so no big buffer is copied to join another.
Headers are parsed with
one ``struct`` call and ``int(field, 8)`` on the fast path; only a field that
is not plain octal goes to the careful parser.

The pipeline allocates a fresh 1 MiB buffer for every piece it decompresses,
and glibc's default is to hand freed memory back to the kernel as soon as 2 MiB
of it lie free at the top of a heap; the next buffer then faults in fresh,
zeroed pages, one fault per 4 KiB, which on a VM cost more CPU than the
decompression itself. So the first reader asks glibc (:func:`keep_freed_memory`)
to keep up to 64 MiB free per heap and to serve buffers under 8 MiB from its
heaps: the pages are reused, and the process keeps no more than its peak.

Hostile input is expected: checksums are verified, numbers must be octal or
GNU base-256, PAX records must be well formed, and sizes are bounded by what
the stream really holds. Sparse files (GNU ``S`` and PAX ``GNU.sparse``) are
refused: no real layer needs them.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import os
import queue
import select
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import IO

BLOCK = 512
REFILL = 1 << 20

REG, AREG, LNK, SYM, CHR, BLK = b"0", b"\0", b"1", b"2", b"3", b"4"
DIR, FIFO, CONT = b"5", b"6", b"7"
PAX, GLOBAL_PAX, GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE = b"x", b"g", b"L", b"K", b"S"
REG_TYPES = (REG, AREG, CONT)
HEADER_ONLY = (LNK, SYM, DIR, CHR, BLK, FIFO)
EXTENDED = (PAX, GLOBAL_PAX, GNU_LONGNAME, GNU_LONGLINK)
_ZERO_BLOCK = bytes(BLOCK)
#: name mode uid gid size mtime chksum type linkname magic+version (8), then uname and
#: gname (skipped), devmajor and devminor (skipped: see _DEVICES), prefix
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s64x16x155s")
_DEVICES = struct.Struct("329x8s8s")


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_malloc_tuned = False


def keep_freed_memory() -> None:
    """Have glibc reuse freed big buffers rather than return them (once per process)."""
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, 8 << 20)
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)


class TarFormatError(ValueError):
    """The stream is not a well-formed tar archive."""


@dataclass(slots=True)
class Member:
    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: float
    linkname: str
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, bytes] = field(default_factory=dict)

    def isreg(self) -> bool:
        return self.type in (REG, AREG, CONT)

    def isdir(self) -> bool:
        return self.type == DIR

    def issym(self) -> bool:
        return self.type == SYM

    def islnk(self) -> bool:
        return self.type == LNK

    def ischr(self) -> bool:
        return self.type == CHR

    def isblk(self) -> bool:
        return self.type == BLK

    def isfifo(self) -> bool:
        return self.type == FIFO


def _num(field_: bytes, what: str) -> int:
    if field_ and field_[0] & 0x80:  # GNU base-256
        value = int.from_bytes(field_[1:], "big")
        if field_[0] & 0x40:
            value -= 1 << (8 * (len(field_) - 1))
        return value
    text = field_.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"bad {what} field {bytes(field_)!r}") from None


def _str(field_: bytes) -> str:
    return field_.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _parse_pax(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos:pos + 1] == b"\0":
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise TarFormatError("bad PAX record (no length)")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError("bad PAX record length") from None
        if length <= 0 or pos + length > len(data) or data[pos + length - 1:pos + length] != b"\n":
            raise TarFormatError("bad PAX record (length out of range)")
        record = data[space + 1:pos + length - 1]
        key, eq, value = record.partition(b"=")
        if not eq:
            raise TarFormatError("bad PAX record (no '=')")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return out


class Channel:
    """A FIFO from threads to one consumer thread, whose wake-ups happen outside the GIL.

    ``queue.Queue`` and ``SimpleQueue`` wake a sleeping consumer by releasing a
    lock: a futex wake made while holding the GIL. On a two-vCPU VM the woken
    thread often preempts its waker right there and then waits for the GIL the
    waker still holds; in a pull (four layers, a dozen threads) ``Queue.put``'s
    ``notify`` was the biggest holder of the GIL, and every file write waited
    behind it. Here the consumer sleeps in ``poll`` on an eventfd and a producer
    signals with ``eventfd_write``, both system calls made without the GIL, and
    only when the consumer has said it is about to sleep.
    """

    def __init__(self, wake_at: int = 1) -> None:
        #: wake a sleeping consumer only once this many items wait: it then takes them in
        #: a row, rather than being woken (a cross-CPU wake-up on a VM) for each one
        self.wake_at = wake_at
        self.items: collections.deque = collections.deque()
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self.sleeping = False

    def put(self, item: object, wake: bool = False) -> None:
        """Queue ``item``; ``wake`` wakes the consumer even below ``wake_at`` (the last)."""
        self.items.append(item)
        if self.sleeping and (wake or len(self.items) >= self.wake_at):
            os.eventfd_write(self.fd, 1)

    def get(self, timeout: float | None = None) -> object:
        """The next item; ``queue.Empty`` after ``timeout`` seconds without one."""
        items = self.items
        if items:
            return items.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                self.sleeping = True
                if items:  # put between the first look and ``sleeping``
                    return items.popleft()
                ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
                if self.poller.poll(ms):
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(self.fd)
                elif deadline is not None and time.monotonic() >= deadline and not items:
                    raise queue.Empty
        finally:
            self.sleeping = False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # also at interpreter exit
            self.close()


class _Pump(threading.Thread):
    """Reads (and thereby decompresses) the stream ahead of the parser, and hashes it.

    Hashing here rather than on a third thread saves a hand-off per piece (and a
    thread per layer, when four layers unpack at once on two cores): hashlib
    releases the GIL, so the parser runs meanwhile all the same.

    A stream with ``readinto`` (ISA-L's gzip reader, a file) fills buffers from a
    small pool, which the parser hands back when it has moved past them: no
    buffer is allocated, zeroed or copied per piece (other streams' pieces take a
    token from the same pool, which bounds what is queued). The pieces the parser
    gets are cut at 512-byte blocks (a small carried remainder is joined to the
    start of the next), so a tar header never straddles two of them and the
    parser never joins big buffers either.
    """

    #: buffers per reader: the parser's, a few queued, the one being filled
    DEPTH = 6
    #: Buffers of finished readers, for the next ones (no fresh pages to zero and fault).
    _spare: list[bytearray] = []
    _spare_lock = threading.Lock()

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(name="tar-pump", daemon=True)
        self.stream = stream
        #: (piece, the pool buffer or token it holds, or None), then None at the end
        self.q = Channel()
        # The pump sleeps for a free buffer only when the parser holds one and the rest
        # are queued for it; the parser sleeps only once it has freed all it took, so
        # waking the pump for half the pool cannot leave both asleep.
        self.free = Channel(wake_at=self.DEPTH // 2)
        self.readinto = getattr(stream, "readinto", None)
        if self.readinto is not None:
            with self._spare_lock:
                for _ in range(self.DEPTH):
                    self.free.put(self._spare.pop() if self._spare else bytearray(REFILL))
        else:
            for _ in range(self.DEPTH):
                self.free.put(_TOKEN)
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.sha = hashlib.sha256()
        self.count = 0
        self.carry = b""

    def recycle(self, buf: object) -> None:
        """The parser is done with the piece that held ``buf``."""
        self.free.put(buf)

    def _piece(self, chunk: bytes | memoryview, buf: object) -> None:
        """Hash ``chunk`` and queue it cut at a block boundary (``buf``: what it holds)."""
        self.sha.update(chunk)
        self.count += len(chunk)
        carry = self.carry
        if carry:  # complete the block the last piece ended inside
            k = BLOCK - len(carry)
            if len(chunk) < k:
                self.carry = carry + chunk
                self.recycle(buf)
                return
            self.q.put((carry + chunk[:k], None))
            chunk, self.carry = memoryview(chunk)[k:], b""
        cut = len(chunk) - len(chunk) % BLOCK
        if cut < len(chunk):
            self.carry = bytes(chunk[cut:])
            chunk = memoryview(chunk)[:cut]
        if cut:
            self.q.put((chunk, buf))
        else:
            self.recycle(buf)

    def _buffer(self) -> object | None:
        """A free pool buffer or token (None once told to stop)."""
        while not self.stop.is_set():
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def run(self) -> None:
        readinto, read = self.readinto, self.stream.read
        try:
            while (buf := self._buffer()) is not None:
                if readinto is not None:
                    n = readinto(buf)
                    chunk = memoryview(buf)[:n]
                else:
                    chunk = read(REFILL)
                if not chunk:
                    self.recycle(buf)
                    break
                self._piece(chunk, buf)
            if self.carry and not self.stop.is_set():
                self.q.put((self.carry, None))
        except BaseException as err:  # reported to the parser
            self.error = err
        finally:
            self.q.put(None, wake=True)

    def give_back(self) -> None:
        """After the thread ended: keep the pool's buffers for the next reader."""
        with self._spare_lock:
            while self.free.items:
                buf = self.free.items.popleft()
                if isinstance(buf, bytearray) and len(self._spare) < 4 * self.DEPTH:
                    self._spare.append(buf)
        self.free.close()
        self.q.close()


_TOKEN = object()


class TarReader:
    """Iterate members; read each regular member's data with :meth:`read_data` chunks."""

    def __init__(self, stream: IO[bytes]) -> None:
        keep_freed_memory()
        self.pump = _Pump(stream)
        self.pump.start()
        self.buf = b""
        self._view = memoryview(self.buf)
        self.pos = 0
        self.eof = False
        self._pending = 0    # data bytes of the current member not yet consumed
        self._padding = 0
        self._global: dict[str, bytes] = {}
        self._held: object | None = None  # the pool buffer (or token) ``buf`` holds

    # ------------------------------------------------------------------ buffer
    def _fill(self) -> bool:
        if self.eof:
            return False
        item = self.pump.q.get()
        # Pieces end on block boundaries, so only a long extended header leaves a rest.
        rest = bytes(self.buf[self.pos:])
        if self._held is not None:  # nothing points into the last buffer any more
            self.pump.recycle(self._held)
            self._held = None
        if item is None:
            self.eof = True
            self.buf, self.pos = rest, 0
            self._view = memoryview(self.buf)
            if self.pump.error is not None:
                raise self.pump.error
            return False
        chunk, self._held = item
        self.buf = rest + chunk if rest else chunk
        self._view = memoryview(self.buf)
        self.pos = 0
        return True

    def _take(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            if not self._fill():
                raise TarFormatError("unexpected end of the tar stream")
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def _skip(self, n: int) -> None:
        while n > 0:
            avail = len(self.buf) - self.pos
            if avail == 0:
                if not self._fill():
                    raise TarFormatError("unexpected end of the tar stream")
                continue
            step = min(avail, n)
            self.pos += step
            n -= step

    def read_data(self, limit: int = REFILL) -> memoryview:
        """The next piece (at most ``limit`` bytes) of the current member's data."""
        if self._pending <= 0:
            return memoryview(b"")
        pos, pending = self.pos, self._pending
        avail = len(self.buf) - pos
        if pending <= limit and pending + self._padding <= avail:
            # The common case: all of it is in the buffer. Its padding is skipped too.
            self.pos = pos + pending + self._padding
            self._pending = self._padding = 0
            return self._view[pos:pos + pending]
        if avail == 0:
            if not self._fill():
                raise TarFormatError("unexpected end of the tar stream inside a file")
            pos, avail = self.pos, len(self.buf) - self.pos
        step = min(pending, avail, limit)
        self.pos = pos + step
        self._pending = pending - step
        return self._view[pos:pos + step]

    def _finish_member(self) -> None:
        if self._pending:
            self._skip(self._pending)
            self._pending = 0
        if self._padding:
            self._skip(self._padding)
            self._padding = 0

    # ------------------------------------------------------------------ members
    def __iter__(self):
        return self

    def __next__(self) -> Member:
        if self._pending or self._padding:
            self._finish_member()
        pax: dict[str, bytes] | None = None
        longname = longlink = None
        while True:
            if len(self.buf) - self.pos < BLOCK and not self._fill_to(BLOCK):
                raise StopIteration  # end of stream without the two zero blocks: tolerated
            pos = self.pos
            buf = self.buf
            self.pos = pos + BLOCK
            # Fields straight from the buffer: no copy of the block, no objects for the
            # owner names or device numbers unless they are needed.
            (f_name, f_mode, f_uid, f_gid, f_size, f_mtime, f_chk, typ, f_link, magic,
             f_prefix) = _HEADER.unpack_from(buf, pos)
            if not f_chk[0] and buf[pos:pos + BLOCK] == _ZERO_BLOCK:
                raise StopIteration
            try:  # the fast path: plain octal, NUL- or space-terminated
                stored = int(f_chk.rstrip(b"\0 "), 8)
                mode = int(f_mode.rstrip(b"\0 "), 8)
                uid = int(f_uid.rstrip(b"\0 "), 8)
                gid = int(f_gid.rstrip(b"\0 "), 8)
                size = int(f_size.rstrip(b"\0 "), 8)
                mtime = int(f_mtime.rstrip(b"\0 "), 8)
            except ValueError:
                stored, mode = _num(f_chk, "checksum"), -1
            # The byte sum, in C: Adler-32's low half started at 0 is the sum of the bytes
            # modulo 65521, exact for 256 bytes (at most 65280).
            view = self._view
            unsigned = ((zlib.adler32(view[pos:pos + 256], 0) & 0xFFFF)
                        + (zlib.adler32(view[pos + 256:pos + BLOCK], 0) & 0xFFFF)
                        - sum(f_chk) + 8 * 32)
            if stored != unsigned:
                signed = unsigned - 256 * sum(1 for b in buf[pos:pos + BLOCK] if b > 127)
                if stored != signed:
                    raise TarFormatError("header checksum mismatch (not a tar stream, or corrupt)")
            if mode == -1:  # checked only now, so garbage is reported as a bad checksum
                mode, uid, gid = _num(f_mode, "mode"), _num(f_uid, "uid"), _num(f_gid, "gid")
                size, mtime = _num(f_size, "size"), _num(f_mtime, "mtime")
            if size < 0:
                raise TarFormatError("negative size")
            if typ in EXTENDED:
                if size > 16 * 1024 * 1024:
                    raise TarFormatError("extended header larger than 16 MiB")
                data = self._take(size)
                self._skip(-size % BLOCK)
                if typ == PAX:
                    if pax is None:
                        pax = {}
                    pax.update(_parse_pax(data))
                elif typ == GLOBAL_PAX:
                    self._global.update(_parse_pax(data))
                elif typ == GNU_LONGNAME:
                    longname = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                else:
                    longlink = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue
            if typ == GNU_SPARSE:
                raise TarFormatError("sparse files are not supported in layers")
            break
        if self._global:
            pax = {**self._global, **(pax or {})}
        if longname is not None:
            name = longname
        else:
            name = f_name.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            if magic[:6] == b"ustar\0" and f_prefix[0]:
                name = _str(f_prefix) + "/" + name
        if longlink is not None:
            linkname = longlink
        elif f_link[0]:
            linkname = f_link.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        else:
            linkname = ""
        member = Member(name, typ, mode, uid, gid, size, mtime, linkname, 0, 0,
                        pax if pax is not None else {})
        if typ in (CHR, BLK):
            f_major, f_minor = _DEVICES.unpack_from(buf, pos)
            member.devmajor, member.devminor = _num(f_major, "devmajor"), _num(f_minor, "devminor")
        if pax:
            self._apply_pax(member, pax)
        if typ in REG_TYPES:
            self._pending = member.size
            self._padding = -member.size % BLOCK
        elif typ in HEADER_ONLY:
            # Header-only types carry no data whatever their size field says (as Go's
            # archive/tar and Python's tarfile read them).
            self._pending, self._padding = 0, 0
        else:
            self._pending, self._padding = member.size, -member.size % BLOCK
        return member

    def _fill_to(self, n: int) -> bool:
        while len(self.buf) - self.pos < n:
            if not self._fill():
                return False
        return True

    @staticmethod
    def _apply_pax(m: Member, pax: dict[str, bytes]) -> None:
        m.pax = pax
        try:
            if "path" in pax:
                m.name = pax["path"].decode("utf-8", "surrogateescape")
            if "linkpath" in pax:
                m.linkname = pax["linkpath"].decode("utf-8", "surrogateescape")
            if "size" in pax:
                m.size = int(pax["size"])
            if "uid" in pax:
                m.uid = int(pax["uid"])
            if "gid" in pax:
                m.gid = int(pax["gid"])
            if "mtime" in pax:
                m.mtime = float(pax["mtime"])
        except ValueError:
            raise TarFormatError(f"bad PAX value in the header of {m.name!r}") from None
        if m.size < 0 or m.uid < 0 or m.gid < 0:
            raise TarFormatError(f"negative PAX value in the header of {m.name!r}")
        if any(k.startswith("GNU.sparse") for k in pax):
            raise TarFormatError("sparse files are not supported in layers")

    # ------------------------------------------------------------------ the end
    def finish(self) -> tuple[str, int]:
        """Drain the stream; return (sha256 digest of the tar bytes, their count)."""
        while self._fill():
            self.buf, self.pos = b"", 0
        self._view = memoryview(self.buf)
        self.pump.join()
        if self._held is not None:
            self.pump.recycle(self._held)
            self._held = None
        self.pump.give_back()
        if self.pump.error is not None:
            raise self.pump.error
        return "sha256:" + self.pump.sha.hexdigest(), self.pump.count

    def close(self) -> None:
        """Stop the pump (after an error); safe to call twice."""
        self.pump.stop.set()
        while not self.eof:
            try:
                if self.pump.q.get(timeout=0.01) is None:
                    break
            except queue.Empty:
                if not self.pump.is_alive():
                    break
        self.pump.join(5)
        if not self.pump.is_alive():
            self.pump.q.close()
            self.pump.free.close()
