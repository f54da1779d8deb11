"""The supervisor ("shim") of one container: why containers outlive the engine.

A container's processes must keep running when the worker that started them
is restarted or killed, and *someone* must still hold their stdout/stderr,
write the log, collect the exit status and apply the restart policy. That is
this process, one per container, as containerd-shim does it:

* it is forked by the engine process's launcher (:mod:`engine.runtime.launcher`,
  a small zygote process), or double-forked from the engine itself (fork,
  ``setsid``, fork again), so that it belongs to no worker's process tree or
  session; forking instead of starting a new interpreter keeps ``docker run`` fast;
* it is a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): ``runc run
  --detach`` exits once the container is running, and the container's PID 1 is
  then re-parented to the shim, which alone can ``waitpid`` it for the exit code;
* it owns the container's stdio (pipes, or the pty master that the runtime
  hands over through ``--console-socket``) and writes the json-file log;
* it serves an attach socket: clients get Docker's multiplexed stream
  (8-byte header: stream, 0, 0, 0, big-endian length) and send framed stdin,
  close-stdin and resize messages;
* after the exit it reads the cgroup's OOM-kill counter, deletes the runtime's
  container (and so its cgroups), records the exit in ``state.json``, appends
  ``die``/``oom`` events to the journal, and restarts per the restart policy.

``python -m engine.runtime.shim <container dir> <journal> <sock dir>`` runs
the same supervisor in a fresh interpreter (for tools and debugging).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import io
import json
import os
import resource
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import traceback
from pathlib import Path
from typing import Any

from engine.events import Event, append_to_journal
from engine.runtime.fdpass import received_fds, space_for
from engine.runtime.logs import JsonLogWriter, read_logs
from engine.runtime.oci import OCIRuntime
from engine.runtime.store import ContainerDir, rfc3339

PR_SET_CHILD_SUBREAPER = 36
PR_SET_NAME = 15
#: client -> shim frame types on the attach socket
FRAME_STDIN, FRAME_CLOSE_STDIN, FRAME_RESIZE = 0, 1, 2
#: shim -> client: stream 1 stdout, 2 stderr, and 3 carries the exit code at the end
STREAM_STDOUT, STREAM_STDERR, STREAM_EXIT = 1, 2, 3
_STREAM_IDS = {"stdout": STREAM_STDOUT, "stderr": STREAM_STDERR}


def parse_restart_policy(policy: str) -> tuple[str, int]:
    """``"on-failure:3"`` -> ("on-failure", 3); ``""`` -> ("no", 0)."""
    name, _, count = (policy or "no").partition(":")
    return name or "no", int(count) if count.isdigit() else 0


def proc_start_time(pid: int) -> int:
    """The process's start time in clock ticks (tells a live pid from a reused one).

    0 for a process that is gone or a zombie (dead, waiting for its parent to reap it).
    """
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return 0 if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return 0


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Sleep until process ``pid`` exits (True) or ``timeout`` passes (False), no polling.

    A pidfd becomes readable when its process ends, child or not. Where there
    is no pidfd (old kernels), this falls back to checking every few milliseconds.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.002)
        return False
    try:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        return bool(ready)
    finally:
        os.close(fd)


def wait_child(proc: subprocess.Popen, timeout: float) -> int:
    """``proc``'s exit code, woken by its exit (``Popen.wait(timeout)`` polls with sleeps
    of up to 50 ms); a child still running after ``timeout`` is killed (-1)."""
    if not wait_for_exit(proc.pid, timeout):
        proc.kill()
        proc.wait()
        return -1
    return proc.wait()


def oom_killed(cgroups_path: str) -> bool:
    """Did the kernel's OOM killer act in this container's memory cgroup?"""
    candidates = [
        Path("/sys/fs/cgroup/memory") / cgroups_path.lstrip("/") / "memory.oom_control",
        Path("/sys/fs/cgroup") / cgroups_path.lstrip("/") / "memory.events",
    ]
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                return True
    return False


def spawn(cdir: ContainerDir, runtime: OCIRuntime, journal: Path, sock_dir: Path) -> int:
    """Start the supervisor detached from the caller; return once the container runs.

    The supervisor is forked by this process's launcher (:mod:`engine.runtime.launcher`)
    or, where that cannot be reached, from here. Returns the supervisor's pid. A start
    failure is raised as the runtime's message.
    """
    from engine.errors import RuntimeFailure
    from engine.runtime.launcher import LAUNCHER

    r, w = os.pipe()
    try:
        if not LAUNCHER.spawn(cdir, runtime, journal, sock_dir, w):
            _fork_detached(cdir, runtime, journal, sock_dir, r, w)
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as fh:
        answer = fh.read().decode(errors="replace")
    if not answer.startswith("ok "):
        raise RuntimeFailure(answer.removeprefix("error: ").strip()
                             or f"the supervisor of {cdir.id[:12]} died at start")
    return int(answer.split()[1])


def _fork_detached(cdir: ContainerDir, runtime: OCIRuntime, journal: Path, sock_dir: Path,
                   r: int, w: int) -> None:
    """Fork, ``setsid``, fork again: the supervisor in no process tree or session of ours."""
    pid = os.fork()
    if pid == 0:  # first child: leave the caller's session, fork the real supervisor
        code = 0
        try:
            # The supervisor shares the caller's memory copy-on-write; keep the garbage
            # collector from walking (and so copying) every inherited object.
            gc.freeze()
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                supervise(cdir, runtime, journal, sock_dir, w)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


def supervise(cdir: ContainerDir, runtime: OCIRuntime, journal: Path, sock_dir: Path,
              ready_fd: int) -> None:
    """Body of the detached supervisor process; never returns."""
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        sys.stderr = _LazyLog(cdir.path / "shim.log")
        keep = sorted({0, 1, 2, ready_fd})
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        low = 3
        for fd in [*keep[3:], limit]:
            if fd > low:
                os.closerange(low, fd)
            low = fd + 1
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)
        Supervisor(cdir, runtime, journal, sock_dir).run(ready_fd)
    except BaseException:
        traceback.print_exc()
        with contextlib.suppress(OSError):
            os.write(ready_fd, b"error: supervisor crashed")
    finally:
        os._exit(0)


class _LazyLog(io.TextIOBase):
    """The supervisor's ``sys.stderr``: ``shim.log``, made at the first thing written.

    Most supervisors never write a line; not creating the file spares each start
    an inode (about half a millisecond on a busy ext4).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._fh is None:
            self._fh = open(self.path, "a", buffering=1)  # noqa: SIM115 (the process's life)
        return self._fh.write(text)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()


