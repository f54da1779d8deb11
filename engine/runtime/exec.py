"""``docker exec``: one more process inside a running container.

An exec is not a new container: the OCI runtime (``runc exec`` / ``crun
exec``) *joins* the container's namespaces, cgroups, root, capabilities and
seccomp filter and starts the process there. We hand it a ``process.json`` —
the container's own OCI ``process`` (capabilities, rlimits, no_new_privs...)
with the exec's command, environment, working directory and user swapped in.

Three things make it more than one subprocess call:

* **Who waits for it.** ``runc exec --detach`` returns as soon as the process
  started; the process is then re-parented to the nearest *child subreaper*
  among its ancestors. So each exec gets a small helper process (this module
  run with ``--helper``) that marks itself a subreaper
  (``prctl(PR_SET_CHILD_SUBREAPER)``), runs the runtime, ``waitpid``s the
  process, and writes its exit code to the exec's record. The helper runs in
  its own session, so the exit code is recorded even if the worker that
  started the exec dies, and ``exec_inspect`` from another process sees it.
* **A terminal.** With ``tty`` the runtime creates a pseudo-terminal *inside*
  the container and sends its master side over a unix socket
  (``--console-socket``) as ``SCM_RIGHTS`` ancillary data: file descriptors
  can travel between processes. We write keystrokes to the master, read what
  the shell prints from it, and ``ioctl(TIOCSWINSZ)`` on it to resize (the
  kernel then sends SIGWINCH to the foreground process).
* **Without a terminal** stdin, stdout and stderr are three pipes, so the two
  output streams stay apart (Docker's stream 1 and 2).

Records live in ``<container dir>/execs/<exec id>.json`` and hold Docker's
``ExecInspect`` fields (``ID``, ``Running``, ``ExitCode``, ``Pid``,
``ProcessConfig``...). :class:`ExecManager` is what
``ContainerManager.exec_create/exec_start/exec_inspect`` delegate to.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import CommandNotFound, Conflict, InvalidArgument, NotFound, RuntimeFailure

STDOUT, STDERR = 1, 2
PR_SET_CHILD_SUBREAPER = 36
START_TIMEOUT = 30.0
ZERO_TIME = "0001-01-01T00:00:00Z"


# --- records ----------------------------------------------------------------------


def _now() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def _check_id(exec_id: str) -> str:
    """Exec ids are 64 hex digits; anything else never reaches a path."""
    if not isinstance(exec_id, str) or len(exec_id) != 64 or any(
            c not in "0123456789abcdef" for c in exec_id):
        raise NotFound(f"No such exec instance: {exec_id!r}")
    return exec_id


def record_path(execs_dir: Path, exec_id: str) -> Path:
    return Path(execs_dir) / f"{_check_id(exec_id)}.json"


def read_record(execs_dir: Path, exec_id: str) -> dict[str, Any]:
    try:
        with open(record_path(execs_dir, exec_id)) as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError) as exc:
        raise NotFound(f"No such exec instance: {exec_id}") from exc


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Whole-file replace (write, fsync, rename): readers never see half a record."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(record, fh, separators=(",", ":"))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _update(path: Path, **changes: Any) -> dict[str, Any]:
    lock = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(path) as fh:
            record = json.load(fh)
        record.update(changes)
        write_record(path, record)
        return record
    finally:
        os.close(lock)


def create(
    execs_dir: Path,
    container_id: str,
    cmd: list[str],
    *,
    tty: bool = False,
    user: str = "",
    env: list[str] | None = None,
    workdir: str = "",
    stdin: bool = False,
    privileged: bool = False,
) -> str:
    """Validate and record an exec (not started yet); returns its id."""
    if not isinstance(cmd, list) or not cmd or not all(isinstance(a, str) for a in cmd):
        raise InvalidArgument("exec needs a command: a non-empty list of strings")
    if privileged:
        raise InvalidArgument("privileged exec is not supported by estiba")
    for item in env or []:
        if not isinstance(item, str) or not item.partition("=")[0]:
            raise InvalidArgument(f"invalid environment variable {item!r} for exec")
    if workdir and not workdir.startswith("/"):
        raise InvalidArgument(f"exec working directory {workdir!r} must be an absolute path")
    execs = Path(execs_dir)
    execs.mkdir(parents=True, exist_ok=True, mode=0o700)
    exec_id = secrets.token_hex(32)
    record = {
        "ID": exec_id,
        "ContainerID": container_id,
        "Running": False,
        "ExitCode": None,
        "Pid": 0,
        "OpenStdin": bool(stdin),
        "OpenStdout": True,
        "OpenStderr": True,
        "CanRemove": False,
        "DetachKeys": "",
        "ProcessConfig": {"tty": bool(tty), "entrypoint": cmd[0], "arguments": cmd[1:],
                          "privileged": False, "user": user or ""},
        # estiba's own fields (not in Docker's ExecInspect)
        "Env": list(env or []),
        "WorkingDir": workdir or "",
        "Created": _now(),
        "StartedAt": ZERO_TIME,
        "FinishedAt": ZERO_TIME,
        "HelperPid": 0,
        "Error": "",
    }
    write_record(record_path(execs, exec_id), record)
    return exec_id


def _alive(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return marker in fh.read()
    except OSError:
        return False


def inspect(execs_dir: Path, exec_id: str) -> dict[str, Any]:
    """Docker's ``ExecInspect`` for one exec, from its record.

    If the helper was killed (it records the exit), the process may still run
    or be gone with its exit code lost: Running then says which, ExitCode stays null.
    """
    record = read_record(execs_dir, exec_id)
    if record.get("Running") and not _alive(record.get("HelperPid", 0), b"engine.runtime.exec"):
        record["Running"] = bool(record.get("Pid")) and Path(f"/proc/{record['Pid']}").exists()
    keys = ("ID", "Running", "ExitCode", "ProcessConfig", "OpenStdin", "OpenStderr",
            "OpenStdout", "CanRemove", "ContainerID", "DetachKeys", "Pid")
    return {k: record.get(k) for k in keys}


def find(containers_dir: Path, exec_id: str) -> Path:
    """The ``execs`` dir holding ``exec_id``, searched as ``<containers_dir>/*/execs/``."""
    _check_id(exec_id)
    for path in Path(containers_dir).glob(f"*/execs/{exec_id}.json"):
        return path.parent
    raise NotFound(f"No such exec instance: {exec_id}")


