"""``docker cp``: a container's files out of and into its root, as tar streams.

Docker's archive endpoints move tar streams. Reading a path answers a tar of
it — a file, or a directory with everything below it — whose entries are named
from the path's last component, plus the path's stat (Docker sends it base64
in the ``X-Docker-Container-Path-Stat`` header); writing extracts a tar into a
directory of the container.

Both sides work on the container's merged root (the overlay mount), so a
write is a copy-up into the upper dir like any write from inside. The paths
are the container's, and an image may have made any of them a symlink to the
host's ``/``: the directory part is resolved with
:func:`engine.runtime.rootfs.resolve_in_root` (links followed, never out of the
root) and the last component is not followed, as Docker does. The tar being
written in is hostile input: it is applied with the layer applier's rules (no
``..``, no entry through a symlink, no device node), but with ``.wh.`` names
taken literally — a copy is not a layer.

A container's volumes and bind mounts are mounted in *its* mount namespace,
not over the root the host sees, so :func:`in_container_view` builds the
container's view for the length of one copy, as Docker does: a thread of the
engine leaves the host's mount namespace for a private copy of it
(``unshare(CLONE_FS | CLONE_NEWNS)``, possible for one thread alone), binds
each volume and bind mount over its destination in the root (read-only where
the container has it so), runs the copy there and ends. Its namespace, and
every mount made in it, go with it: nothing is left to unmount, even after a
failure.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from engine.errors import Forbidden, InvalidArgument, NotFound
from engine.runtime.rootfs import bind_mount, enter_private_mount_namespace, resolve_in_root

# Go's os.FileMode type bits, which Docker's PathStat carries (the docker CLI tests them)
_GO_MODE_BITS = (
    (stat.S_ISDIR, 1 << 31), (stat.S_ISLNK, 1 << 27), (stat.S_ISBLK, 1 << 26),
    (stat.S_ISCHR, (1 << 26) | (1 << 21)), (stat.S_ISFIFO, 1 << 25), (stat.S_ISSOCK, 1 << 24),
)


T = TypeVar("T")


def in_container_view(root: Path, mounts: list[dict[str, Any]], fn: Callable[[], T]) -> T:
    """``fn()`` in a thread where ``root`` shows the container's volumes and binds.

    ``mounts`` are inspect's ``Mounts`` (Type, Source, Destination, RW). A
    destination the root lacks (a container never started) is skipped, and
    tmpfs mounts are not there: their files live only in the container.
    """
    from engine.fresh_thread import in_fresh_thread

    wanted = sorted((m for m in mounts if m.get("Type") in ("volume", "bind")
                     and m.get("Source") and m.get("Destination")),
                    key=lambda m: posixpath.normpath(m["Destination"]).count("/"))
    if not wanted:
        return fn()

    def view() -> T:
        enter_private_mount_namespace()
        for m in wanted:
            target = resolve_in_root(root, _absolute(m["Destination"]))
            if target is None or not os.path.exists(m["Source"]):
                continue
            bind_mount(Path(m["Source"]), target, read_only=not m.get("RW", True))
        return fn()

    return in_fresh_thread(view, name="estiba-cp")


def refuse_read_only(mounts: list[dict[str, Any]], path: str, root_read_only: bool,
                     name: str) -> None:
    """``docker cp`` into a read-only place: the mount holding ``path`` (the deepest one
    whose destination is ``path`` or above it, no links followed), else the root."""
    clean = _absolute(path)
    holding = [m for m in mounts if m.get("Destination") and (
        clean == _absolute(m["Destination"])
        or clean.startswith(_absolute(m["Destination"]).rstrip("/") + "/"))]
    if holding:
        deepest = max(holding, key=lambda m: len(_absolute(m["Destination"])))
        if not deepest.get("RW", True):
            raise Forbidden(f"{path} is in the read-only mount "
                            f"{_absolute(deepest['Destination'])} of the container")
    elif root_read_only:
        raise Forbidden(f"container {name}'s root filesystem is read-only")


def _absolute(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/"))


def tar_writer(dest: BinaryIO | str | Path) -> tarfile.TarFile:
    """A tar being written to a file named ``dest`` or streamed to the stream ``dest``."""
    if isinstance(dest, (str, Path)):
        return tarfile.open(name=dest, mode="w", format=tarfile.PAX_FORMAT)
    return tarfile.open(fileobj=dest, mode="w|", format=tarfile.PAX_FORMAT)


def locate(root: Path, path: str) -> Path:
    """The host path of the container's ``path`` (its last component not followed)."""
    if not path or "\x00" in path:
        raise InvalidArgument("path is required: the container's file or directory")
    clean = _absolute(path)
    if clean == "/":
        return root
    parent, base = posixpath.split(clean)
    host_parent = resolve_in_root(root, parent)
    if host_parent is None or not host_parent.is_dir():
        raise NotFound(f"Could not find the file {path} in container")
    host = host_parent / base
    if not os.path.lexists(host):
        raise NotFound(f"Could not find the file {path} in container")
    if path.endswith(("/", "/.")):  # "dir/" and "dir/.": the directory a link points to
        target = resolve_in_root(root, clean)
        if target is None or not target.is_dir():
            raise InvalidArgument(f"{path} is not a directory in the container")
        return target
    return host


def path_stat(root: Path, path: str) -> dict:
    """Docker's ``PathStat`` of ``path``: name, size, Go file mode, mtime, link target."""
    host = locate(root, path)
    st = os.lstat(host)
    mode = st.st_mode & 0o777
    for test, bits in _GO_MODE_BITS:
        if test(st.st_mode):
            mode |= bits
            break
    for flag, bit in ((stat.S_ISUID, 1 << 23), (stat.S_ISGID, 1 << 22), (stat.S_ISVTX, 1 << 20)):
        if st.st_mode & flag:
            mode |= bit
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = os.readlink(host)
    return {"name": host.name if host != root else "/", "size": st.st_size, "mode": mode,
            "mtime": datetime.fromtimestamp(st.st_mtime, UTC).isoformat().replace("+00:00", "Z"),
            "linkTarget": link}


def read_archive(root: Path, path: str, dest: BinaryIO | str | Path) -> None:
    """Write a tar of ``path`` (recursively; links stored, never followed) to ``dest``."""
    host = locate(root, path)
    name = "." if host == root else host.name
    with tar_writer(dest) as tar:
        tar.add(host, arcname=name, recursive=True)


def write_archive(root: Path, path: str, src: BinaryIO) -> int:
    """Extract the tar stream ``src`` into the container's directory ``path``.

    Returns the number of entries. Raises NotFound for a missing directory,
    InvalidArgument for a non-directory, LayerRejected for a refused entry.
    """
    from engine.images.unpack import unpack_stream

    target = resolve_in_root(root, _absolute(path))
    if target is None:
        raise NotFound(f"Could not find the file {path} in container")
    if not target.is_dir():
        raise InvalidArgument(f"extraction point {path} is not a directory in the container")
    result = unpack_stream(src, target, what=f"archive for {path}", fresh=False,
                           whiteouts=False)
    return result.entries
