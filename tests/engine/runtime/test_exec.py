"""``docker exec`` in real containers: output, exit codes, user/env/workdir, stdin, a tty."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from engine.errors import CommandNotFound, Conflict, InvalidArgument, NotFound
from engine.runtime import exec as exec_mod


@pytest.fixture(scope="module")
def box(engine):
    """One running busybox container for the whole module (network none, 64 MiB)."""
    from engine.runtime.containers import ContainerSpec

    c = engine.containers.create(ContainerSpec(
        image="busybox:latest", cmd=["sleep", "1000"], network_mode="none",
        env=["FROM_IMAGE_RUN=1"], memory=64 * 2**20))
    try:
        engine.containers.start(c.id)
        yield engine.containers.get(c.id)
    finally:
        engine.containers.remove(c.id, force=True)


def run(engine, box, cmd, **kw):
    exec_id = engine.containers.exec_create(box.id, cmd, **kw)
    session = engine.containers.exec_start(exec_id)
    out, err = session.output(timeout=20)
    code = session.wait(timeout=20)
    session.close()
    return exec_id, out, err, code


def test_output_streams_and_exit_code(engine, box):
    exec_id, out, err, code = run(engine, box, ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])
    assert (out, err, code) == (b"to-out\n", b"to-err\n", 3)
    info = engine.containers.exec_inspect(exec_id)
    assert info["ExitCode"] == 3 and info["Running"] is False
    assert info["ContainerID"] == box.id and info["Pid"] > 0
    assert info["ProcessConfig"] == {"tty": False, "entrypoint": "sh", "privileged": False,
                                     "arguments": ["-c", "echo to-out; echo to-err >&2; exit 3"],
                                     "user": ""}
    assert run(engine, box, ["true"])[3] == 0
    assert run(engine, box, ["sh", "-c", "kill -9 $$"])[3] == 137


def test_user_env_and_workdir(engine, box):
    _, out, _, code = run(engine, box, ["sh", "-c", "id -u; id -g; pwd; echo $FOO $FROM_IMAGE_RUN"],
                          user="daemon", env=["FOO=bar"], workdir="/tmp")
    assert code == 0
    assert out.decode().split("\n")[:4] == ["1", "1", "/tmp", "bar 1"]
    _, out, _, _ = run(engine, box, ["id", "-u"], user="65534:0")
    assert out == b"65534\n"
    with pytest.raises(InvalidArgument, match="nosuchuser"):
        run(engine, box, ["true"], user="nosuchuser")
    with pytest.raises(InvalidArgument, match="absolute"):
        engine.containers.exec_create(box.id, ["true"], workdir="tmp")


def test_stdin_is_piped(engine, box):
    exec_id = engine.containers.exec_create(box.id, ["sh", "-c", "tr a-z A-Z; echo done >&2"],
                                            stdin=True)
    with engine.containers.exec_start(exec_id) as session:
        session.write(b"hello exec\n")
        session.close_stdin()
        assert session.output(timeout=20) == (b"HELLO EXEC\n", b"done\n")
        assert session.wait(timeout=20) == 0


def test_tty_echo_and_resize(engine, box):
    exec_id = engine.containers.exec_create(box.id, ["sh"], tty=True, stdin=True)
    with engine.containers.exec_start(exec_id) as session:
        session.resize(24, 80)
        session.write(b"echo h''i; stty size\n")
        seen = _until(session, b"24 80")
        assert b"\r\nhi\r\n" in seen  # typed "h''i", the shell printed "hi"
        session.resize(33, 111)
        session.write(b"stty size; echo $TERM\n")
        seen = _until(session, b"xterm")
        assert b"33 111" in seen
        session.write(b"exit 7\n")
        assert session.wait(timeout=20) == 7
    info = engine.containers.exec_inspect(exec_id)
    assert info["ProcessConfig"]["tty"] is True and info["ExitCode"] == 7


def _until(session, needle: bytes, timeout: float = 15) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        chunk = session.read(max(deadline - time.monotonic(), 0.01))
        assert chunk is not None, seen
        assert chunk[0] == exec_mod.STDOUT
        seen += chunk[1]
    return seen


def test_missing_command_is_127(engine, box):
    exec_id = engine.containers.exec_create(box.id, ["no-such-program"])
    with pytest.raises(CommandNotFound, match="no-such-program"):
        engine.containers.exec_start(exec_id)
    assert engine.containers.exec_inspect(exec_id)["ExitCode"] == 127


def test_inspect_from_another_process_while_running_and_after(engine, box):
    exec_id = engine.containers.exec_create(box.id, ["sh", "-c", "read line; exit 4"], stdin=True)
    session = engine.containers.exec_start(exec_id)
    script = (
        "import json, sys\nfrom engine import Engine, EngineConfig\n"
        "c = EngineConfig(root=sys.argv[1], run_dir=sys.argv[2], prefix=sys.argv[3])\n"
        "print(json.dumps(Engine(config=c).containers.exec_inspect(sys.argv[4])))\n"
    )
    cfg = engine.config

    def inspect_elsewhere() -> dict:
        out = subprocess.run([sys.executable, "-c", script, str(cfg.root), str(cfg.run_dir),
                              cfg.prefix, exec_id], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    running = inspect_elsewhere()
    assert running["Running"] is True and running["ExitCode"] is None
    assert running["Pid"] == session.pid
    session.write(b"go\n")
    assert session.wait(timeout=20) == 4
    session.close()
    done = inspect_elsewhere()
    assert done["Running"] is False and done["ExitCode"] == 4
    with pytest.raises(Conflict, match="already been started"):
        engine.containers.exec_start(exec_id)
    died = [e for e in engine.events.history() if e.action == "exec_die"
            and e.attributes.get("execID") == exec_id]
    assert died and died[0].attributes["exitCode"] == "4"


def test_unknown_exec_and_stopped_container(engine):
    from engine.runtime.containers import ContainerSpec

    with pytest.raises(NotFound):
        engine.containers.exec_inspect("0" * 64)
    with pytest.raises(NotFound):
        engine.containers.exec_inspect("../../etc/passwd")
    c = engine.containers.create(ContainerSpec(image="busybox:latest", cmd=["true"],
                                               network_mode="none"))
    try:
        with pytest.raises(Conflict, match="not running"):
            engine.containers.exec_create(c.id, ["true"])
    finally:
        engine.containers.remove(c.id, force=True)


def test_exec_dies_with_its_container(engine):
    from engine.runtime.containers import ContainerSpec

    c = engine.containers.create(ContainerSpec(image="busybox:latest", cmd=["sleep", "1000"],
                                               network_mode="none"))
    try:
        engine.containers.start(c.id)
        exec_id = engine.containers.exec_create(c.id, ["sleep", "999"])
        session = engine.containers.exec_start(exec_id)
        engine.containers.kill(c.id)
        assert session.wait(timeout=20) == 137  # SIGKILLed with the PID namespace
        session.close()
    finally:
        engine.containers.remove(c.id, force=True)


def test_exec_through_crun(engine_config):
    """crun (the default on v2 hosts) takes the same exec flags; its container, its exec."""
    import dataclasses
    import shutil as sh

    from engine import Engine
    from engine.runtime.containers import ContainerSpec

    if sh.which("crun") is None:
        pytest.skip("crun is not installed")
    eng = Engine(config=dataclasses.replace(engine_config, runtime="crun"))
    c = eng.containers.create(ContainerSpec(image="busybox:latest", cmd=["sleep", "1000"],
                                            network_mode="none"))
    try:
        eng.containers.start(c.id)
        assert eng.containers.runtime_for(eng.containers.get(c.id)).name == "crun"
        _, out, err, code = run(eng, c, ["sh", "-c", "echo via-crun; echo e >&2; exit 9"])
        assert (out, err, code) == (b"via-crun\n", b"e\n", 9)
        exec_id = eng.containers.exec_create(c.id, ["sh"], tty=True, stdin=True)
        with eng.containers.exec_start(exec_id) as session:
            session.resize(21, 71)
            session.write(b"stty size; exit 6\n")
            assert b"21 71" in _until(session, b"21 71")
            assert session.wait(timeout=20) == 6
    finally:
        eng.containers.remove(c.id, force=True)


def test_exit_is_recorded_after_the_starting_process_is_killed(engine, box):
    """The helper, not the caller, waits for the process: SIGKILL of the caller loses nothing."""
    cfg = engine.config
    script = (
        "import os, signal, sys\nfrom engine import Engine, EngineConfig\n"
        "c = EngineConfig(root=sys.argv[1], run_dir=sys.argv[2], prefix=sys.argv[3])\n"
        "e = Engine(config=c)\n"
        "x = e.containers.exec_create(sys.argv[4], ['sh', '-c', 'sleep 1; exit 5'])\n"
        "e.containers.exec_start(x)\n"
        "print(x, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(cfg.root), str(cfg.run_dir),
                          cfg.prefix, box.id], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9, out.stderr
    exec_id = out.stdout.strip()
    assert engine.containers.exec_inspect(exec_id)["Running"] is True
    deadline = time.monotonic() + 20
    while (info := engine.containers.exec_inspect(exec_id))["Running"]:
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    assert info["ExitCode"] == 5


@pytest.mark.parametrize("tty", [False, True])
def test_detached_exec_keeps_running_unread(engine, box, tty):
    """``docker exec -d``: output nobody reads must not kill the process (no SIGPIPE/SIGHUP)."""
    exec_id = engine.containers.exec_create(
        box.id, ["sh", "-c", "echo one; sleep 0.3; echo two; exit 4"], tty=tty)
    session = exec_mod.start(box.dir / "execs", exec_id, engine.containers.runtime_for(box),
                             box.runtime_id, box.bundle, detach=True)
    session.close()
    assert session.read(timeout=1) is None
    assert session.wait(timeout=20) == 4
    assert engine.containers.exec_inspect(exec_id)["ExitCode"] == 4
