"""Containers outlive the engine process: kill -9 of a worker, restart policies, attach."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from engine import Engine
from engine.runtime import shim
from engine.runtime.containers import ContainerSpec

from .conftest import host_pid_alive, parent_pid, wait_for

WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from engine import Engine, EngineConfig
    from engine.runtime.containers import ContainerSpec
    root, run_dir, prefix = sys.argv[1:4]
    eng = Engine(config=EngineConfig(root=Path(root), run_dir=Path(run_dir), prefix=prefix))
    c = eng.containers.create(ContainerSpec(
        image="busybox:latest", network_mode="none",
        cmd=["sh", "-c", "trap 'echo bye; exit 42' TERM; i=0; "
                         "while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"]))
    eng.containers.start(c.id)
    print(c.id, flush=True)
    time.sleep(1000)
""")


def test_container_survives_sigkill_of_the_worker(engine, engine_config, leak_check):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(engine_config.root), str(engine_config.run_dir),
         engine_config.prefix],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root,
        env={**os.environ, "PYTHONPATH": root})
    cid = None
    try:
        cid = worker.stdout.readline().strip()
        if len(cid) != 64:
            worker.kill()
            pytest.fail(f"the worker did not start a container: {worker.stderr.read()[-2000:]}")
        launcher = parent_pid(engine.containers._cdir(cid).read_state()["ShimPid"])
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        # the worker's launcher follows it (its socket closed); the supervisor stays
        wait_for(lambda: not host_pid_alive(launcher))
        # a new engine object, as a restarted worker would make
        fresh = Engine(config=engine_config)
        fresh.containers.recover()
        c = fresh.containers.get(cid)
        assert c.state.status == "running" and host_pid_alive(c.pid)
        wait_for(lambda: len(list(fresh.containers.logs(cid))) >= 3)
        before = len(list(fresh.containers.logs(cid)))
        time.sleep(0.3)
        assert len(list(fresh.containers.logs(cid))) > before  # still supervised and logged
        fresh.containers.stop(cid, timeout=10)
        assert fresh.containers.wait(cid, timeout=20) == 42
        lines = [e.data for e in fresh.containers.logs(cid, tail=1)]
        assert lines == [b"bye\n"]
        fresh.containers.remove(cid)
        assert leak_check(fresh, c) == []
        cid = None
    finally:
        if worker.poll() is None:
            worker.kill()
        if cid:
            engine.containers.remove(cid, force=True)


def test_restart_policy_on_failure_counts_retries(engine, containers):
    offset = engine.events.end_offset()
    c = containers(cmd=["sh", "-c", "echo run; exit 3"], restart_policy="on-failure:2",
                   start=True)
    wait_for(lambda: engine.containers.get(c.id).state.status == "exited", timeout=30)
    state = engine.containers.get(c.id).state
    assert state.restart_count == 2 and state.exit_code == 3
    assert [e.data for e in engine.containers.logs(c.id)] == [b"run\n"] * 3
    with open(engine.events.journal) as fh:
        fh.seek(offset)
        dies = [e for e in map(json.loads, fh) if e["actor_id"] == c.id and e["action"] == "die"]
    assert len(dies) == 3


def test_restart_policy_on_failure_not_after_success(engine, containers):
    c = containers(cmd=["true"], restart_policy="on-failure", start=True)
    assert engine.containers.wait(c.id, timeout=20) == 0
    time.sleep(0.3)
    assert engine.containers.get(c.id).state.restart_count == 0


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_restart_policy_always_until_stopped(engine, containers, policy):
    c = containers(cmd=["sh", "-c", "sleep 0.1; exit 0"], restart_policy=policy, start=True)
    wait_for(lambda: engine.containers.get(c.id).state.restart_count >= 2, timeout=30)
    engine.containers.stop(c.id, timeout=2)
    state = engine.containers.get(c.id).state
    assert state.status == "exited"
    count = state.restart_count
    time.sleep(0.5)
    assert engine.containers.get(c.id).state.restart_count == count  # a stop is final


def test_attach_streams_and_stdin(engine, containers):
    c = containers(cmd=["sh", "-c", "read line; echo got $line; echo oops >&2"], open_stdin=True,
                   stdin_once=True, start=True)
    with engine.containers.attach(c.id) as session:
        session.write(b"hello\n")
        got = [session.read(timeout=10), session.read(timeout=10)]
    assert sorted(got) == [(1, b"got hello\n"), (2, b"oops\n")]
    assert engine.containers.wait(c.id, timeout=20) == 0


