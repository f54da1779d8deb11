"""COPY and ADD: writing files into an image's root the way Docker does.

The caller mounts an overlay of the image (its layers below a fresh upper
dir) and hands this module the merged root; every write lands in the upper
dir, which becomes the new layer. Docker's rules, kept here in one place:

* a directory source copies its *contents*, not itself;
* a file goes to ``dest/<name>`` when ``dest`` ends in ``/`` or is an existing
  directory, else to ``dest`` itself; several sources need a ``/`` destination;
* missing parents are made (0755, root); copied entries are owned by root
  unless ``--chown``, keep their mode unless ``--chmod``, keep their mtime;
* symlinks inside a copied directory stay symlinks; every destination path
  is resolved inside the image's root, so a symlink in the image cannot send
  a write to the host;
* ADD unpacks a local tar archive (plain, gzip, bzip2, xz) into ``dest``.
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import gzip
import lzma
import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.build.context import extract_tar, resolve_in
from engine.errors import BuildError


@dataclass
class Owner:
    uid: int = 0
    gid: int = 0


def dest_path(root: Path, path: str) -> Path:
    """Host path for ``path`` in the image, parents made, never escaping ``root``."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current = "/"
    for part in parts[:-1]:
        nxt = os.path.join(current, part)
        host = resolve_in(root, nxt)
        if host is None:
            parent = resolve_in(root, current)
            assert parent is not None
            lexical = parent / part
            if lexical.is_symlink():  # dangling in the image: make its target, in the image
                link = os.readlink(lexical)
                dest_path(root, posixpath.join(posixpath.join(current, link), "_"))
                host = resolve_in(root, nxt)
                if host is None:
                    raise BuildError(f"cannot copy to {path}: {nxt} is a broken symlink")
            else:
                lexical.mkdir(mode=0o755)
                host = lexical
        elif not host.is_dir():
            raise BuildError(f"cannot copy to {path}: {nxt} is not a directory in the image")
        current = "/" + str(host.relative_to(root)) if host != root else "/"
    parent = resolve_in(root, current)
    assert parent is not None
    if not parts:
        return root
    return parent / parts[-1]


def _remove(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _apply_meta(path: Path, st: os.stat_result, owner: Owner, chmod: int | None) -> None:
    os.lchown(path, owner.uid, owner.gid)
    if not stat.S_ISLNK(st.st_mode):
        mode = chmod if chmod is not None else stat.S_IMODE(st.st_mode)
        os.chmod(path, mode)
    with contextlib.suppress(OSError):
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_entry(src: Path, st: os.stat_result, target: Path, owner: Owner,
               chmod: int | None) -> None:
    """Copy one non-directory entry (file, symlink, fifo) to the host path ``target``."""
    if target.is_dir() and not target.is_symlink():
        raise BuildError(f"cannot overwrite directory {target.name} with a non-directory")
    if target.is_symlink() or target.exists():
        target.unlink()
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), target)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(target)
    else:
        return  # sockets and devices are not copied (the context never holds them)
    _apply_meta(target, st, owner, chmod)


def ensure_dir(target: Path, st: os.stat_result | None, owner: Owner, chmod: int | None) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        target.unlink()
    if not target.exists():
        target.mkdir(mode=0o755)
        if st is not None:
            _apply_meta(target, st, owner, chmod)
        else:
            os.lchown(target, owner.uid, owner.gid)
    elif st is not None:
        _apply_meta(target, st, owner, chmod)


def copy_tree(entries, root: Path, base: Path, owner: Owner, chmod: int | None) -> int:
    """Copy ``(rel, host, stat)`` entries (parents first) under ``base``, a directory
    inside ``root``. Each destination is resolved inside ``root``: a symlink the image
    holds on the way (``/app/lib -> /usr/lib``) is followed *in the image*, never on
    the host."""
    base_c = "/" + str(base.relative_to(root)) if base != root else "/"
    count = 0
    dirs: list[tuple[Path, os.stat_result]] = []
    for rel, host, st in entries:
        cpath = posixpath.join(base_c, rel)
        if stat.S_ISDIR(st.st_mode):
            existing = resolve_in(root, cpath)
            if existing is not None and existing.is_dir():
                dst = existing
            else:
                dst = dest_path(root, cpath)
                ensure_dir(dst, None, owner, None)
            dirs.append((dst, st))
        else:
            copy_entry(host, st, dest_path(root, cpath), owner, chmod)
        count += 1
    for dst, st in reversed(dirs):  # modes and mtimes after the content is in
        _apply_meta(dst, st, owner, chmod)
    return count


_MAGIC = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))


def archive_opener(path: Path):
    """A function opening ``path`` as an uncompressed stream if it is a tar archive."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            try:
                with opener(path, "rb") as inner:
                    block = inner.read(512)
            except (OSError, EOFError, lzma.LZMAError):
                return None
            return functools.partial(opener, path, "rb") if _is_tar_header(block) else None
    return functools.partial(open, path, "rb") if _is_tar_header(head) else None


def _is_tar_header(block: bytes) -> bool:
    if len(block) < 512:
        return False
    if block[257:262] == b"ustar":
        return True
    try:
        stored = int(block[148:156].split(b"\0")[0].strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 32 * 8 + sum(block[156:512])
    return stored == unsigned


def add_archive(open_stream, root: Path, target: Path, owner: Owner, work: Path) -> None:
    """ADD of a local tar: unpack safely aside, then merge into ``target`` (a directory)."""
    tmp = Path(tempfile.mkdtemp(prefix="add-", dir=work))
    try:
        with open_stream() as stream:
            extract_tar(stream, tmp, what="ADD archive")
        entries = []
        for dirpath, dirnames, filenames in os.walk(tmp):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                host = Path(dirpath) / name
                entries.append((str(host.relative_to(tmp)), host, os.lstat(host)))
        entries.sort(key=lambda e: e[0].count("/"))
        copy_tree(entries, root, target, owner, None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_file(target: Path, data: bytes, owner: Owner, mode: int) -> None:
    """A heredoc's file at ``target``."""
    write_stream(target, [data], owner, mode)


def write_stream(target: Path, chunks: Iterable[bytes], owner: Owner, mode: int) -> None:
    """A file at ``target`` from ``chunks`` (a download), never through a symlink there.

    Should the chunks fail (a download cut off, too big, a checksum that does not
    match), the half-written file is removed before the error goes on.
    """
    if target.is_dir() and not target.is_symlink():
        raise BuildError(f"cannot overwrite directory {target} with a file")
    if target.is_symlink() or target.exists():
        target.unlink()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    os.lchown(target, owner.uid, owner.gid)
    os.chmod(target, mode)