def exec_ids(execs_dir: Path) -> list[str]:
    """Ids of a container's execs (Docker's ``ExecIDs`` in container inspect)."""
    try:
        names = os.listdir(execs_dir)
    except FileNotFoundError:
        return []
    return sorted(n[:-5] for n in names if n.endswith(".json") and len(n) == 69)


# --- the process spec ---------------------------------------------------------------


def process_spec(record: dict[str, Any], bundle: Path, height: int = 0, width: int = 0) -> dict:
    """The OCI ``process`` for this exec: the container's, with the exec's parts swapped in."""
    from engine.runtime.spec import merge_env, resolve_user

    try:
        config = json.loads((Path(bundle) / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeFailure(f"cannot read the container's OCI spec in {bundle}: {exc}") from exc
    process = dict(config.get("process") or {})
    root = Path(config.get("root", {}).get("path", "rootfs"))
    rootfs = root if root.is_absolute() else Path(bundle) / root
    pc = record["ProcessConfig"]
    tty = bool(pc["tty"])
    extra = ["TERM=xterm"] if tty else []
    process["env"] = merge_env(process.get("env") or [], extra, record.get("Env") or [])
    process["args"] = [pc["entrypoint"], *pc["arguments"]]
    process["cwd"] = record.get("WorkingDir") or process.get("cwd") or "/"
    process["terminal"] = tty
    if pc.get("user"):
        process["user"] = resolve_user(rootfs, pc["user"])["user"]
    process.pop("consoleSize", None)
    if tty and height > 0 and width > 0:
        process["consoleSize"] = {"height": int(height), "width": int(width)}
    return process


def _runtime_error(text: str) -> str:
    """The runtime's reason, from its log (JSON lines with ``msg``) or plain stderr."""
    reason = ""
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
            if item.get("level") in ("error", "fatal"):
                reason = item.get("msg", line)
        except (ValueError, AttributeError):
            reason = line
    return reason or "no message"


def _exit_code_for_failure(reason: str) -> int:
    """Docker's codes for an exec that could not start: 127 not found, else 126."""
    low = reason.lower()
    if "not found" in low or "no such file" in low:
        return 127
    return 126


# --- the session ----------------------------------------------------------------------


class ExecSession:
    """A started exec: bytes in, ``(stream, bytes)`` out, an exit code at the end.

    ``read(timeout)`` returns ``(1, data)`` (stdout, and everything from a tty)
    or ``(2, data)`` (stderr), ``None`` once all output ended, and raises
    ``TimeoutError`` when nothing came within ``timeout`` seconds. Iterating
    gives the same chunks until the end. ``close()`` lets go of the process
    (a tty shell gets SIGHUP); it does not kill it.
    """

    def __init__(self, exec_id: str, record_file: Path, helper: subprocess.Popen, *,
                 tty: bool, pid: int, master: int | None = None, stdin: int | None = None,
                 stdout: int | None = None, stderr: int | None = None) -> None:
        self.id = exec_id
        self.tty = tty
        self.pid = pid
        self._record = record_file
        self._helper = helper
        self._master = master
        self._stdin = stdin
        self._outs: dict[int, int] = {}
        if master is not None:
            self._outs[master] = STDOUT
        if stdout is not None:
            self._outs[stdout] = STDOUT
        if stderr is not None:
            self._outs[stderr] = STDERR

    # input
    def write(self, data: bytes) -> None:
        """Send bytes to the process's stdin (or type them on its terminal)."""
        fd = self._master if self.tty else self._stdin
        if fd is None:
            raise Conflict(f"exec {self.id[:12]} has no stdin open (create it with stdin=True)")
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BrokenPipeError as exc:
                raise Conflict(f"exec {self.id[:12]} closed its stdin") from exc
            view = view[n:]

    def close_stdin(self) -> None:
        """End of input: the process reads EOF (with a tty, this sends Ctrl-D)."""
        if self.tty and self._master is not None:
            os.write(self._master, b"\x04")
        elif self._stdin is not None:
            os.close(self._stdin)
            self._stdin = None

    def resize(self, height: int, width: int) -> None:
        """Set the terminal's rows and columns (the kernel sends SIGWINCH)."""
        if not self.tty or self._master is None:
            raise InvalidArgument(f"exec {self.id[:12]} has no terminal to resize")
        if height <= 0 or width <= 0 or height > 65535 or width > 65535:
            raise InvalidArgument(f"terminal size {height}x{width} is out of range")
        fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    # output
    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        """The next chunk of output: ``(stream, data)``; None at the end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._outs:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0)
            ready, _, _ = select.select(list(self._outs), [], [], wait)
            if not ready:
                raise TimeoutError(f"no output from exec {self.id[:12]} within {timeout}s")
            fd = ready[0]
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the terminal's last user hung up
                data = b""
            if data:
                return self._outs[fd], data
            stream = self._outs.pop(fd)
            if fd != self._master:
                os.close(fd)
            del stream
        return None

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        while (chunk := self.read()) is not None:
            yield chunk

    def output(self, timeout: float = 30.0) -> tuple[bytes, bytes]:
        """Everything the process printed, as (stdout, stderr), once it ended."""
        out = {STDOUT: b"", STDERR: b""}
        deadline = time.monotonic() + timeout
        while (chunk := self.read(max(deadline - time.monotonic(), 0))) is not None:
            out[chunk[0]] += chunk[1]
        return out[STDOUT], out[STDERR]

    # the end
    @property
    def exit_code(self) -> int | None:
        """The process's exit code (128+N when killed by signal N); None while it runs."""
        if self._helper.poll() is None:
            return None
        return _recorded_exit(self._record)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end and return its exit code."""
        try:
            self._helper.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"exec {self.id[:12]} still running after {timeout}s") from exc
        code = _recorded_exit(self._record)
        return code if code is not None else 255

    def close(self) -> None:
        """Let go of the process's stdio (it is not killed)."""
        fds = set(self._outs) | {self._master, self._stdin}
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._outs.clear()
        self._master = self._stdin = None

    def __enter__(self) -> ExecSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _recorded_exit(path: Path) -> int | None:
    try:
        with open(path) as fh:
            return json.load(fh).get("ExitCode")
    except (OSError, ValueError):
        return None


def start(
    execs_dir: Path,
    exec_id: str,
    runtime: Any,
    runtime_id: str,
    bundle: Path,
    *,
    height: int = 0,
    width: int = 0,
    journal: Path | None = None,
    detach: bool = False,
) -> ExecSession:
    """Start a created exec in a running container and return its live session.

    ``runtime`` is the container's :class:`~engine.runtime.oci.OCIRuntime`,
    ``runtime_id`` the container's id in it, ``bundle`` the dir holding its
    ``config.json``. With ``journal`` (the engine's event journal) the helper
    appends ``exec_die`` when the process ends, even if no engine is running.
    ``detach`` (``docker exec -d``): nobody reads the output; the process gets
    /dev/null (or, with a tty, the helper keeps the terminal open and drains
    it), and the session only offers ``wait()``/``exit_code``.
    """
    path = record_path(execs_dir, exec_id)
    record = read_record(execs_dir, exec_id)
    if record.get("Running") or record.get("StartedAt", ZERO_TIME) != ZERO_TIME:
        raise Conflict(f"exec {exec_id[:12]} has already been started")
    state = runtime.state(runtime_id) or {}
    status = state.get("status")
    if status == "paused":
        raise Conflict(f"container {record['ContainerID'][:12]} is paused, "
                       "unpause the container before exec")
    if status != "running":
        raise Conflict(f"container {record['ContainerID'][:12]} is not running")
    tty = bool(record["ProcessConfig"]["tty"])
    process = process_spec(record, Path(bundle), height, width)
    _claim(path, exec_id)
    work = Path(tempfile.mkdtemp(prefix="estiba-exec-"))  # short: a socket path has 108 bytes
    (work / "process.json").write_text(json.dumps(process))
    args = ["--process", str(work / "process.json"), "--detach", "--pid-file", str(work / "pid")]
    if tty:
        args += ["--tty", "--console-socket", str(work / "tty.sock")]
    # The runtime's reasons for refusing go to a log file, not to the exec's stderr.
    argv = runtime.command("exec", *args, runtime_id, log_file=work / "runtime.log")
    plan = {"argv": argv, "record": str(path), "work": str(work), "tty": tty,
            "journal": str(journal) if journal else "", "container": record["ContainerID"],
            "detach": bool(detach)}

    parent_ctl, child_ctl = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    opened: list[int] = []
    try:
        if tty or detach:
            stdio = [subprocess.DEVNULL] * 3
            ours: dict[str, int | None] = {}
        else:
            if record.get("OpenStdin"):
                in_r, in_w = os.pipe()
                opened += [in_r, in_w]
            else:
                in_r, in_w = os.open(os.devnull, os.O_RDONLY), None
                opened.append(in_r)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            opened += [out_r, out_w, err_r, err_w]
            stdio = [in_r, out_w, err_w]
            ours = {"stdin": in_w, "stdout": out_r, "stderr": err_r}
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"]
                                            if env.get("PYTHONPATH") else "")
        helper = subprocess.Popen(
            # -S: no site-packages scan; the helper needs the stdlib and this package only.
            [sys.executable, "-S", "-m", "engine.runtime.exec", "--helper", str(child_ctl.fileno()),
             json.dumps(plan)],
            stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], pass_fds=[child_ctl.fileno()],
            start_new_session=True, cwd="/", env=env,
        )
    except BaseException:
        for fd in opened:
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(work, ignore_errors=True)
        parent_ctl.close()
        child_ctl.close()
        raise
    child_ctl.close()
    if not tty and not detach:  # the helper (and then the process) holds the other ends now
        for fd in stdio:
            if isinstance(fd, int) and fd >= 0:
                os.close(fd)
    try:
        parent_ctl.settimeout(START_TIMEOUT)
        msg, fds, _, _ = socket.recv_fds(parent_ctl, 65536, 1)
    except (OSError, TimeoutError) as exc:
        helper.kill()
        helper.wait()
        _close_all(ours)
        shutil.rmtree(work, ignore_errors=True)
        raise RuntimeFailure(f"exec {exec_id[:12]}: the exec helper did not report: {exc}") from exc
    finally:
        parent_ctl.close()
    answer = json.loads(msg or b"{}")
    if "error" in answer or not answer.get("pid"):
        helper.wait()
        _close_all(ours)
        for fd in fds:
            os.close(fd)
        reason = answer.get("error") or "the exec helper ended without starting the process"
        if answer.get("exit_code") == 127:
            raise CommandNotFound(f"OCI runtime exec failed: {reason}")
        raise RuntimeFailure(f"OCI runtime exec failed: {reason}")
    session = ExecSession(exec_id, path, helper, tty=tty, pid=int(answer["pid"]),
                          master=fds[0] if tty and fds and not detach else None,
                          stdin=ours.get("stdin"), stdout=ours.get("stdout"),
                          stderr=ours.get("stderr"))
    if detach:
        for fd in fds:
            os.close(fd)
    elif tty and height > 0 and width > 0:
        session.resize(height, width)
    return session