@pytest.mark.parametrize("tty", [True, False])
def test_attach_with_the_log_misses_nothing_printed_before(engine, containers, tty):
    """``docker run -it`` attaches once the container started: what it printed by then —
    a prompt with no newline, in the log writer's line buffer — comes first, once."""
    c = containers(cmd=["sh", "-c", "printf 'one\\n/ # '; sleep 0.5; echo two"], tty=tty,
                   open_stdin=True, start=True)
    wait_for(lambda: b"one" in b"".join(e.data for e in engine.containers.logs(c.id)))
    time.sleep(0.1)  # the prompt is printed too, and not logged: no newline yet
    session = engine.containers.attach(c.id, logs=True)
    got = b"".join(data for _stream, data in iter(lambda: session.read(10), None))
    session.close()
    newline = b"\r\n" if tty else b"\n"
    assert got == b"one" + newline + b"/ # two" + newline
    assert session.exit_code == 0


def test_tty_through_the_console_socket(engine, containers):
    c = containers(cmd=["sh", "-c", "tty; stty size; read x; echo typed $x"], tty=True,
                   open_stdin=True, tty_size=(30, 100), start=True)
    with engine.containers.attach(c.id) as session:
        session.write(b"abc\n")
        out = b""
        deadline = time.monotonic() + 10
        while b"typed abc" not in out and time.monotonic() < deadline:
            item = session.read(timeout=10)
            if item is None:
                break
            out += item[1]
    assert b"typed abc" in out  # our input went through the pty and came back
    assert engine.containers.wait(c.id, timeout=20) == 0
    logged = b"".join(e.data for e in engine.containers.logs(c.id))
    assert b"/dev/pts/0" in logged and b"30 100" in logged  # a terminal of the asked size
    assert {e.stream for e in engine.containers.logs(c.id)} == {"stdout"}


def test_auto_remove(engine, containers):
    c = engine.containers.create(ContainerSpec(image="busybox:latest", network_mode="none",
                                               cmd=["true"], auto_remove=True))
    engine.containers.start(c.id)
    wait_for(lambda: not c.dir.exists(), timeout=20)
    # the supervisor removed it, files too (it ends with os._exit: no atexit hook runs)
    wait_for(lambda: not (engine.containers.dir / f".rm-{c.id}").exists(), timeout=20)


def test_recover_settles_a_container_whose_supervisor_died(engine, containers, leak_check):
    c = containers(cmd=["sleep", "1000"], start=True)
    state = json.loads((c.dir / "state.json").read_text())
    os.kill(state["ShimPid"], signal.SIGKILL)  # the supervisor dies; the container lives on
    wait_for(lambda: shim.proc_start_time(state["ShimPid"]) != state["ShimStart"])
    fresh = Engine(config=engine.config)
    fresh.containers.recover()
    assert fresh.containers.get(c.id).state.status == "running"  # unsupervised, still there
    fresh.containers.stop(c.id, timeout=1)  # can still be stopped through the runtime
    after = fresh.containers.get(c.id).state
    assert after.status == "exited" and after.exit_code == 255 and "supervisor" in after.error
    fresh.containers.remove(c.id)
    assert leak_check(fresh, c) == []


def test_exec_is_delegated(engine, containers):
    c = containers(cmd=["sleep", "1000"], start=True)
    exec_id = engine.containers.exec_create(c.id, ["sh", "-c", "echo in $(hostname)"])
    with engine.containers.exec_start(exec_id) as session:
        out, _err = session.output(timeout=20)
        assert session.wait(timeout=20) == 0
    assert out == f"in {c.id[:12]}\n".encode()
    wait_for(lambda: engine.containers.exec_inspect(exec_id)["ExitCode"] == 0)
    assert engine.containers.get(c.id).to_docker_inspect()["ExecIDs"] == [exec_id]


def test_kill_by_hand_is_not_undone_by_the_policy(engine, containers):
    c = containers(cmd=["sleep", "1000"], restart_policy="always", start=True)
    engine.containers.kill(c.id, "SIGKILL")
    assert engine.containers.wait(c.id, timeout=20) == 137
    time.sleep(0.5)
    state = engine.containers.get(c.id).state
    assert state.status == "exited" and state.restart_count == 0


def test_force_remove_of_a_running_auto_remove_container_does_not_wait_for_it(
        engine, leak_check):
    """The remover holds the container's op lock while its supervisor exits; the
    supervisor's own auto-remove must not wait for that lock (it took 10 s)."""
    c = engine.containers.create(ContainerSpec(image="busybox:latest", network_mode="none",
                                               cmd=["sleep", "30"], auto_remove=True))
    engine.containers.start(c.id)
    started = time.monotonic()
    engine.containers.remove(c.id, force=True)
    assert time.monotonic() - started < 5
    wait_for(lambda: not leak_check(engine, c), timeout=10)
