"""The unpacker's fast paths give the same tree and diff ID as the careful ones.

The header parser reads plain octal with ``int(field, 8)`` and falls back to
the careful parser for anything else; file data that sits in the buffer is
written in one piece; the diff ID is hashed on the pump thread, whose pieces
are cut at 512-byte blocks whatever sizes the stream gives; gzip goes through
ISA-L's own reader (or zlib in pieces joined once). Each case here checks one
of those against what GNU tar and ``hashlib`` say.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from engine.errors import LayerRejected
from engine.images.compression import _GzipStream
from engine.images.tarstream import TarReader
from tests.engine.images.conftest import entry, make_tar, unpack


def test_diff_id_and_sizes_over_many_refills(dest: Path) -> None:
    """Files straddling the 1 MiB refills, empty files, a 3 MiB file: bytes and digest exact."""
    rng = __import__("random").Random(5)
    files = {f"d{i % 7}/f{i}": rng.randbytes(rng.choice((0, 1, 511, 512, 513, 70_000,
                                                             1 << 20, 3 << 20)))
             for i in range(60)}
    entries = [entry(f"d{i}", "dir") for i in range(7)]
    entries += [entry(name, data=data) for name, data in files.items()]
    tar = make_tar(entries)
    result = unpack(tar, dest)
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert result.tar_size == len(tar)
    assert result.size == sum(len(d) for d in files.values())
    for name, data in files.items():
        assert (dest / name).read_bytes() == data


def test_gzip_layer_same_as_plain(workdir: Path) -> None:
    entries = [entry("a", "dir"), entry("a/big", data=os.urandom(2_500_000)),
               entry("a/small", data=b"x" * 100)]
    tar = make_tar(entries)
    plain, packed = workdir / "plain", workdir / "gz"
    plain.mkdir()
    packed.mkdir()
    r1 = unpack(tar, plain)
    r2 = unpack(gzip.compress(tar, 1), packed)
    assert r1.diff_id == r2.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert (packed / "a/big").read_bytes() == (plain / "a/big").read_bytes()


@pytest.mark.parametrize("check_crc", [True, False])
@pytest.mark.parametrize("sizes", [[1 << 20], [1], [7, 100_000, 1 << 20, 3], [1 << 23]])
def test_gzip_stream_reads_exact_sizes(sizes: list[int], check_crc: bool) -> None:
    """Reads return exactly what was asked (so tar blocks stay aligned) until the end,
    across concatenated members and zero padding after the last one; with zlib checking
    the trailers, or (check_crc=False) with the headers and trailers parsed by the reader."""
    data = os.urandom(1_500_000) + b"abc" * 400_000
    tail = b"second member " * 50_000
    named = io.BytesIO()  # a member header with a file name and a comment, as gzip(1) writes
    with gzip.GzipFile("layer.tar", "wb", fileobj=named, mtime=0) as gz:
        gz.write(tail)
    header = bytearray(named.getvalue())
    header[3] |= 0x10 | 0x04  # FCOMMENT and FEXTRA too: an extra field, then the comment
    fname_end = header.index(b"\0", 10) + 1
    header = (bytes(header[:10]) + b"\x04\x00XY\x00\x00" + bytes(header[10:fname_end])
              + b"a comment\0" + bytes(header[fname_end:]))
    blob = gzip.compress(data, 1) + gzip.compress(tail) + header + b"\0" * 100
    tail = tail * 2
    stream = _GzipStream(io.BytesIO(blob), check_crc)
    out, i = [], 0
    while len(out) < 3000:
        want = sizes[i % len(sizes)]
        i += 1
        chunk = stream.read(want)
        if not chunk:
            break
        out.append(chunk)
        if sum(map(len, out)) < len(data) + len(tail):
            assert len(chunk) == want
    got = b"".join(out)
    assert (data + tail).startswith(got)
    if sizes != [1]:
        assert got == data + tail


@pytest.mark.parametrize("check_crc", [True, False])
@pytest.mark.parametrize("cut", [5, 50_000, -4])
def test_gzip_truncated_is_an_error(check_crc: bool, cut: int) -> None:
    """Cut in the header, the deflate data or the trailer."""
    blob = gzip.compress(os.urandom(200_000))
    with pytest.raises(EOFError):
        _GzipStream(io.BytesIO(blob[:cut]), check_crc).read()


def test_gzip_without_crc_still_checks_the_length() -> None:
    """check_crc=False leaves the CRC to the caller's diff ID, but a wrong ISIZE is refused."""
    import zlib

    blob = bytearray(gzip.compress(os.urandom(100_000)))
    blob[-8] ^= 1  # the CRC: not checked
    assert len(_GzipStream(io.BytesIO(bytes(blob)), False).read()) == 100_000
    with pytest.raises(zlib.error):
        _GzipStream(io.BytesIO(bytes(blob)), True).read()
    blob[-1] ^= 1  # the length
    with pytest.raises(zlib.error):
        _GzipStream(io.BytesIO(bytes(blob)), False).read()


