"""Network namespaces as files, the way ``ip netns add`` keeps them.

A network namespace lives as long as something refers to it: a process in it,
an open file descriptor, or a bind mount of its ``/proc/<pid>/ns/net`` file.
estiba creates a container's namespace *before* the container exists (so its
veth, address and routes are ready when the process starts) and keeps it alive
with a bind mount under ``<run_dir>/netns/<container id>``; the OCI runtime is
then told to *join* that path instead of making a new namespace.

Creating one costs no process: a short-lived thread calls ``unshare(CLONE_NEWNET)``
(network namespaces are per thread until a process forks), bind-mounts its own
``/proc/thread-self/ns/net`` onto the file and exits. Working inside a namespace
uses the same trick: :func:`run_in` runs a function in a thread that has
``setns``-ed into it, so netlink sockets opened there talk to that namespace's
kernel tables while the rest of the engine stays in the host's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from engine.errors import RuntimeFailure
from engine.fresh_thread import in_fresh_thread

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

T = TypeVar("T")


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise RuntimeFailure(f"{what}: {os.strerror(err)}")


def create(path: Path) -> Path:
    """A new, empty network namespace kept alive by a bind mount at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)

    def make() -> None:
        _check(_libc.unshare(CLONE_NEWNET), f"unshare(CLONE_NEWNET) for {path}")
        src = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        _check(_libc.mount(src, str(path).encode(), None, MS_BIND, None), f"bind mount {path}")

    try:
        in_fresh_thread(make)
    except BaseException:
        os.unlink(path)
        raise
    return path


def remove(path: Path) -> None:
    """Drop the bind mount and the file; the namespace dies with its last user."""
    path = Path(path)
    if not path.exists():
        return
    _libc.umount2(str(path).encode(), MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def is_netns(path: Path) -> bool:
    """True when ``path`` is a live namespace bind mount (an nsfs file), not a plain file."""
    try:
        return os.stat(path).st_dev != os.stat(Path(path).parent).st_dev
    except OSError:
        return False


def run_in(path: Path, fn: Callable[[], T]) -> T:
    """Call ``fn()`` inside the namespace at ``path`` (in a throwaway thread)."""
    nsfd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def body() -> T:
        try:
            _check(_libc.setns(nsfd, CLONE_NEWNET), f"setns into {path}")
        finally:
            os.close(nsfd)
        return fn()

    return in_fresh_thread(body)


def open_fd(path: Path) -> int:
    """An fd of the namespace, for netlink's IFLA_NET_NS_FD (moving a link into it)."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
