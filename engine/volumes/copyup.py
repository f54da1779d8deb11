"""Copy-up: an empty volume first mounted over an image path gets that path's files.

Docker's rule, which people rely on (``VOLUME /var/lib/mysql`` in an image that
ships an initial database): when a volume that holds nothing is mounted over a
directory that holds files *in the image*, those files are copied into the
volume first, with owners, modes, timestamps, extended attributes and symlinks
as they are. After that the volume is the truth and the image is never read
again for that path.

The image is a stack of layer directories. Several layers are viewed merged
through a temporary read-only overlayfs mount (so whiteouts hide what upper
layers deleted); one layer, or an already merged rootfs, is read directly. The
target path is resolved *inside* that root, symlinks included, so an image
with ``/data -> /etc`` copies its own ``/etc``, never the host's.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from engine.errors import RuntimeFailure
from engine.runtime.rootfs import resolve_in_root


@contextlib.contextmanager
def merged_view(layers: list[Path], scratch: Path) -> Iterator[Path | None]:
    """The image's root: one dir as is, several merged by a read-only overlay mount."""
    layers = [Path(p) for p in layers]
    if not layers:
        yield None
        return
    if len(layers) == 1:
        yield layers[0]
        return
    scratch.mkdir(parents=True, exist_ok=True)
    point = Path(tempfile.mkdtemp(prefix="copyup-", dir=scratch))
    lower = ":".join(str(p) for p in reversed(layers))  # overlay wants the top layer first
    result = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={lower}", str(point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        point.rmdir()
        raise RuntimeFailure(f"copy-up: cannot mount the image's layers: {result.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)
        with contextlib.suppress(OSError):
            point.rmdir()


def copy_xattrs(src: Path, dst: Path) -> None:
    with contextlib.suppress(OSError):
        for name in os.listxattr(src, follow_symlinks=False):
            if name.startswith("trusted.overlay."):
                continue
            with contextlib.suppress(OSError):
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False))


def is_empty(directory: Path) -> bool:
    with os.scandir(directory) as it:
        return next(it, None) is None


def copy_up(layers: list[Path], target: str, data_dir: Path, scratch: Path) -> bool:
    """Copy the image's ``target`` directory into the empty ``data_dir``; True if it did.

    The files are copied into a staging directory beside ``data_dir`` that then
    replaces it with one ``rename`` (allowed over an empty directory), so a crash
    mid-copy leaves the volume empty, to be filled again at the next start, rather
    than half filled and never completed. A volume that is a mount of its own
    (driver options) cannot be renamed over; it is filled in place.
    """
    if not is_empty(data_dir):
        return False
    with merged_view(layers, scratch) as root:
        if root is None:
            return False
        source = resolve_in_root(root, posixpath.normpath(target))
        if source is None or not source.is_dir():
            return False
        stage = data_dir.with_name(".copyup")
        shutil.rmtree(stage, ignore_errors=True)
        in_place = os.path.ismount(data_dir)
        dest = data_dir if in_place else stage
        if not in_place:
            stage.mkdir()
        st = os.stat(source)
        # cp -a keeps owners, modes, times, symlinks and hardlinks; =all adds xattrs.
        result = subprocess.run(
            ["cp", "-a", "--preserve=all", "--no-dereference", f"{source}/.", f"{dest}/"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            shutil.rmtree(stage, ignore_errors=True)
            raise RuntimeFailure(
                f"copy-up of image path {target} into {data_dir}: {result.stderr.strip()}"
            )
        os.chown(dest, st.st_uid, st.st_gid)
        os.chmod(dest, st.st_mode & 0o7777)
        copy_xattrs(source, dest)
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
        if not in_place:
            os.rename(stage, data_dir)
        return True
