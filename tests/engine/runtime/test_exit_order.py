"""What a container's exit gives back before ``wait`` answers, and what comes after.

The supervisor records the exit once the container's network is released, and
removes the runtime's cgroups and unmounts the root afterwards; every operation
that needs those gone first waits for it (engine/runtime/shim.py ``_after_exit``).
"""

from __future__ import annotations

import io
import tarfile


def test_a_container_can_be_started_again_the_moment_wait_answers(engine, containers):
    c = containers(cmd=["sh", "-c", "exit 7"])
    for _ in range(5):
        engine.containers.start(c.id)
        assert engine.containers.wait(c.id, timeout=20) == 7
    assert engine.containers.get(c.id).state.status == "exited"


def test_export_and_cp_right_after_wait_see_the_whole_root(engine, containers):
    c = containers(cmd=["sh", "-c", "echo kept > /made-here"], start=True)
    assert engine.containers.wait(c.id, timeout=20) == 0
    out = io.BytesIO()
    engine.containers.export(c.id, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
    assert "made-here" in names and "bin/busybox" in names


def test_the_network_is_released_before_wait_answers(engine, containers):
    engine.networks.create("exit-order-net")
    c = None
    try:
        c = containers(cmd=["true"], network_mode="exit-order-net", start=True)
        assert engine.containers.wait(c.id, timeout=20) == 0
        assert engine.networks.inspect("exit-order-net")["Containers"] == {}
        assert engine.networks.sandbox(c.id) is None
        engine.networks.remove("exit-order-net")  # no active endpoint: nothing refuses it
    finally:
        if c is not None:
            engine.containers.remove(c.id, force=True)
        if "exit-order-net" in [n["Name"] for n in engine.networks.list()]:
            engine.networks.remove("exit-order-net")
