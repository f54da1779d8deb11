"""An overlay upper directory becomes an OCI layer tarball (commit and build).

overlayfs records a container's changes in its *upper* dir: new and modified
files as themselves, a deleted file as a 0/0 character device of the same name
(a *whiteout*), and a directory that replaced a lower one as a directory with
``trusted.overlay.opaque=y``. OCI layers say the same with names instead:
``.wh.<name>`` for a deletion, ``.wh..wh..opq`` inside an opaque directory.
This module walks the upper dir (never following symlinks) and writes the tar
with those translations, numeric owners only, in a stable order so the same
changes give the same diff ID.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path
from typing import IO

from engine.images.unpack import OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX

_XATTRS_KEPT = ("security.capability", "user.")


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _xattrs(path: str) -> dict[str, str]:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in names:
        if name.startswith(_XATTRS_KEPT):
            try:
                value = os.getxattr(path, name, follow_symlinks=False)
            except OSError:
                continue
            out["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return out


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    return info


def write_layer_tar(upper: Path, out: IO[bytes]) -> int:
    """Write the changes in ``upper`` as an uncompressed OCI layer tar; returns entries written."""
    upper = Path(upper)
    count = 0
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:

        def walk(rel: str) -> None:
            nonlocal count
            full = os.path.join(upper, rel) if rel else str(upper)
            with os.scandir(full) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                if _is_whiteout(st):
                    info = _info(f"{rel}/{WHITEOUT_PREFIX}{entry.name}" if rel
                                 else WHITEOUT_PREFIX + entry.name, st)
                    info.mode = 0o600
                    tar.addfile(info)
                    count += 1
                    continue
                info = _info(name, st)
                info.pax_headers = _xattrs(entry.path)
                if stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                    count += 1
                    if _is_opaque(entry.path):
                        marker = _info(f"{name}/{WHITEOUT_OPAQUE}", st)
                        marker.mode = 0o600
                        tar.addfile(marker)
                        count += 1
                    walk(name)
                    continue
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info.type, info.linkname = tarfile.LNKTYPE, links[key]
                    tar.addfile(info)
                elif stat.S_ISREG(st.st_mode):
                    links[key] = name
                    info.size = st.st_size
                    fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    with os.fdopen(fd, "rb") as fh:
                        tar.addfile(info, fh)
                elif stat.S_ISLNK(st.st_mode):
                    info.type, info.linkname = tarfile.SYMTYPE, os.readlink(entry.path)
                    tar.addfile(info)
                elif stat.S_ISFIFO(st.st_mode):
                    info.type = tarfile.FIFOTYPE
                    tar.addfile(info)
                else:
                    continue  # sockets and device nodes do not belong in a layer
                count += 1

        walk("")
    return count
