"""The launcher: a small process that forks container supervisors (a "zygote").

A supervisor (:mod:`engine.runtime.shim`) is forked rather than started as a
new interpreter, which would cost tens of milliseconds per ``docker run``.
Forking it straight from a worker costs too: fork, ``setsid``, fork again
copies the worker's page tables twice and faults its pages in copy-on-write,
several milliseconds that grow with the worker's size. So each engine process
keeps one launcher, as Android's zygote and Python's multiprocessing
"forkserver" do: a fresh interpreter that has imported the engine and nothing
else, started once, whose only job is to fork supervisors from its small memory.

* The engine talks to it over a ``SOCK_SEQPACKET`` socket pair: one message per
  supervisor, JSON naming the container directory, the runtime, the journal and
  the socket directory, with the write end of the caller's ready pipe attached
  (``SCM_RIGHTS``). The supervisor writes its "ok <pid>" or "error: ..." there,
  exactly as after a direct fork, so :func:`engine.runtime.shim.spawn` reads
  the same answer either way.
* It keeps one *spare* child forked ahead, waiting for its request: a start
  hands the request over and goes on while the launcher forks the next spare,
  so no start waits for a fork at all (gunicorn pre-forks its workers so).
* The launcher daemonizes itself (its first process exits at once), so neither
  it nor any supervisor is a child of the worker; each supervisor starts its own
  session. The launcher reaps supervisors as they exit.
* It exits when its socket reports end of file: the engine process that started
  it is gone. Supervisors keep running, re-parented, as they always did; the next
  engine process starts its own launcher.
* When it cannot be reached, the engine forks the supervisor itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from engine.runtime import shim
from engine.runtime.fdpass import received_fds, send_with_fd, space_for
from engine.runtime.oci import OCIRuntime
from engine.runtime.store import ContainerDir

MAX_REQUEST = 64 * 1024
#: what a supervisor may need (the exit path removes auto-remove containers and takes
#: networks down): imported here, a supervisor would import them at every exit
PRELOAD = ("engine.runtime.shim", "engine.runtime.containers", "engine.network.manager",
           "engine.volumes", "engine.images.store")
PR_SET_NAME = 15


class Launcher:
    """The engine's end of one process's launcher: started on first use, restarted once."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._owner = 0  # the pid that started it (a forked child starts its own)
        self._lock = threading.Lock()

    def spawn(self, cdir: ContainerDir, runtime: OCIRuntime, journal: Path, sock_dir: Path,
              ready_fd: int) -> bool:
        """Ask the launcher for a supervisor writing to ``ready_fd``; False if it cannot."""
        payload = json.dumps({
            "cdir": str(cdir.path), "cid": cdir.id, "journal": str(journal),
            "sock_dir": str(sock_dir),
            "runtime": runtime.to_dict(),
        }).encode()
        with self._lock:
            for _ in range(2):  # a launcher that died is started again, once
                try:
                    send_with_fd(self._connected(), payload, ready_fd)
                    return True
                except OSError:
                    self._drop()
        return False

    def warm(self) -> bool:
        """Start the launcher now rather than at the first start; False if it cannot."""
        with self._lock:
            try:
                self._connected()
                return True
            except OSError:
                self._drop()
                return False

    def _connected(self) -> socket.socket:
        if self._sock is not None and self._owner == os.getpid():
            return self._sock
        self._drop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            env = dict(os.environ)
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
            proc = subprocess.Popen(
                [sys.executable, "-m", "engine.runtime.launcher", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=env, cwd="/", start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            code = proc.wait(timeout=30)  # its first process exits once it serves
        finally:
            theirs.close()
        if code != 0:
            ours.close()
            raise OSError(f"the launcher did not start (exit code {code})")
        self._sock, self._owner = ours, os.getpid()
        return ours

    def _drop(self) -> None:
        if self._sock is not None and self._owner == os.getpid():
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock, self._owner = None, 0


#: this process's launcher
LAUNCHER = Launcher()


# -- the launcher process ---------------------------------------------------------


def serve(sock: socket.socket) -> None:
    """Hand every request to a spare supervisor until the engine's end closes.

    A *spare* is forked before it is needed and waits for its one request, so a
    ``docker run`` does not wait for a fork: the next spare is forked while the
    runtime starts the container.
    """
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    spare = _fork_spare(sock)
    while True:
        try:
            data, ancdata, _, _ = sock.recvmsg(MAX_REQUEST, space_for(4))
        except InterruptedError:
            continue
        if not data:
            spare.close()  # the spare sees end of file and exits unused
            return
        fds = received_fds(ancdata)
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        try:
            _parse(data)
            try:
                send_with_fd(spare, data, fds[0])
            except OSError:  # the spare died waiting: use a fresh one
                spare.close()
                spare = _fork_spare(sock)
                send_with_fd(spare, data, fds[0])
        except (ValueError, KeyError, TypeError, OSError) as exc:
            with contextlib.suppress(OSError):
                os.write(fds[0], f"error: the launcher refused the request: {exc}".encode())
        finally:
            os.close(fds[0])
        spare.close()
        spare = _fork_spare(sock)
        _reap()


def _parse(data: bytes) -> tuple[ContainerDir, OCIRuntime, Path, Path]:
    request = json.loads(data)
    runtime = OCIRuntime.from_dict(request["runtime"])
    cdir = ContainerDir(Path(request["cdir"]), str(request["cid"]))
    return cdir, runtime, Path(request["journal"]), Path(request["sock_dir"])


@contextlib.contextmanager
def _idle_priority() -> Iterator[None]:
    """Run the body as ``SCHED_IDLE``: only on a CPU that nothing else wants.

    The next spare is forked while the container just handed over is starting;
    a fork of this process copies its page tables, 3-4 ms of CPU on a VM that
    would otherwise be taken from that start (two cores, and the supervisor,
    the runtime and the engine all busy). The fork's child leaves it too.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not allowed: fork as usual
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _fork_spare(sock: socket.socket) -> socket.socket:
    """A child that becomes the supervisor named by the one request it will be sent."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # Everything this process holds moves out of the collector's sight: a collection in
    # the child would write to every object it walks, copying each page it shares with
    # this process (a page fault costs several microseconds on a VM).
    gc.freeze()
    with _idle_priority():
        pid = os.fork()
    if pid == 0:
        try:
            sock.close()
            ours.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            data, ancdata, _, _ = theirs.recvmsg(MAX_REQUEST, space_for(1))
            fds = received_fds(ancdata)
            if data and len(fds) == 1:
                theirs.close()
                os.setsid()
                shim.supervise(*_parse(data), fds[0])
        finally:
            os._exit(0)
    theirs.close()
    return ours


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def main(argv: list[str] | None = None) -> None:
    """``python -m engine.runtime.launcher <fd>``: daemonize, then serve on socket ``fd``."""
    argv = argv if argv is not None else sys.argv[1:]
    sock = socket.socket(fileno=int(argv[0]))
    for name in PRELOAD:  # imported once, before any fork: the zygote's point
        importlib.import_module(name)

    if os.fork() != 0:
        os._exit(0)  # the engine reaps this first process; the server is re-parented
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(b"estiba-launcher"), 0, 0, 0)  # ps, pstree
    serve(sock)


if __name__ == "__main__":
    main()
