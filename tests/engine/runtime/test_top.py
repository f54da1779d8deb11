"""``docker top`` of a real container: its PID 1 mapped to the host PID, ps-like columns."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from engine.errors import Conflict, InvalidArgument
from engine.runtime import top
from engine.runtime.containers import ContainerSpec


@pytest.fixture(scope="module")
def container(engine):
    """A running busybox with a second process, run as uid 1 (daemon) through runc exec."""
    c = engine.containers.create(ContainerSpec(image="busybox:latest", cmd=["sleep", "1000"],
                                               network_mode="none"))
    try:
        engine.containers.start(c.id)
        c = engine.containers.get(c.id)
        runtime = engine.containers.runtime_for(c)
        argv = runtime.command("exec", "-d", "--user", "1:1", c.runtime_id, "sleep", "999")
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # runc returns once the process exists; it becomes "sleep 999" at its execve.
        deadline = time.monotonic() + 10
        while not any(p.args == ["sleep", "999"] for p in top.processes(c.pid)):
            assert time.monotonic() < deadline, "the exec'd sleep never showed up"
            time.sleep(0.02)
        yield c
    finally:
        engine.containers.remove(c.id, force=True)


def test_pid_1_inside_is_the_init_on_the_host(container):
    rows = top.processes(container.pid)
    init = next(p for p in rows if p.host_pid == container.pid)
    assert init.container_pid == 1
    assert init.args == ["sleep", "1000"]
    other = next(p for p in rows if p.args == ["sleep", "999"])
    assert other.container_pid > 1 and other.host_pid != other.container_pid
    assert other.uid == 1
    assert len(rows) == 2  # nothing of the host


def test_default_titles_are_ps_ef(engine, container):
    out = engine.containers.top(container.id)  # the manager delegates here
    assert out["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    by_pid = {row[1]: row for row in out["Processes"]}
    init = by_pid[str(container.pid)]
    assert init[0] == "root" and init[5] == "?" and init[7] == "sleep 1000"
    assert init[6] == "00:00:00" and ":" in init[4]
    sleeper = next(r for r in out["Processes"] if r[7] == "sleep 999")
    assert sleeper[0] == "daemon"  # uid 1 in the host's passwd, as docker top shows it
    assert all(isinstance(cell, str) for row in out["Processes"] for cell in row)
    assert top.top(container.pid, "-ef")["Titles"] == out["Titles"]


def test_aux_and_custom_fields(engine, container):
    aux = engine.containers.top(container.id, "aux")
    assert aux["Titles"] == ["USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START",
                             "TIME", "COMMAND"]
    init = next(r for r in aux["Processes"] if r[1] == str(container.pid))
    assert init[7].startswith("S") and int(init[5]) > 0
    mine = top.top(container.pid, "-o pid,cpid,user,args")
    assert mine["Titles"] == ["PID", "CPID", "USER", "COMMAND"]
    assert [str(container.pid), "1", "root", "sleep 1000"] in mine["Processes"]
    assert top.top(container.pid, "-e")["Titles"] == ["PID", "TTY", "TIME", "CMD"]
    with pytest.raises(InvalidArgument, match="bogus"):
        top.top(container.pid, "-o pid,bogus")
    with pytest.raises(InvalidArgument, match="not supported"):
        top.top(container.pid, "--forest -Z")


def test_gone_init_is_a_conflict():
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(Conflict, match="not running"):
        top.top(proc.pid)


def test_tty_names():
    assert top.tty_name(0) == "?"
    assert top.tty_name(os.makedev(136, 3)) == "pts/3"
    assert top.tty_name((136 << 8) | 3) == "pts/3"
    assert top.tty_name((4 << 8) | 1) == "tty1"
