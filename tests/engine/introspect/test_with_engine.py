"""The lessons' worker operations against a container of the real engine."""

from __future__ import annotations

import subprocess
import time

import pytest

from engine.introspect.watch import UpperDirWatcher

ops = pytest.importorskip("lessons_app.ops")
ContainerSpec = pytest.importorskip("engine.runtime.containers").ContainerSpec


@pytest.fixture(scope="module")
def running(engine):
    spec = ContainerSpec(image="busybox:latest", cmd=["sh", "-c", "sleep 600"],
                         hostname="lesson-host", memory=48 << 20, network_mode="none")
    c = engine.containers.create(spec)
    try:
        engine.containers.start(c.id)
        yield engine.containers.get(c.id)
    finally:
        engine.containers.remove(c.id, force=True)


def inside(pid: int, script: str) -> None:
    """Run the container's own shell in all of its namespaces and its root."""
    subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--",
                    "/bin/sh", "-c", script], check=True, timeout=10)


def test_namespaces_of_an_engine_container(engine, running):
    view = ops.namespaces_view(engine, running.id)
    ns = {row["kind"]: row for row in view["namespaces"]}
    assert ns["pid"]["isolated"] and ns["pid"]["container_inode"] != ns["pid"]["host_inode"]
    pid1 = next(p for p in view["processes"] if p["container_pid"] == 1)
    assert pid1["host_pid"] == running.pid == view["pid"]
    assert view["hostname"]["inside"] == "lesson-host"
    assert any(m["mount_point"] == "/" and m["fstype"] == "overlay" for m in view["mounts"])


def test_overlay_of_an_engine_container_and_a_live_write(engine, running):
    view = ops.overlay_view(engine, running.id)
    roles = [p["role"] for p in view["planes"]]
    assert roles[0] == "upper" and roles[1:] and all(r.startswith("lower") for r in roles[1:])
    by_path = {e["path"]: e for e in view["entries"]}
    assert by_path["/bin/busybox"]["layer"] >= 1  # from the image
    stream = ops.watch_upper(engine, running.id, seconds=5)
    assert "watching" in next(stream)
    start = time.monotonic()
    inside(running.pid, "echo hola > /lesson.txt")
    seen = []
    for item in stream:
        seen += item.get("changes", [])
        if any(c["path"] == "/lesson.txt" for c in seen) or time.monotonic() - start > 2:
            break
    stream.close()
    assert any(c["path"] == "/lesson.txt" and c["kind"] == "added" for c in seen)
    assert time.monotonic() - start < 2


def test_the_memory_hog_is_oom_killed(engine, running):
    before = ops.cgroup_figures(engine, running.id)["memory"]
    assert before["limit"] == 48 << 20
    ops.memory_hog(engine, running.id)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = ops.cgroup_figures(engine, running.id)["memory"]
        if after["oom_kills"] > before["oom_kills"]:
            break
        time.sleep(0.2)
    assert after["oom_kills"] > before["oom_kills"]
    assert engine.containers.get(running.id).pid == running.pid  # PID 1 survived


def test_the_hog_refuses_a_container_without_a_limit(engine):
    from engine.errors import InvalidArgument

    c = engine.containers.create(ContainerSpec(image="busybox:latest", cmd=["sleep", "60"],
                                               network_mode="none"))
    try:
        engine.containers.start(c.id)
        with pytest.raises(InvalidArgument, match="memory limit"):
            ops.memory_hog(engine, c.id)
    finally:
        engine.containers.remove(c.id, force=True)


def test_a_container_start_is_measured(engine):
    result = ops.start_container(engine)
    assert 0 < result["start_seconds"] < 10
    assert result["image_bytes"] > 0 and result["runtime"] in ("runc", "crun")


def test_watcher_needs_an_upper_dir(tmp_path):
    from engine.errors import NotFound

    with pytest.raises(NotFound):
        UpperDirWatcher(tmp_path / "missing")
