"""Interfaces through a veth to a bridge; cgroup figures against a real limit."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from engine.introspect.cgroups import cgroup_dirs, cpu_percent, figures
from engine.introspect.netif import interfaces


@pytest.fixture
def cabled(handmade_container):
    tag = uuid.uuid4().hex[:5]
    host, inside, bridge = f"eti{tag}h", f"eti{tag}c", f"eti{tag}b"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("ip", "link", "add", host, "type", "veth", "peer", "name", inside)
    try:
        run("ip", "link", "add", bridge, "type", "bridge")
        run("ip", "link", "set", host, "master", bridge)
        run("ip", "link", "set", inside, "netns", str(handmade_container.pid))
        yield handmade_container, host, inside, bridge
    finally:
        subprocess.run(["ip", "link", "del", host], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def test_veth_drawn_to_its_bridge(cabled):
    c, host, inside, bridge = cabled
    seen = interfaces(c.pid)
    names_inside = {link["name"] for link in seen["inside"]}
    assert names_inside == {"lo", inside}
    assert host in {link["name"] for link in seen["outside"]}
    assert seen["veth"] == [
        {
            "inside": inside,
            "inside_index": next(x["index"] for x in seen["inside"] if x["name"] == inside),
            "host": host,
            "host_index": next(x["index"] for x in seen["outside"] if x["name"] == host),
            "bridge": bridge,
            "bridge_addresses": [],
        }
    ]


@pytest.fixture
def limited(handmade_container):
    """The container moved into a v1 (or v2) memory cgroup with a 64 MiB limit."""
    base = cgroup_dirs(os.getpid())
    if "memory" in base:
        group = Path("/sys/fs/cgroup/memory") / f"estiba-test-{uuid.uuid4().hex[:6]}"
        limit_file = "memory.limit_in_bytes"
    else:
        group = Path("/sys/fs/cgroup") / f"estiba-test-{uuid.uuid4().hex[:6]}"
        limit_file = "memory.max"
    group.mkdir()
    try:
        (group / limit_file).write_text(str(64 << 20))
        (group / "cgroup.procs").write_text(str(handmade_container.pid))
        yield handmade_container, group
    finally:
        home = Path("/sys/fs/cgroup/memory") if "memory" in base else Path("/sys/fs/cgroup")
        try:
            (home / "cgroup.procs").write_text(str(handmade_container.pid))
        except OSError:
            pass
        os.rmdir(group)


def test_the_interfaces_of_a_process_gone_are_an_error_that_names_it():
    """What the namespaces lesson shows as "could not read the interfaces": a process that
    exited (here a zombie: its /proc entry stays, its namespaces are gone)."""
    from engine.errors import EngineError

    child = os.fork()
    if child == 0:  # pragma: no cover - the child only exits
        os._exit(0)
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child}/stat").read_text().split()[2] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        with pytest.raises(EngineError, match=f"process {child}"):
            interfaces(child)
    finally:
        os.waitpid(child, 0)


def test_memory_figures_against_the_limit(limited):
    c, group = limited
    first = figures(c.pid)
    assert first["memory"]["limit"] == 64 << 20
    assert first["memory"]["usage"] is not None and first["memory"]["usage"] >= 0
    assert Path(first["paths"]["memory" if first["version"] == 1 else "unified"]) == group
    second = figures(c.pid)
    assert cpu_percent(first, second) is not None
