"""Passing file descriptors over a UNIX socket (``SCM_RIGHTS``).

A descriptor sent this way arrives in the receiving process as a new descriptor
of the same open file: how the runtime hands the shim a container's pty master
(``--console-socket``) and how the engine hands the launcher, then the launcher
a spare supervisor, the pipe on which the supervisor says it started.
"""

from __future__ import annotations

import array
import socket


def send_with_fd(sock: socket.socket, data: bytes, fd: int) -> None:
    """Send one message ``data`` with descriptor ``fd`` attached."""
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def received_fds(ancdata: list) -> list[int]:
    """The descriptors in ``recvmsg``'s ancillary data (the caller owns and closes them)."""
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(data[: len(data) - len(data) % arr.itemsize])
            fds.extend(arr)
    return fds


def space_for(count: int) -> int:
    """The ancillary buffer size ``recvmsg`` needs for ``count`` descriptors."""
    return socket.CMSG_SPACE(count * array.array("i").itemsize)
