"""Fixtures for network tests: a private NetworkManager, namespaces to play containers,
and ``host_unchanged``, the check that a test left no link, address, route, rule or
mount behind (reusable: ``from tests.engine.network.conftest import host_unchanged``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import EngineConfig
from engine.events import EventBus
from engine.network.manager import NetworkManager, Sandbox
from tests.engine.network import hoststate


@pytest.fixture
def own_prefix() -> str:
    """A host-object prefix private to this test (n + 5 hex: never clashes with ``et...``)."""
    return "n" + secrets.token_hex(3)[:5]


@pytest.fixture
def host_unchanged(request, tmp_path_factory, own_prefix) -> Iterator[hoststate.HostState]:
    """Snapshot the host before the test; after it, assert everything is as it was."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates namespaces, links and nftables rules")
    paths = [tmp_path_factory.getbasetemp()]
    prefixes = [own_prefix]
    if "engine_config" in request.fixturenames:
        cfg = request.getfixturevalue("engine_config")
        paths.append(Path(cfg.root).parent)
        prefixes.append(cfg.prefix)
    before = hoststate.snapshot(tuple(prefixes), tuple(paths))
    yield before
    hoststate.assert_unchanged(before, tuple(prefixes), tuple(paths))


@pytest.fixture
def netman(host_unchanged, tmp_path, own_prefix) -> Iterator[NetworkManager]:
    """A NetworkManager on its own root and prefix; all its host objects removed after."""
    cfg = EngineConfig(root=tmp_path / "root", run_dir=tmp_path / "run", prefix=own_prefix)
    events = EventBus(tmp_path / "events.jsonl")
    manager = NetworkManager(tmp_path / "root" / "networks", tmp_path / "run", events, cfg)
    yield manager
    manager.remove_host_objects()


def cid() -> str:
    return secrets.token_hex(32)


def in_sandbox(sandbox: Sandbox, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess:
    """Run a command inside a sandbox's namespace with its /etc/hosts, like a container would."""
    script = f'mount --bind "{sandbox.hosts_file}" /etc/hosts && exec "$@"'
    return subprocess.run(
        ["nsenter", f"--net={sandbox.netns_path}", "--", "unshare", "-m", "--", "sh", "-c",
         script, "sh", *argv],
        capture_output=True, text=True, timeout=timeout,
    )


def start_in_sandbox(sandbox: Sandbox, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["nsenter", f"--net={sandbox.netns_path}", "--", *argv],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Servers a test starts (in namespaces or on the host); all killed at the end."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def www(tmp_path) -> Path:
    """A directory for busybox httpd with one page."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("hello from the container\n")
    return root


@pytest.fixture
def net_engine(engine, engine_config, tmp_path_factory) -> Iterator[tuple]:
    """The session engine with a clean network slate, and ``run(**spec)`` for containers.

    At the end: the containers made are removed, the networks made are removed,
    the engine's bridges and rules are taken down, and the host must be as before.
    """
    from engine.runtime.containers import ContainerSpec

    engine.networks.remove_host_objects()
    prefixes = (engine_config.prefix,)
    paths = (tmp_path_factory.getbasetemp(), Path(engine_config.root).parent)
    before = hoststate.snapshot(prefixes, paths)
    made: list[str] = []
    nets_before = {n["Id"] for n in engine.networks.list()}

    def run(start: bool = True, **kw):
        kw.setdefault("image", "busybox:latest")
        c = engine.containers.create(ContainerSpec(**kw))
        made.append(c.id)
        if start:
            engine.containers.start(c.id)
        return engine.containers.get(c.id)

    try:
        yield engine, run
    finally:
        for container_id in made:
            try:
                engine.containers.remove(container_id, force=True)
            except Exception:
                pass
        for net in engine.networks.list():
            if net["Id"] not in nets_before:
                engine.networks.remove(net["Id"])
        engine.networks.remove_host_objects()
    hoststate.assert_unchanged(before, prefixes, paths)


def output(engine, container_id: str, timeout: float = 20) -> tuple[int, str]:
    """Wait for a container to exit; its exit code and everything it printed."""
    code = engine.containers.wait(container_id, timeout=timeout)
    text = b"".join(entry.data for entry in engine.containers.logs(container_id)).decode()
    return code, text
