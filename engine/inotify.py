"""inotify: the kernel telling a process that a directory changed.

The standard library has no binding, so the two system calls are reached
through ctypes: ``inotify_init1`` gives a file descriptor that becomes
readable when a watched directory sees one of the events in its mask, and
``inotify_add_watch`` adds a directory to it. Waiters in the engine sleep on
that descriptor instead of polling a file (a container's state, an upper dir).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
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


def last_error() -> str:
    return os.strerror(ctypes.get_errno())
