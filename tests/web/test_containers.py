"""Containers through the worker: the projection follows events, reconcile and streams."""

from __future__ import annotations

import os
import signal
import time

import pytest

from estiba import gateway
from tests.web.conftest import eventually


def _row(engine_id: str):
    from containers_app.models import Container

    return Container.objects.filter(engine_id=engine_id).first()


def _run(made: list[str], *cmd: str, **spec) -> str:
    created = gateway.call("containers.create", {"image": "busybox:latest", "cmd": list(cmd),
                                                 **spec})
    made.append(created["Id"])
    gateway.call("containers.start", created["Id"])
    return created["Id"]


def test_projection_follows_the_engine_and_a_kill_behind_its_back(orm, containers_made, engine):
    cid = _run(containers_made, "sh", "-c", "echo hello; sleep 60")
    row = eventually(lambda: (r := _row(cid)) and r.state == "running" and r, what="running row")
    assert row.image == "busybox:latest"
    # Kill the container's process from outside estiba: the row must show it exited.
    pid = engine.containers.get(cid).pid
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: _row(cid).state == "exited", timeout=5, what="exited row")
    gateway.call("containers.remove", cid, force=True)
    eventually(lambda: _row(cid) is None, timeout=5, what="row removed")


def test_logs_stream_live_lines(web_worker, containers_made):
    cid = _run(containers_made, "sh", "-c", "echo first; sleep 1; echo second; sleep 60")
    seen = []
    stream = gateway.stream("containers.logs", cid, follow=True)
    try:
        for entry in stream:
            seen.append(entry["data"])
            if b"second" in b"".join(seen):
                break
    finally:
        stream.close()
    assert b"first\n" in seen[0]


def test_engine_error_messages_reach_the_caller(web_worker):
    with pytest.raises(gateway.errors.NotFound, match="no-such-container"):
        gateway.call("containers.start", "no-such-container")


def test_terminal_session_runs_a_command_and_resizes(web_worker, containers_made):
    cid = _run(containers_made, "sleep", "60")
    sess = gateway.session("containers.exec", cid, ["/bin/sh"], tty=True, rows=30, cols=100)
    try:
        sess.write(b"stty size; echo h''i\n")
        out = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out += sess.read(0.5) or b""
            text = out.replace(b"\r", b"")
            if b"30 100" in text and b"\nhi\n" in text:
                break
        assert b"30 100" in text, text
        assert b"\nhi\n" in text, text
        sess.resize(40, 120)
        sess.write(b"stty size\n")
        deadline = time.monotonic() + 10
        while b"40 120" not in out and time.monotonic() < deadline:
            out += sess.read(0.5) or b""
        assert b"40 120" in out
    finally:
        sess.close()
