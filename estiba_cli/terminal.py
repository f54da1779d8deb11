"""Bridging the user's terminal and a hijacked connection (``run -it``, ``exec -it``).

With ``-t`` the local terminal goes raw (every key goes to the container, which
has its own pty) and its size is sent on start and on every SIGWINCH. Without a
tty the daemon sends Docker's framed stream, split here into stdout and stderr.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import sys
import termios
import tty as ttymod
from collections.abc import Callable


def terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return size.lines, size.columns
    except OSError:
        return 0, 0


def pump(sock: socket.socket, pending: bytes, *, tty: bool, stdin: bool,
         on_resize: Callable[[int, int], None] | None = None) -> None:
    """Copy stdin -> socket and socket -> stdout/stderr until the daemon closes."""
    out_fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
    in_fd = sys.stdin.fileno()
    raw = tty and stdin and os.isatty(in_fd)
    saved = termios.tcgetattr(in_fd) if raw else None
    old_winch = None
    if on_resize is not None and tty:
        def winch(*_: object) -> None:
            h, w = terminal_size()
            if h and w:
                with contextlib.suppress(Exception):
                    on_resize(h, w)

        old_winch = signal.signal(signal.SIGWINCH, winch)
        winch()
    buf = pending
    reading_stdin = stdin
    try:
        if raw:
            ttymod.setraw(in_fd)
        while True:
            buf = _emit(buf, tty, out_fd, err_fd)
            watch = [sock] + ([in_fd] if reading_stdin else [])
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    _emit(buf, tty, out_fd, err_fd, final=True)
                    return
                buf += data
            if reading_stdin and in_fd in ready:
                data = os.read(in_fd, 65536)
                if data:
                    sock.sendall(data)
                else:
                    reading_stdin = False
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
    finally:
        if saved is not None:
            termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        sock.close()


def _emit(buf: bytes, tty: bool, out_fd: int, err_fd: int, final: bool = False) -> bytes:
    if tty:
        if buf:
            os.write(out_fd, buf)
        return b""
    while len(buf) >= 8:
        stream, size = struct.unpack(">BxxxL", buf[:8])
        if len(buf) < 8 + size:
            break
        os.write(err_fd if stream == 2 else out_fd, buf[8:8 + size])
        buf = buf[8 + size:]
    if final and buf:
        os.write(out_fd, buf)
    return buf
