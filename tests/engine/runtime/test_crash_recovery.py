"""What a crash leaves, cleaned up by the next engine start (issue 5), and restart
policies applied as Docker applies them when its daemon starts."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from engine import Engine
from engine.network import links
from engine.runtime import shim
from engine.runtime.containers import MountSpec
from tests.engine.network.conftest import net_engine  # noqa: F401 (fixture)

from .conftest import wait_for


def _kill_supervisor_and_container(c) -> None:
    state = json.loads((c.dir / "state.json").read_text())
    os.kill(state["ShimPid"], signal.SIGKILL)  # first, so it cannot clean up after the container
    os.kill(state["Pid"], signal.SIGKILL)
    wait_for(lambda: shim.proc_start_time(state["ShimPid"]) != state["ShimStart"])
    wait_for(lambda: shim.proc_start_time(state["Pid"]) == 0)


def test_recover_releases_network_and_volumes_of_a_container_killed_with_its_supervisor(
        net_engine, leak_check):  # noqa: F811
    engine, run = net_engine
    engine.networks.create("crash-net")
    dead = run(name="crash-dead", cmd=["sleep", "1000"], network_mode="crash-net",
               mounts=[MountSpec(type="volume", source="crash-vol", target="/data")])
    alive = run(name="crash-alive", cmd=["sleep", "1000"], network_mode="crash-net")
    sb = json.loads((engine.root / "networks" / "sandboxes" / f"{dead.id}.json").read_text())
    endpoint = sb["Endpoints"][next(iter(sb["Endpoints"]))]
    netns_file = engine.run_dir / "netns" / dead.id
    assert netns_file.exists() and endpoint["HostIf"] in links.host_links(endpoint["HostIf"])
    alive_hosts = alive.to_docker_inspect()["HostsPath"]
    assert "crash-dead" in Path(alive_hosts).read_text().split()

    _kill_supervisor_and_container(dead)
    fresh = Engine(config=engine.config)  # the engine's next start, as a new worker makes it
    fresh.recover()

    after = fresh.containers.get(dead.id).state
    assert after.status == "exited" and after.exit_code == 255, after
    members = fresh.networks.inspect("crash-net")["Containers"]
    assert set(members) == {alive.id}  # its address is free, the live one keeps its own
    assert not netns_file.exists()
    assert endpoint["HostIf"] not in links.host_links(endpoint["HostIf"])
    assert "crash-dead" not in Path(alive_hosts).read_text().split()  # its peer forgot it
    assert not (fresh.run_dir / "net" / dead.id).exists()
    # The live container was left alone: still running, still on its network.
    assert fresh.containers.get(alive.id).state.status == "running"
    alive_sb = fresh.networks.sandbox(alive.id)
    assert alive_sb is not None and os.path.exists(alive_sb.netns_path)
    # As in Docker, the stopped container still uses its volume until it is removed.
    assert fresh.volumes.get("crash-vol").users == [dead.id]
    fresh.containers.remove(dead.id)
    assert leak_check(fresh, dead) == []
    fresh.volumes.remove("crash-vol")


def test_recover_drops_volume_markers_of_containers_that_are_gone(engine, containers):
    c = containers(cmd=["true"], mounts=[MountSpec(type="volume", source="gone-vol",
                                                   target="/data")], start=True)
    engine.containers.wait(c.id, timeout=20)
    assert engine.volumes.get("gone-vol").users == [c.id]
    # A crash of a remove, after the directory went and before the marker did.
    os.rename(c.dir, c.dir.parent / f".rm-{c.id}")
    try:
        Engine(config=engine.config).recover()
        assert engine.volumes.get("gone-vol").users == []
        engine.volumes.remove("gone-vol")
    finally:
        if (c.dir.parent / f".rm-{c.id}").exists():
            os.rename(c.dir.parent / f".rm-{c.id}", c.dir)


@pytest.mark.parametrize(("policy", "restarted"), [
    ("always", True), ("unless-stopped", False), ("on-failure", False), ("no", False)])
def test_engine_start_restarts_a_stopped_container_only_for_always(engine, containers, policy,
                                                                  restarted):
    c = containers(cmd=["sleep", "1000"], restart_policy=policy, start=True)
    engine.containers.stop(c.id, timeout=1)
    assert engine.containers.get(c.id).state.status == "exited"
    Engine(config=engine.config).recover()
    status = engine.containers.get(c.id).state.status
    assert status == ("running" if restarted else "exited"), (policy, status)


@pytest.mark.parametrize("policy", ["always", "unless-stopped", "on-failure"])
def test_engine_start_restarts_a_container_that_died_with_its_supervisor(engine, containers,
                                                                       policy):
    c = containers(cmd=["sleep", "1000"], restart_policy=policy, start=True)
    _kill_supervisor_and_container(c)
    Engine(config=engine.config).recover()
    wait_for(lambda: engine.containers.get(c.id).state.status == "running")


def test_engine_start_leaves_never_started_and_no_policy_containers(engine, containers):
    never = containers(cmd=["sleep", "1000"], restart_policy="always")
    done = containers(cmd=["true"], restart_policy="no", start=True)
    engine.containers.wait(done.id, timeout=20)
    Engine(config=engine.config).recover()
    time.sleep(0.2)
    assert engine.containers.get(never.id).state.status == "created"
    assert engine.containers.get(done.id).state.status == "exited"
