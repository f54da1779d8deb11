"""Docker's "dead" state: a removal that fails halfway leaves a dead container,
listed as such, that cannot be started and that a second remove finishes."""

from __future__ import annotations

import subprocess

import pytest

from engine.errors import Conflict, RuntimeFailure


def test_a_removal_that_fails_halfway_leaves_a_dead_container(engine, containers, leak_check):
    c = containers(cmd=["sleep", "1000"], start=True)
    busy = c.dir / "busy"
    busy.mkdir()
    # Something on the host mounted inside the container's directory: remove cannot finish.
    subprocess.run(["mount", "-t", "tmpfs", "busy", str(busy)], check=True)
    try:
        with pytest.raises(RuntimeFailure, match="still has mounts"):
            engine.containers.remove(c.id, force=True)
        state = engine.containers.get(c.id).state
        assert state.status == "dead" and state.dead and not state.running and state.pid == 0
        assert engine.containers.get(c.id).to_docker_inspect()["State"]["Status"] == "dead"
        listed = [x for x in engine.containers.list(all=True) if x.id == c.id]
        assert [x.to_docker_summary()["State"] for x in listed] == ["dead"]
        assert listed[0].to_docker_summary()["Status"] == "Dead"
        assert [x.id for x in engine.containers.list(all=True, filters={"status": ["dead"]})] \
            == [c.id]
        assert c.id not in [x.id for x in engine.containers.list()]  # not running
        with pytest.raises(Conflict, match="dead"):
            engine.containers.start(c.id)
    finally:
        subprocess.run(["umount", str(busy)], check=False)
    engine.containers.remove(c.id, force=True)
    assert leak_check(engine, c) == []


def test_a_dead_container_can_be_removed_without_force(engine, containers, leak_check):
    c = containers(cmd=["true"], start=True)
    engine.containers.wait(c.id, timeout=20)
    busy = c.dir / "busy"
    busy.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "busy", str(busy)], check=True)
    try:
        with pytest.raises(RuntimeFailure):
            engine.containers.remove(c.id)
        assert engine.containers.get(c.id).state.status == "dead"
        assert engine.containers.get(c.id).state.exit_code == 0  # the last exit is kept
    finally:
        subprocess.run(["umount", str(busy)], check=False)
    engine.containers.remove(c.id)
    assert leak_check(engine, c) == []
