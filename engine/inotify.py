"""inotify: the kernel telling a process that a directory changed.

The standard library has no binding, so the two system calls are reached
through ctypes: ``inotify_init1`` gives a file descriptor that becomes
readable when a watched directory sees one of the events in its mask, and
``inotify_add_watch`` adds a directory to it. Waiters in the engine sleep on
that descriptor instead of polling a file (a container's state, an upper dir).

Closing an inotify descriptor is slow: the kernel tears the instance down only
after an SRCU grace period (``fsnotify_destroy_group``), 10-20 ms on this
machine class, and every ``docker wait`` would pay it. Short-lived waiters
therefore borrow a descriptor from a per-process pool (:func:`borrow`) and give
it back with their watch removed (``inotify_rm_watch`` is cheap); a stale event
left in a reused descriptor only causes one spurious wake-up, which waiters
tolerate since they re-check what they wait for.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def init() -> int:
    """A new non-blocking inotify descriptor, or -1 (with ``errno``) where there is none."""
    return _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)


def add_watch(fd: int, path: str | Path, mask: int) -> int:
    """Watch ``path`` for the events in ``mask``; the watch descriptor, or -1."""
    return _libc.inotify_add_watch(fd, os.fsencode(path), mask)


def rm_watch(fd: int, wd: int) -> int:
    """Stop watch ``wd`` of ``fd`` (0, or -1 when it is already gone)."""
    return _libc.inotify_rm_watch(fd, wd)


#: idle descriptors of this process, ready to be borrowed; a fork's child starts empty
_idle: list[int] = []
_idle_lock = threading.Lock()
_IDLE_MAX = 4  # inotify instances are limited per user (max_user_instances, often 128)


def _forget_idle_in_child() -> None:
    global _idle_lock
    _idle.clear()  # the parent still uses them: a shared queue would steal its events
    _idle_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_idle_in_child)


@contextlib.contextmanager
def borrow() -> Iterator[int]:
    """An inotify descriptor without watches for the duration of a ``with`` (-1 if none).

    Every watch the borrower adds must be removed (:func:`rm_watch`) before the
    block ends; the descriptor then goes back to the pool, drained.
    """
    with _idle_lock:
        fd = _idle.pop() if _idle else -1
    if fd < 0:
        fd = init()
    try:
        yield fd
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                while os.read(fd, 65536):
                    pass
            with _idle_lock:
                keep = len(_idle) < _IDLE_MAX
                if keep:
                    _idle.append(fd)
            if not keep:
                os.close(fd)


def last_error() -> str:
    return os.strerror(ctypes.get_errno())