def _claim(path: Path, exec_id: str) -> None:
    """Mark the exec started under its lock, so two callers can never both start it."""
    lock = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(path) as fh:
            record = json.load(fh)
        if record.get("Running") or record.get("StartedAt", ZERO_TIME) != ZERO_TIME:
            raise Conflict(f"exec {exec_id[:12]} has already been started")
        record["StartedAt"] = _now()
        write_record(path, record)
    finally:
        os.close(lock)


def _close_all(fds: dict[str, int | None]) -> None:
    for fd in fds.values():
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


# --- the helper (its own process: subreaper, waits, records) ---------------------------


def _helper(ctl_fd: int, plan: dict[str, Any]) -> int:
    """Run the runtime, hand the session its terminal, wait for the process, record the exit."""
    ctl = socket.socket(fileno=ctl_fd)
    record = Path(plan["record"])
    work = Path(plan["work"])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the session's end must not stop the bookkeeping

    def tell(message: dict, fds: list[int] | None = None) -> None:
        with contextlib.suppress(OSError):
            socket.send_fds(ctl, [json.dumps(message).encode()], fds or [])

    def fail(reason: str, code: int) -> int:
        _update(record, Running=False, ExitCode=code, Error=reason, StartedAt=_now(),
                FinishedAt=_now())
        tell({"error": reason, "exit_code": code})
        shutil.rmtree(work, ignore_errors=True)
        return code

    listener = None
    if plan["tty"]:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(work / "tty.sock"))
        listener.listen(1)
    runtime = subprocess.Popen(plan["argv"], stdin=0, stdout=1, stderr=2, close_fds=True)
    runtime_status: int | None = None
    master: int | None = None
    if listener is not None:
        listener.settimeout(0.05)
        deadline = time.monotonic() + START_TIMEOUT
        while master is None and time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                pid, status = os.waitpid(runtime.pid, os.WNOHANG)
                if pid:
                    runtime_status = status
                    break
                continue
            with conn:
                conn.settimeout(START_TIMEOUT)
                _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
                master = fds[0] if fds else None
        listener.close()
    if runtime_status is None:
        _, runtime_status = os.waitpid(runtime.pid, 0)
    runtime.returncode = os.waitstatus_to_exitcode(runtime_status)
    # From here the exec's stdio belongs to the process alone.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    if runtime.returncode != 0:
        try:
            reason = _runtime_error((work / "runtime.log").read_text())
        except OSError:
            reason = f"{Path(plan['argv'][0]).name} exec exited with {runtime.returncode}"
        if master is not None:
            os.close(master)
        return fail(reason, _exit_code_for_failure(reason))
    try:
        pid = int((work / "pid").read_text().strip())
    except (OSError, ValueError):
        return fail("the runtime wrote no pid file", 126)
    _update(record, Running=True, Pid=pid, StartedAt=_now(), HelperPid=os.getpid())
    tell({"pid": pid}, [master] if master is not None else None)
    if master is not None and plan.get("detach"):
        # Nobody attached: keep the terminal open (a hang-up would end the shell), discard output.
        threading.Thread(target=_drain, args=(master,), daemon=True).start()
    elif master is not None:
        os.close(master)  # the session holds it now: when it lets go, the shell gets SIGHUP
    ctl.close()
    shutil.rmtree(work, ignore_errors=True)
    code = _reap(pid)
    _update(record, Running=False, ExitCode=code, FinishedAt=_now())
    if plan.get("journal"):
        from engine.events import Event, append_to_journal

        with contextlib.suppress(OSError):
            append_to_journal(Path(plan["journal"]), Event(
                "container", "exec_die", plan["container"],
                {"execID": record.stem, "exitCode": str(code)}))
    return code


