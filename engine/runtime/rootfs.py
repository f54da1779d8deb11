"""A container's root filesystem: an overlay mount of the image's layers.

overlayfs stacks read-only *lower* directories (the image's unpacked layers,
topmost first in the ``lowerdir=`` option) under one writable *upper*
directory that belongs to the container; ``workdir`` is overlayfs's scratch
space on the same filesystem. Writes land in the upper dir (a copy-up of the
file from a lower layer first), deletions become whiteouts there — which is
why ``diff``, ``commit`` and builds read the upper dir alone. Mounting is one
``mount(2)`` call made through libc, not a ``mount`` process, because it sits
on the path of every ``docker run``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

from engine.errors import RuntimeFailure

MNT_DETACH = 2
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 0x1000, 0x4000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
#: The kernel copies mount options into one page.
MAX_OPTIONS = 4095


def overlay_options(lower_dirs: list[Path], upper: Path, work: Path) -> str:
    """The overlay option string; ``lower_dirs`` come base first, as images list them."""
    if not lower_dirs:
        raise RuntimeFailure("an overlay root needs at least one image layer")
    for d in lower_dirs:
        if ":" in str(d) or "," in str(d):
            raise RuntimeFailure(f"layer path {d} holds ':' or ',' and cannot be an overlay lower")
    lowers = ":".join(str(d) for d in reversed(lower_dirs))
    return f"lowerdir={lowers},upperdir={upper},workdir={work}"


def mount_overlay(lower_dirs: list[Path], upper: Path, work: Path, target: Path,
                  volatile: bool = False) -> None:
    """Mount the container's union root at ``target`` (made if missing).

    ``volatile`` (Linux 5.10+, as Podman mounts ``--rm`` containers) tells
    overlayfs never to sync the upper dir: no ``fsync`` from inside reaches the
    disk and the unmount skips its flush of the whole filesystem. Right for a
    root that is thrown away when its container ends, and only for such a root:
    the kernel refuses to mount a volatile upper dir a second time.
    """
    for d in (upper, work, target):
        d.mkdir(parents=True, exist_ok=True)
    opts = overlay_options(lower_dirs, upper, work)
    if len(opts) > MAX_OPTIONS:
        raise RuntimeFailure(
            f"the image has too many layers ({len(lower_dirs)}) for one overlay mount at {target}"
        )
    if is_mounted(target):
        return
    rc = -1
    if volatile:
        rc = _libc.mount(b"overlay", str(target).encode(), b"overlay", 0,
                         f"{opts},volatile".encode())
    if rc != 0:  # not volatile, or a kernel without the option
        rc = _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, opts.encode())
    if rc != 0:
        err = ctypes.get_errno()
        raise RuntimeFailure(f"mounting the overlay root at {target} failed: {os.strerror(err)}")


def enter_private_mount_namespace(only: Path | None = None) -> None:
    """Give the calling *thread* a mount namespace of its own, no mount shared with the
    host's: what it mounts from now on, no other thread or process sees, and it all
    goes when the thread ends (CLONE_FS too: a thread shares its root and cwd).

    ``only``: make that one mount private and leave every other mount's propagation
    as it is (a child about to exec a runtime that must see the host's mounts as usual).
    """
    clone_fs, clone_newns, ms_private = 0x00000200, 0x00020000, 1 << 18
    if _libc.unshare(clone_fs | clone_newns) != 0:
        raise RuntimeFailure(f"cannot enter a mount namespace of its own: "
                             f"{os.strerror(ctypes.get_errno())}")
    target, flags = (str(only).encode(), ms_private) if only else (b"/", MS_REC | ms_private)
    if _libc.mount(None, target, None, flags, None) != 0:
        raise RuntimeFailure(f"cannot make the mounts private: {os.strerror(ctypes.get_errno())}")


def bind_mount(source: Path, target: Path, read_only: bool = False) -> None:
    """``mount --rbind source target`` (then read-only if asked), through libc."""
    src, dst = str(source).encode(), str(target).encode()
    if _libc.mount(src, dst, None, MS_BIND | MS_REC, None) != 0:
        raise RuntimeFailure(f"bind mount of {source} on {target} failed: "
                             f"{os.strerror(ctypes.get_errno())}")
    if read_only and _libc.mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None) != 0:
        raise RuntimeFailure(f"making {target} read-only failed: "
                             f"{os.strerror(ctypes.get_errno())}")


def unmount(target: Path, lazy: bool = False) -> None:
    """Unmount ``target`` if it is a mount point (lazily if busy); absent is fine.

    ``lazy`` detaches at once and lets the kernel finish (flushing the overlay's
    upper dir) in the background: right for a root no process uses any more.
    """
    while is_mounted(target):
        rc = _libc.umount2(str(target).encode(), MNT_DETACH if lazy else 0)
        if rc != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                return
            if err == errno.EBUSY:
                _libc.umount2(str(target).encode(), MNT_DETACH)
                return
            raise RuntimeFailure(f"unmounting {target} failed: {os.strerror(err)}")


def resolve_in_root(root: Path, path: str, max_links: int = 40, *, follow_last: bool = True,
                    loop_error: Exception | None = None) -> Path | None:
    """``path`` as seen with ``root`` as ``/``: symlinks followed, but never out of ``root``.

    An image's ``/etc/passwd``, a command looked up in ``$PATH``, a volume's
    source directory, a build's ``COPY`` destination are all paths of the
    container's world, and a hostile image may make any of them a link to ``/``
    of the host. Returns the host path of the final object, or None when it does
    not exist, or loops (``loop_error``, when given, is raised instead).
    ``follow_last=False`` leaves a link in the last component as it is.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        host = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(host)
        except OSError:
            return None
        if (st.st_mode & 0o170000) == 0o120000 and (parts or follow_last):
            links += 1
            if links > max_links:
                if loop_error is not None:
                    raise loop_error
                return None
            target = os.readlink(host)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def is_mounted(target: Path) -> bool:
    """True when ``target`` is a mount point in this mount namespace."""
    needle = _escape(str(target))
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == needle for line in fh)


def mounts_below(path: Path) -> list[str]:
    """Mount points at or under ``path`` (for leak checks and cleanup)."""
    prefix = _escape(str(path))
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _escape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return (path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")
            .replace("\n", "\\012"))