class Supervisor:
    """Runs, watches, logs and restarts one container."""

    def __init__(self, cdir: ContainerDir, runtime: OCIRuntime, journal: Path,
                 sock_dir: Path) -> None:
        self.cdir = cdir
        self.runtime = runtime
        self.journal = journal
        self.config = cdir.read_config()
        self.spec = self.config["Spec"]
        self.rid = self.config["RuntimeID"]
        self.attach_path = sock_dir / f"{cdir.id[:16]}.attach"
        self.console_path = sock_dir / f"{cdir.id[:16]}.console"
        self.sel = selectors.DefaultSelector()
        self.clients: dict[socket.socket, dict[str, Any]] = {}
        self.stdin_fd: int | None = None
        self.master: int | None = None
        self.init_pid = 0
        self.exit_status: int | None = None

    # -- events and state --------------------------------------------------

    def event(self, action: str, **attrs: Any) -> None:
        base = {"name": self.config.get("Name", "").lstrip("/"),
                "image": self.config.get("ImageName", "")}
        base.update(self.spec.get("labels") or {})
        base.update({k: str(v) for k, v in attrs.items()})
        append_to_journal(self.journal, Event("container", action, self.cdir.id, base))

    # -- main loop -------------------------------------------------------------

    def run(self, ready_fd: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        # ps/top show "estiba-shim" instead of the forking worker's name
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(b"estiba-shim"), 0, 0, 0)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(wake_r, selectors.EVENT_READ, ("wake", None))
        self.log = JsonLogWriter(self.cdir.log_file, self.config.get("LogMaxSize") or 20 << 20,
                                 self.config.get("LogMaxFiles") or 3)
        self._listen_attach()
        name, max_retry = parse_restart_policy(self.spec.get("restart_policy") or "no")
        delay = 0.1
        first = True
        while True:
            started = time.monotonic()
            error = self.start_once(restarted=not first)
            if first:
                first = False
                msg = f"error: {error}" if error else f"ok {os.getpid()}"
                os.write(ready_fd, msg.encode())
                os.close(ready_fd)
                if error:
                    self._cleanup_runtime()
                    return
            elif error:
                self.cdir.update_state(Status="exited", Running=False, Restarting=False,
                                       Error=error, ExitCode=128, FinishedAt=rfc3339(), Pid=0)
                self.event("die", exitCode=128)
                break
            self.pump()
            code = os.waitstatus_to_exitcode(self.exit_status or 0)
            if code < 0:
                code = 128 - code
            oom = oom_killed(self.config["CgroupsPath"])
            state = self.cdir.read_state()
            restart = not state["StopRequested"] and (
                name in ("always", "unless-stopped")
                or (name == "on-failure" and code != 0
                    and (max_retry == 0 or state["RestartCount"] < max_retry)))
            if oom:
                self.event("oom")
            if not restart:
                self._release_network()
                # the event first: whoever sees the state "exited" also finds the "die"
                self.event("die", exitCode=code)
                self.cdir.update_state(Status="exited", Running=False, Paused=False,
                                       Restarting=False, Pid=0, ExitCode=code, OOMKilled=oom,
                                       FinishedAt=rfc3339())
                self._after_exit()
                break
            self._cleanup_runtime()
            self.cdir.update_state(Status="restarting", Running=True, Paused=False,
                                   Restarting=True, Pid=0, ExitCode=code, OOMKilled=oom,
                                   FinishedAt=rfc3339())
            self.event("die", exitCode=code)
            delay = 0.1 if time.monotonic() - started > 10 else min(delay * 2, 60.0)
            if not self._sleep_unless_stopped(delay):
                self._release_network()
                self.cdir.update_state(Status="exited", Running=False, Restarting=False)
                self._unmount_root()
                break
            self.cdir.update_state(RestartCount=self.cdir.read_state()["RestartCount"] + 1)
        self.log.close()
        self._close_clients()
        with contextlib.suppress(OSError):
            self.attach_path.unlink()
        if self.spec.get("auto_remove"):
            self._auto_remove()

    def _sleep_unless_stopped(self, delay: float) -> bool:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if self.cdir.read_state()["StopRequested"]:
                return False
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return not self.cdir.read_state()["StopRequested"]

    # -- one run of the container ----------------------------------------------

    def start_once(self, restarted: bool = False) -> str | None:
        """Run the container detached; return an error message or None."""
        tty = bool(self.spec.get("tty"))
        open_stdin = bool(self.spec.get("open_stdin"))
        # The runtime's own messages go to a memory file (a file on disk would cost an
        # inode per start), read only when the start fails.
        log_fd = os.memfd_create("runtime-log", os.MFD_CLOEXEC)
        runtime_log = f"/proc/self/fd/{log_fd}"
        args = ["--detach", "--pid-file", str(self.cdir.pid_file), "--bundle",
                str(self.cdir.bundle)]
        close_after: list[int] = []
        console = None
        if tty:
            with contextlib.suppress(OSError):
                self.console_path.unlink()
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            console.bind(str(self.console_path))
            console.listen(1)
            args += ["--console-socket", str(self.console_path)]
            stdio: tuple[Any, Any, Any] = (subprocess.DEVNULL, subprocess.DEVNULL,
                                           subprocess.DEVNULL)
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            if open_stdin:
                in_r, in_w = os.pipe2(os.O_CLOEXEC)
                self.stdin_fd = in_w
                stdin: Any = in_r
                close_after.append(in_r)
            else:
                stdin = subprocess.DEVNULL
            stdio = (stdin, out_w, err_w)
            close_after += [out_w, err_w]
        try:
            proc = self.runtime.popen(self.runtime.command("run", *args, self.rid,
                                                           log_file=runtime_log, wrapped=False),
                                      stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
                                      pass_fds=(log_fd,))
            rc = wait_child(proc, 60)
        except (OSError, subprocess.SubprocessError) as exc:
            rc, _ = -1, exc
        for fd in close_after:
            os.close(fd)
        if rc != 0:
            if console is not None:
                console.close()
            if not tty:
                os.close(out_r)
                os.close(err_r)
            return _runtime_error(_read_all(log_fd), self.runtime.name)
        os.close(log_fd)
        try:
            self.init_pid = int(self.cdir.pid_file.read_text().strip())
        except (OSError, ValueError):
            return f"{self.runtime.name} did not report the container's pid"
        if tty and console is not None:
            console.settimeout(10)
            conn, _ = console.accept()
            with conn:
                self.master = _recv_fd(conn)
            console.close()
            with contextlib.suppress(OSError):
                self.console_path.unlink()
            self.stdin_fd = self.master if open_stdin else None
            os.set_blocking(self.master, False)
            self.sel.register(self.master, selectors.EVENT_READ, ("out", "stdout"))
            if self.spec.get("tty_size"):
                self.resize(*self.spec["tty_size"])
        else:
            for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
                os.set_blocking(fd, False)
                self.sel.register(fd, selectors.EVENT_READ, ("out", stream))
        self.exit_status = None
        now = rfc3339()
        self.cdir.update_state(Status="running", Running=True, Paused=False, Restarting=False,
                               Pid=self.init_pid, StartedAt=now, Error="", OOMKilled=False,
                               ShimPid=os.getpid(), ShimStart=proc_start_time(os.getpid()))
        if restarted:  # the engine announces the first start itself
            self.event("start")
        return None

    def pump(self) -> None:
        """Move output to the log and attached clients until the container is gone."""
        outputs = lambda: [k for k in self.sel.get_map().values() if k.data[0] == "out"]  # noqa: E731
        drain_deadline: float | None = None
        while True:
            if self.exit_status is not None:
                if not outputs():
                    break
                if drain_deadline is None:
                    drain_deadline = time.monotonic() + 2.0
                if time.monotonic() > drain_deadline:
                    break
            for key, _ in self.sel.select(timeout=0.5):
                kind, extra = key.data
                if kind == "wake":
                    with contextlib.suppress(OSError):
                        os.read(key.fd, 512)
                    self._reap()
                elif kind == "out":
                    self._read_output(key.fd, extra)
                elif kind == "listen":
                    self._accept()
                elif kind == "client":
                    self._client_input(key.fileobj)  # type: ignore[arg-type]
            self._reap()
        closed = set()
        for key in outputs():
            self.sel.unregister(key.fd)
            os.close(key.fd)
            closed.add(key.fd)
        self.log.flush_partial()
        if self.master is not None:
            closed.add(self.master)
            self.master = None
        if self.stdin_fd is not None and self.stdin_fd not in closed:
            with contextlib.suppress(OSError):
                os.close(self.stdin_fd)
            self.stdin_fd = None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.init_pid:
                self.exit_status = status

    def _read_output(self, fd: int, stream: str) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the pty's last slave closed
            data = b""
        if not data:
            self.sel.unregister(fd)
            if fd == self.stdin_fd:
                self.stdin_fd = None
            if fd == self.master:
                self.master = None
            os.close(fd)
            return
        self.log.write(stream, data)
        frame = _frame(_STREAM_IDS[stream], data)
        for conn, info in list(self.clients.items()):
            if info.get(stream):
                self._send(conn, frame)

    # -- attach ----------------------------------------------------------------

    def _listen_attach(self) -> None:
        with contextlib.suppress(OSError):
            self.attach_path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.attach_path))
        os.chmod(self.attach_path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
        self.listener = sock
        self.sel.register(sock, selectors.EVENT_READ, ("listen", None))

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(5)
        try:
            header = b""
            while not header.endswith(b"\n") and len(header) < 4096:
                chunk = conn.recv(1)
                if not chunk:
                    break
                header += chunk
            opts = json.loads(header or b"{}")
        except (OSError, ValueError):
            conn.close()
            return
        info = {"stdin": bool(opts.get("stdin")), "stdout": opts.get("stdout", True),
                "stderr": opts.get("stderr", True), "buf": b""}
        if opts.get("logs") and not self._send_backlog(conn, info):
            return
        conn.setblocking(False)
        self.clients[conn] = info
        self.sel.register(conn, selectors.EVENT_READ, ("client", None))

    def _send_backlog(self, conn: socket.socket, info: dict) -> bool:
        """Send an attaching client everything printed so far, then it is live.

        This loop is the only writer of the log, so between the last entry read
        here and the first live frame nothing can be missed or repeated — which an
        attach that read the log first and connected after could not promise (a
        prompt printed without a newline, in the log writer's line buffer, fell
        in between).
        """
        streams = [name for name in ("stdout", "stderr") if info[name]]
        frames = [_frame(_STREAM_IDS[e.stream], e.data)
                  for e in read_logs(self.cdir.log_file, stdout=info["stdout"],
                                     stderr=info["stderr"])]
        frames += [_frame(_STREAM_IDS[name], pending)
                   for name in streams if (pending := self.log.pending(name))]
        try:
            conn.settimeout(30)
            conn.sendall(b"".join(frames))
        except OSError:
            conn.close()
            return False
        return True

    def _client_input(self, conn: socket.socket) -> None:
        info = self.clients.get(conn)
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if info is None:
            return
        if not data:
            self._drop_client(conn)
            if info["stdin"] and self.spec.get("stdin_once"):
                self._close_stdin()
            return
        info["buf"] += data
        buf = info["buf"]
        while len(buf) >= 8:
            kind, length = buf[0], struct.unpack(">I", buf[4:8])[0]
            if len(buf) < 8 + length:
                break
            payload, buf = buf[8:8 + length], buf[8 + length:]
            if kind == FRAME_STDIN and info["stdin"] and self.stdin_fd is not None:
                with contextlib.suppress(OSError):
                    os.set_blocking(self.stdin_fd, True)
                    os.write(self.stdin_fd, payload)
            elif kind == FRAME_CLOSE_STDIN and info["stdin"]:
                self._close_stdin()
            elif kind == FRAME_RESIZE:
                with contextlib.suppress(ValueError):
                    h, w = (int(x) for x in payload.split())
                    self.resize(h, w)
        info["buf"] = buf

    def _close_stdin(self) -> None:
        if self.stdin_fd is not None and self.stdin_fd != self.master:
            with contextlib.suppress(OSError):
                os.close(self.stdin_fd)
            self.stdin_fd = None
        elif self.master is not None:
            with contextlib.suppress(OSError):
                os.write(self.master, b"\x04")  # EOF on a terminal

    def resize(self, height: int, width: int) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                            struct.pack("HHHH", height, width, 0, 0))

    def _send(self, conn: socket.socket, frame: bytes) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(2)
            conn.sendall(frame)
            conn.setblocking(False)
        except OSError:
            self._drop_client(conn)

    def _drop_client(self, conn: socket.socket) -> None:
        self.clients.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn)
        conn.close()

    def _close_clients(self) -> None:
        state = self.cdir.read_state()
        frame = _frame(STREAM_EXIT, str(state["ExitCode"]).encode())
        for conn in list(self.clients):
            self._send(conn, frame)
            self._drop_client(conn)

    # -- cleanup ---------------------------------------------------------------

    def _cleanup_runtime(self) -> None:
        """Forget the stopped container: its cgroups and the runtime's state dir."""
        if not fast_delete(self.runtime, self.rid, self.config["CgroupsPath"]):
            self.runtime.delete(self.rid)
        with contextlib.suppress(OSError):
            self.cdir.pid_file.unlink()

    def _after_exit(self) -> None:
        """What is left once the exit is recorded: the runtime's cgroups and state, the root.

        Done after ``docker wait`` has its answer, not before: removing ten v1
        cgroup directories and unmounting the overlay (which syncs its upper
        filesystem) cost ~5 ms a container. Nothing can trip over them meanwhile:
        every engine operation that needs them gone (start, remove, export, cp)
        first waits for this supervisor to exit; the network, which other
        containers and ``network rm`` see, is given back before the exit is told.
        """
        self._cleanup_runtime()
        self._unmount_root()

    def _unmount_root(self) -> None:
        from engine.runtime.rootfs import unmount

        with contextlib.suppress(Exception):
            unmount(self.cdir.rootfs, lazy=True)  # every process of the container is gone

    def _release_network(self) -> None:
        """The container stopped for good: give back its place on its networks."""
        if self.config.get("NetworkSetup"):
            self._keep_hosts_file()
            try:
                self._engine().networks.teardown(self.cdir.id)
            except Exception:
                traceback.print_exc()

    def _keep_hosts_file(self) -> None:
        """A hosts file kept outside the container's directory (the one of the container
        whose network it shared) goes with its owner: keep its last content in the
        container's directory, where a stopped container's ``HostsPath`` then points
        (as Docker keeps ``/var/lib/docker/containers/<id>/hosts``)."""
        import shutil

        kept = self.cdir.path / "hosts"
        source = self.config.get("HostsPath") or ""  # written by the start, before this run
        if not source or Path(source) == kept:
            return  # the usual case: the network keeps it in the container's directory
        try:
            shutil.copyfile(source, kept)
        except OSError:
            return
        config = self.cdir.read_config()
        config["HostsPath"] = str(kept)
        self.cdir.write_config(config)

    def _engine(self):
        from engine.engine import Engine, EngineConfig

        cfg = self.config["Engine"]
        return Engine(config=EngineConfig(root=Path(cfg["root"]), run_dir=Path(cfg["run_dir"]),
                                          prefix=cfg["prefix"], runtime=cfg["runtime"]))

    def _auto_remove(self) -> None:
        from engine.runtime.containers import finish_deletes

        try:
            self._engine().containers.remove_unless_busy(self.cdir.id)
        except Exception:
            traceback.print_exc()
        finish_deletes()