def _raw_header(name: bytes, mode: bytes, uid: bytes, size: bytes, mtime: bytes,
                typ: bytes = b"0") -> bytes:
    hdr = bytearray(512)
    hdr[0:len(name)] = name
    hdr[100:108] = mode
    hdr[108:116] = uid
    hdr[116:124] = b"0000000\0"
    hdr[124:136] = size
    hdr[136:148] = mtime
    hdr[156:157] = typ
    hdr[257:263] = b"ustar\0"
    hdr[263:265] = b"00"
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    return bytes(hdr)


def _members(data: bytes):
    reader = TarReader(io.BytesIO(data))
    try:
        out = [(m.name, m.mode, m.uid, m.size, m.mtime) for m in reader]
    finally:
        reader.close()
    return out


def test_header_fields_off_the_fast_path() -> None:
    """Space-terminated, unterminated, NUL-then-garbage and base-256 fields all parse."""
    base256_uid = b"\x80" + (70_000).to_bytes(7, "big")
    hdrs = [
        _raw_header(b"plain", b"0000644\0", b"0001750\0", b"00000000000\0", b"14524770000\0"),
        _raw_header(b"spaces", b" 000644 ", b"   1750 ", b"          0 ", b" 14524770000"),
        _raw_header(b"full", b"00000644", b"00001750", b"000000000000", b"014524770000"),
        _raw_header(b"garbage", b"644\0xyz\0", base256_uid, b"0\0junkjunk\0\0", b"0\0"),
    ]
    got = _members(b"".join(hdrs) + bytes(1024))
    mtime = 0o14524770000
    assert got == [("plain", 0o644, 0o1750, 0, mtime), ("spaces", 0o644, 0o1750, 0, mtime),
                   ("full", 0o644, 0o1750, 0, mtime), ("garbage", 0o644, 70_000, 0, 0)]


def test_garbage_is_a_checksum_error_not_a_field_error(dest: Path) -> None:
    junk = b"this is not a tar stream at all " * 64
    with pytest.raises(LayerRejected, match="checksum"):
        unpack(junk, dest)


def test_checksum_is_checked_on_the_fast_path(dest: Path) -> None:
    tar = bytearray(make_tar([entry("f", data=b"hello")]))
    tar[10] ^= 0x01  # a name byte: the header no longer matches its checksum
    with pytest.raises(LayerRejected, match="checksum"):
        unpack(bytes(tar), dest)


def test_tree_matches_gnu_tar(workdir: Path) -> None:
    """Owners, modes (set-id included), mtimes, links and contents as ``tar -x`` makes them."""
    import shutil
    import subprocess

    if shutil.which("tar") is None or os.geteuid() != 0:
        pytest.skip("needs GNU tar and root")
    entries = [entry("usr", "dir"), entry("usr/bin", "dir", mode=0o755),
               entry("usr/bin/su", data=b"ELF" * 100, mode=0o4755),
               entry("usr/bin/tool", data=b"t" * 5000, mode=0o755, uid=1000, gid=1000),
               entry("usr/bin/link", "symlink", link="/etc/alternatives/x"),
               entry("usr/bin/hard", "hardlink", link="usr/bin/tool"),
               entry("./usr/share/doc/readme", data=b"read me", mode=0o600),
               entry("etc/", "dir", mode=0o2775, gid=50), entry("etc/conf", data=b"c")]
    tar = make_tar(entries)
    ours, theirs = workdir / "ours", workdir / "theirs"
    ours.mkdir()
    theirs.mkdir()
    unpack(tar, ours)
    (workdir / "l.tar").write_bytes(tar)
    subprocess.run(["tar", "-x", "--numeric-owner", "-f", str(workdir / "l.tar"), "-C",
                    str(theirs)], check=True)

    def tree(root: Path) -> dict:
        out = {}
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                p = Path(dirpath) / n
                st = os.lstat(p)
                rel = str(p.relative_to(root))
                if p.is_symlink():
                    out[rel] = ("link", os.readlink(p), st.st_uid)
                elif p.is_file():
                    out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                                st.st_nlink, p.read_bytes())
                elif rel in ("usr/bin", "etc"):  # dirs in the tarball (not implicit ones)
                    out[rel] = (st.st_mode, st.st_uid, st.st_gid)
        return out

    assert tree(ours) == tree(theirs)