def _drain(fd: int) -> None:
    """Read and drop a detached exec's terminal output until its last user hangs up."""
    with contextlib.suppress(OSError):
        while os.read(fd, 65536):
            pass
    with contextlib.suppress(OSError):
        os.close(fd)


def _reap(pid: int) -> int:
    """Wait for ``pid`` (now our child: we are its subreaper); its exit code, 128+N for signals."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            # Not re-parented to us (a runtime that keeps it elsewhere): wait for it to vanish.
            while Path(f"/proc/{pid}").exists():
                time.sleep(0.1)
            return 255
        if got == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.waitstatus_to_exitcode(status)


# --- what ContainerManager delegates to ----------------------------------------------------


class ExecManager:
    """``exec_create/exec_start/exec_inspect`` for a ``ContainerManager``.

    Uses of the manager: ``get(id_or_name)`` -> Container (``id``, ``dir``,
    ``runtime_id``, ``bundle``, ``state.status``), ``runtime_for(container)``,
    ``dir`` (the containers' root, where execs are found by id) and
    ``engine.events`` for the exec_create/exec_start/exec_die events.
    """

    def __init__(self, containers: Any) -> None:
        self.containers = containers

    def _events(self) -> Any:
        return getattr(getattr(self.containers, "engine", None), "events", None)

    def create(self, id_or_name: str, cmd: list[str], *, tty: bool = False, user: str = "",
               env: list[str] | None = None, workdir: str = "", stdin: bool = False) -> str:
        c = self.containers.get(id_or_name)
        if c.state.status != "running":
            what = "paused" if c.state.status == "paused" else "not running"
            raise Conflict(f"Container {c.id} is {what}")
        exec_id = create(Path(c.dir) / "execs", c.id, cmd, tty=tty, user=user, env=env,
                         workdir=workdir, stdin=stdin)
        events = self._events()
        if events is not None:
            events.emit("container", "exec_create", c.id,
                        {"execID": exec_id, "name": c.name, "execCommand": " ".join(cmd)})
        return exec_id

    def start(self, exec_id: str, height: int = 0, width: int = 0,
              detach: bool = False) -> ExecSession:
        execs_dir = find(self.containers.dir, exec_id)
        c = self.containers.get(execs_dir.parent.name)
        events = self._events()
        journal = getattr(events, "journal", None)
        session = start(execs_dir, exec_id, self.containers.runtime_for(c), c.runtime_id,
                        c.bundle, height=height, width=width, journal=journal, detach=detach)
        if events is not None:
            events.emit("container", "exec_start", c.id, {"execID": exec_id, "name": c.name})
        return session

    def inspect(self, exec_id: str) -> dict[str, Any]:
        return inspect(find(self.containers.dir, exec_id), exec_id)

    def resize(self, exec_id: str, session: ExecSession, height: int, width: int) -> None:
        session.resize(height, width)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--helper":
        sys.exit(_helper(int(sys.argv[2]), json.loads(sys.argv[3])))
    sys.exit("usage: python -m engine.runtime.exec --helper <fd> <plan>")
