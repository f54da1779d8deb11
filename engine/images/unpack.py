"""The layer applier: a hostile tarball becomes an overlay lower directory.

A layer tarball comes from a registry, a ``docker load`` archive or a user's
import, so every header in it is an attack until proven otherwise: names with
``..`` or a leading ``/``, symlinks pointing anywhere (``etc -> /etc``) followed
by entries written "through" them (``etc/passwd``), hardlinks to host files,
device nodes. Python's ``tarfile`` extraction filters are not the answer (see
TESTING.md): the ``data`` filter refuses the absolute symlinks every Debian
image holds, the others let breakouts through, and owners are mapped by name.

So this module extracts each entry itself, relative to an open directory file
descriptor of the layer root, with three rules:

1. Names are cleaned lexically: a leading ``/`` is dropped (as GNU tar does),
   ``.`` is dropped, and any ``..`` rejects the layer.
2. The parent directory of each entry is opened with ``openat2`` and
   ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` (or, on kernels without it, one
   ``O_NOFOLLOW`` component at a time). A path that goes through a symlink is
   refused: no symlink is ever followed while extracting, so symlinks are
   stored exactly as written (absolute ones included) and can only be resolved
   later, inside the container's own root.
3. The entry itself is created with ``*at`` calls that never follow: files with
   ``O_CREAT|O_EXCL|O_NOFOLLOW``, owners set numerically with ``lchown``
   semantics, hardlinks only to entries already inside this layer, device
   nodes skipped (counted in the result). A FIFO is harmless and kept.

OCI whiteouts become what overlayfs expects in a lower dir: ``.wh.name`` is a
0/0 character device ``name``, ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y``
on its directory. The caller unpacks into a fresh temporary directory and
renames it into place, so a rejected layer leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
from dataclasses import dataclass, field
from typing import IO

from engine.errors import LayerRejected
from engine.images.compression import open_decompressed
from engine.images.tarstream import (
    BLK,
    CHR,
    DIR,
    FIFO,
    LNK,
    REG_TYPES,
    SYM,
    Member,
    TarFormatError,
    TarReader,
)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
#: xattrs a layer may carry. trusted.* (overlay's own markers) and security.selinux never.
ALLOWED_XATTR_PREFIXES = ("user.", "security.capability")

_SYS_OPENAT2 = 437  # x86_64 and aarch64 share this number
_RESOLVE_NO_XDEV = 0x01
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_HAVE_OPENAT2: bool | None = None


def _openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    how = _OpenHow(flags, 0, resolve)
    fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd),
                       ctypes.c_char_p(os.fsencode(path)), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def have_openat2() -> bool:
    global _HAVE_OPENAT2
    if _HAVE_OPENAT2 is None:
        try:
            os.close(_openat2(-100, "/", _DIR_FLAGS, _RESOLVE_NO_SYMLINKS))  # AT_FDCWD
            _HAVE_OPENAT2 = True
        except OSError:
            _HAVE_OPENAT2 = False
    return _HAVE_OPENAT2


def clean_name(name: str) -> list[str]:
    """Split a tar member name into safe components; raise ValueError on ``..``."""
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise ValueError("path contains '..'")
        parts.append(part)
    return parts


@dataclass
class UnpackResult:
    """What an unpack did: the diff ID it computed and what it neutralized."""

    diff_id: str = ""
    size: int = 0          # bytes of regular file content
    tar_size: int = 0      # bytes of the uncompressed tar stream
    entries: int = 0
    skipped_devices: list[str] = field(default_factory=list)


def _process_umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


class _Applier:
    """Applies members to the directory open as ``root_fd``."""

    def __init__(self, root_fd: int, *, fresh: bool = True, whiteouts: bool = True) -> None:
        self.root_fd = root_fd
        #: False when the directory may hold files already (``docker cp`` into a container)
        self.fresh = fresh
        #: False where ``.wh.`` names are plain names (a copy is not a layer)
        self.whiteouts = whiteouts
        self.cache: dict[tuple[str, ...], int] = {}
        self.retired: list[int] = []  # dropped from the cache, closed once the entry is done
        self.dir_times: list[tuple[tuple[str, ...], float]] = []
        self.result = UnpackResult()
        #: Paths created by this unpack. The directory started empty, so a path not in
        #: here cannot exist, and the lstat before each creation can be skipped.
        self.seen: set[tuple[str, ...]] = set()
        self.setgid_dirs: set[tuple[str, ...]] = set()
        self.umask = _process_umask()
        self.root_ids = os.geteuid() == 0 and os.getegid() == 0

    # -- directories -------------------------------------------------------------------------
    def close(self) -> None:
        self._forget()
        self._reap()

    def _forget(self) -> None:
        """A directory was removed or replaced: cached descriptors may be stale."""
        self.retired.extend(self.cache.values())
        self.cache.clear()

    def _reap(self) -> None:
        for fd in self.retired:
            os.close(fd)
        self.retired.clear()

    def dir_fd(self, parts: tuple[str, ...], create: bool = True) -> int:
        """An fd of the directory ``parts`` below the root, never through a symlink."""
        if not parts:
            return self.root_fd
        fd = self.cache.get(parts)
        if fd is not None:
            return fd
        try:
            if have_openat2():
                fd = _openat2(self.root_fd, "/".join(parts), _DIR_FLAGS,
                              _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
                              | _RESOLVE_NO_XDEV)
            else:
                fd = self._walk(parts, create=False)
        except FileNotFoundError:
            if not create:
                raise
            fd = self._walk(parts, create=True)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV):
                raise _Refuse(f"parent path {'/'.join(parts)!r} is a symlink or not a "
                              "directory (writing through a symlink is refused)") from None
            raise
        if len(self.cache) >= 64:
            self._forget()
        self.cache[parts] = fd
        return fd

    def _walk(self, parts: tuple[str, ...], create: bool) -> int:
        fd = os.dup(self.root_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    self.seen.add(parts[:i + 1])
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as err:
                    if err.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _Refuse(f"parent path {'/'.join(parts)!r} goes through a symlink "
                                      "or a non-directory (refused)") from None
                    raise
                os.close(fd)
                fd = nxt
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _clear(self, pfd: int, parts: tuple[str, ...], keep_dir: bool = False) -> bool:
        """Remove what is at ``parts`` (never following). True if a directory was kept."""
        if parts not in self.seen:
            self.seen.add(parts)
            if self.fresh:
                return False
        base = parts[-1]
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self._forget()
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        return False

    # -- members -----------------------------------------------------------------------------
    def apply(self, tar: TarReader, m: Member) -> None:
        try:
            self._apply(tar, m)
        finally:
            if self.retired:
                self._reap()

    def _apply(self, tar: TarReader, m: Member) -> None:
        self.result.entries += 1
        name = m.name
        parts_list = name.split("/")
        if ".." in parts_list:
            raise _Refuse("path contains '..'")
        if "" in parts_list or "." in parts_list:  # "./x", "/x", "dir/": rarer, cleaned
            parts_list = [p for p in parts_list if p and p != "."]
            if not parts_list:  # the layer root itself ("./"): nothing to create
                return
        parts = tuple(parts_list)
        parent, base = parts[:-1], parts[-1]
        if self.whiteouts and base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent, base)
            return
        pfd = self.cache.get(parent) if parent else self.root_fd
        if pfd is None:
            pfd = self.dir_fd(parent)
        typ = m.type
        if typ in REG_TYPES:
            if parts in self.seen or not self.fresh:
                self._clear(pfd, parts)
            else:
                self.seen.add(parts)
            self._file(tar, m, pfd, parent, base)
            return
        if typ == DIR:
            if not self._clear(pfd, parts, keep_dir=True):
                os.mkdir(base, 0o700, dir_fd=pfd)
            self._meta(pfd, base, m)
            if m.mode & stat.S_ISGID:
                self.setgid_dirs.add(parts)
            self.dir_times.append((parts, m.mtime))
            return
        if typ in (CHR, BLK):
            self.result.skipped_devices.append("/".join(parts))
            return
        self._clear(pfd, parts)
        if typ == SYM:
            os.symlink(m.linkname, base, dir_fd=pfd)
            self._meta(pfd, base, m, symlink=True)
        elif typ == LNK:
            self._hardlink(m, pfd, base)
        elif typ == FIFO:
            os.mkfifo(base, 0o600, dir_fd=pfd)
            self._meta(pfd, base, m)
        else:
            raise _Refuse(f"unsupported tar entry type {m.type!r}")

    def _file(self, tar: TarReader, m: Member, pfd: int, parent: tuple[str, ...],
              base: str) -> None:
        mode = m.mode & 0o7777
        uid, gid = m.uid, m.gid
        plain = not (mode & 0o7000) and not (mode & self.umask)
        fd = os.open(base, _FILE_FLAGS, (mode & 0o777) if plain else 0o600, dir_fd=pfd)
        try:
            size = m.size
            if size:
                remaining = size
                write, read_data = os.write, tar.read_data
                while remaining > 0:
                    view = read_data(remaining)
                    if not view:
                        raise _Refuse("tar stream ends inside this file (truncated layer)")
                    remaining -= len(view)
                    written = write(fd, view)
                    while written < len(view):  # short writes: rare, but legal
                        view = view[written:]
                        written = write(fd, view)
                self.result.size += size
            # A root-owned file created by root needs no chown (unless a set-gid parent
            # gave it another group); its mode is already right unless umask or set-id
            # bits got in the way. Saves two syscalls on nearly every file of a layer.
            if uid or gid or not self.root_ids or (self.setgid_dirs
                                                    and parent in self.setgid_dirs):
                os.fchown(fd, uid, gid)
            if not plain or uid or gid:
                os.fchmod(fd, mode)  # after chown, which clears set-id bits
            if m.pax:
                self._xattrs(fd, m)
            mtime_ns = int(m.mtime * 1e9)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def _hardlink(self, m: Member, pfd: int, base: str) -> None:
        try:
            target = clean_name(m.linkname)
        except ValueError:
            raise _Refuse(f"hardlink target {m.linkname!r} leaves the layer") from None
        if not target:
            raise _Refuse("hardlink to the layer root")
        try:
            tfd = self.dir_fd(tuple(target[:-1]), create=False)
            st = os.lstat(target[-1], dir_fd=tfd)
        except (FileNotFoundError, NotADirectoryError):
            raise _Refuse(f"hardlink target {m.linkname!r} is not an earlier entry of this "
                          "layer") from None
        if stat.S_ISDIR(st.st_mode):
            raise _Refuse(f"hardlink target {m.linkname!r} is a directory")
        os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

    def _whiteout(self, parent: tuple[str, ...], base: str) -> None:
        pfd = self.dir_fd(parent)
        if base == WHITEOUT_OPAQUE:
            os.setxattr(pfd, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # other aufs metadata (.wh..wh.plnk, ...): meaningless here
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", ".."):
            raise _Refuse("whiteout names no file")
        self._clear(pfd, (*parent, name))
        os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)

    def _meta(self, pfd: int, base: str, m: Member, symlink: bool = False) -> None:
        if not (self.root_ids and m.uid == 0 and m.gid == 0):
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if not symlink:
            # chown clears set-id bits, so the mode comes after it.
            os.chmod(base, m.mode & 0o7777, dir_fd=pfd, follow_symlinks=True)
            if m.pax:
                fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                             dir_fd=pfd)
                try:
                    self._xattrs(fd, m)
                finally:
                    os.close(fd)
        mtime_ns = int(m.mtime * 1e9)
        os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _xattrs(self, fd: int, m: Member) -> None:
        for key, value in m.pax.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if name.startswith(ALLOWED_XATTR_PREFIXES):
                try:
                    os.setxattr(fd, name, value)
                except OSError:
                    pass  # a filesystem without user xattrs: the file still works

    def finish(self) -> None:
        """Directory mtimes last: creating their children changed them."""
        self._forget()
        for parts, mtime in reversed(self.dir_times):
            try:
                pfd = self.dir_fd(parts[:-1], create=False)
                ns = int(mtime * 1e9)
                os.utime(parts[-1], ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
            except (OSError, _Refuse):
                pass
            if self.retired:
                self._reap()
        self.close()


class _Refuse(Exception):
    """Internal: this entry is refused (turned into LayerRejected with the entry's name)."""


def unpack_stream(tar_stream: IO[bytes], dest: str | os.PathLike, what: str = "layer", *,
                  fresh: bool = True, whiteouts: bool = True) -> UnpackResult:
    """Apply an uncompressed tar stream to the existing empty directory ``dest``.

    Raises LayerRejected naming the entry; the caller discards ``dest``. With
    ``fresh=False`` ``dest`` may hold files, which entries replace; with
    ``whiteouts=False`` ``.wh.`` names are extracted as they are.
    """
    root_fd = os.open(dest, _DIR_FLAGS)
    applier = _Applier(root_fd, fresh=fresh, whiteouts=whiteouts)
    reader = TarReader(tar_stream)
    member_name = "<header>"
    try:
        try:
            for member in reader:
                member_name = member.name
                applier.apply(reader, member)
            applier.finish()
            diff_id, tar_size = reader.finish()
        except _Refuse as err:
            raise LayerRejected(f"{what}: entry {member_name!r} refused: {err}") from None
        except (TarFormatError, EOFError, ValueError) as err:
            raise LayerRejected(f"{what}: not a valid tar stream near entry {member_name!r}: "
                                f"{err}") from None
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                raise
            raise LayerRejected(f"{what}: entry {member_name!r} could not be applied: "
                                f"{err.strerror or err}") from None
    finally:
        reader.close()
        applier.close()
        os.close(root_fd)
    applier.result.diff_id = diff_id
    applier.result.tar_size = tar_size
    return applier.result


def unpack_blob(raw: IO[bytes], dest: str | os.PathLike, what: str = "layer", *,
                check_crc: bool = True) -> UnpackResult:
    """Apply a layer blob (plain tar, gzip or zstd; detected) to ``dest``.

    ``check_crc=False`` skips gzip's CRC-32: for callers that compare the
    result's diff ID with the one expected, which covers the same bytes.
    """
    try:
        stream = open_decompressed(raw, check_crc)
    except Exception as err:
        raise LayerRejected(f"{what}: unreadable compressed stream: {err}") from None
    try:
        return unpack_stream(stream, dest, what)
    except LayerRejected:
        raise
    except Exception as err:  # zstd/zlib errors on corrupt data
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise
        raise LayerRejected(f"{what}: corrupt compressed data: {err}") from None