def fast_delete(runtime: OCIRuntime, runtime_id: str, cgroups_path: str) -> bool:
    """``runtime delete`` of a container whose processes are all gone, without the exec.

    What the runtime would do is remove the (now empty) cgroup directories and its
    state directory; doing it here saves a process start on every container exit.
    False when anything is still in use: then the caller runs the real ``delete``.
    """
    import shutil

    base = Path("/sys/fs/cgroup")
    rel = cgroups_path.lstrip("/")
    dirs = [d / rel for d in base.iterdir() if d.is_dir() and (d / rel).is_dir()]
    if (base / rel / "cgroup.procs").exists():
        dirs.append(base / rel)
    for d in dirs:
        try:
            if (d / "cgroup.procs").read_text().strip():
                return False
        except OSError:
            pass
    for d in dirs:
        for _ in range(50):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.002)  # the kernel frees a cgroup a moment after its last task
        else:
            return False
    shutil.rmtree(runtime.state_root / runtime_id, ignore_errors=True)
    return not (runtime.state_root / runtime_id).exists()


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


def _recv_fd(conn: socket.socket) -> int:
    """Receive one file descriptor passed with SCM_RIGHTS (the runtime's pty master)."""
    _msg, ancdata, _flags, _addr = conn.recvmsg(4096, space_for(1))
    fds = received_fds(ancdata)
    if not fds:
        raise OSError("the runtime sent no terminal")
    return fds[0]


def _read_all(fd: int) -> str:
    """The whole content of the file open at ``fd`` (which is closed)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _runtime_error(log: str, name: str) -> str:
    """The runtime's last error message from its JSON log."""
    msg = ""
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if obj.get("level") in ("error", "fatal"):
                msg = obj.get("msg", msg)
    return f"{name} could not start the container: {msg or 'no message'}"


def main(argv: list[str] | None = None) -> None:
    """``python -m engine.runtime.shim <container dir> <journal> <sock dir> <runtime json>``."""
    argv = argv if argv is not None else sys.argv[1:]
    cdir, journal, sock_dir, rt = ContainerDir(Path(argv[0])), Path(argv[1]), Path(argv[2]), \
        json.loads(argv[3])
    runtime = OCIRuntime.from_dict(rt)
    print(spawn(cdir, runtime, journal, sock_dir))


if __name__ == "__main__":
    main()