def test_plain_tarfile_stream_with_long_names(dest: Path) -> None:
    """GNU long names and PAX paths (over 100 bytes) go through the careful path."""
    long_dir = "d" * 120
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(long_dir)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        info = tarfile.TarInfo(f"{long_dir}/{'f' * 150}")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    unpack(buf.getvalue(), dest)
    assert (dest / long_dir / ("f" * 150)).read_bytes() == b"abc"


class _OddReads(io.RawIOBase):
    """A stream handing out its bytes in odd-sized pieces (as zstd or a socket may)."""

    def __init__(self, data: bytes, sizes: list[int], into: bool) -> None:
        self.data, self.sizes, self.pos, self.i = data, sizes, 0, 0
        if not into:
            self.readinto = None  # type: ignore[assignment]

    def _size(self, n: int) -> int:
        size = self.sizes[self.i % len(self.sizes)]
        self.i += 1
        return min(size, n, len(self.data) - self.pos)

    def read(self, n: int = -1) -> bytes:
        k = self._size(n if n >= 0 else len(self.data))
        self.pos += k
        return self.data[self.pos - k:self.pos]

    def readinto(self, b) -> int:  # type: ignore[override]
        k = self._size(len(b))
        b[:k] = self.data[self.pos:self.pos + k]
        self.pos += k
        return k


@pytest.mark.parametrize("into", [True, False])
@pytest.mark.parametrize("sizes", [[1], [700, 3], [511, 513, 1 << 20], [100_003]])
def test_pieces_of_any_size_are_cut_at_blocks(sizes: list[int], into: bool) -> None:
    """The pump cuts what the stream gives at 512-byte blocks: headers never straddle."""
    rng = __import__("random").Random(9)
    files = {f"f{i}": rng.randbytes(rng.choice((0, 1, 511, 512, 513, 3000))) for i in range(40)}
    tar = make_tar([entry(name, data=data) for name, data in files.items()])
    reader = TarReader(_OddReads(tar, sizes, into))
    got = {}
    try:
        for m in reader:
            parts = []
            while piece := reader.read_data():
                parts.append(bytes(piece))
            got[m.name] = b"".join(parts)
        assert reader.finish() == ("sha256:" + hashlib.sha256(tar).hexdigest(), len(tar))
    finally:
        reader.close()
    assert got == files


def test_channel_hands_items_over_in_order_and_times_out() -> None:
    import queue
    import threading

    from engine.images.tarstream import Channel

    ch = Channel(wake_at=3)
    out = []

    def consume() -> None:
        while (item := ch.get()) is not None:
            out.append(item)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(10):
        ch.put(i)
    ch.put(None, wake=True)  # below wake_at, yet it must wake the consumer
    t.join(5)
    assert not t.is_alive() and out == list(range(10))
    with pytest.raises(queue.Empty):
        ch.get(timeout=0.05)
    ch.close()


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_isal_reader_errors_keep_their_classes(dest: Path, damage: str) -> None:
    """Through ISA-L's reader, a cut or corrupt gzip layer is still refused, never applied."""
    blob = bytearray(gzip.compress(make_tar([entry("a", data=os.urandom(300_000))]), 1))
    if damage == "truncate":
        blob = blob[:len(blob) // 2]
    else:
        blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(LayerRejected):
        unpack(bytes(blob), dest)


def test_concatenated_gzip_members_unpack(dest: Path) -> None:
    tar = make_tar([entry("a", data=b"x" * 5000), entry("b", data=os.urandom(70_000))])
    cut = 3 * 512
    blob = gzip.compress(tar[:cut]) + gzip.compress(tar[cut:])
    result = unpack(blob, dest)
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert (dest / "b").stat().st_size == 70_000
