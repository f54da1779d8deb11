"""Fixtures for runtime tests: a container factory that cleans up, and a leak check.

``leaks(engine, container)`` lists everything a container may leave behind on
the host — its directory, any mount naming it, its cgroup directories in
every hierarchy, processes still in those cgroups, the runtime's state dir,
its supervisor's sockets — so any test (here or elsewhere) can assert that
``remove`` really removed it. ``containers`` is a factory whose containers are
force-removed at the end of the test, whatever happened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.runtime.containers import Container, ContainerSpec


def _mountpoints() -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh]


def _cgroup_dirs(rel: str) -> list[Path]:
    base = Path("/sys/fs/cgroup")
    candidates = [base / rel.lstrip("/")]
    candidates += [d / rel.lstrip("/") for d in base.iterdir() if d.is_dir()]
    return [p for p in candidates if p.exists()]


def leaks(engine, container: Container) -> list[str]:
    """Everything of ``container`` still on the host (empty when it was removed cleanly)."""
    found: list[str] = []
    cid = container.id
    if container.dir.exists():
        found.append(f"dir {container.dir}")
    found += [f"mount {m}" for m in _mountpoints() if cid in m or cid[:16] in m]
    for cg in _cgroup_dirs(container.cgroups_path):
        found.append(f"cgroup {cg}")
        procs = cg / "cgroup.procs"
        if procs.exists() and procs.read_text().strip():
            found.append(f"processes in {cg}: {procs.read_text().split()}")
    runtime = engine.containers.runtime_for(container)
    if (runtime.state_root / container.runtime_id).exists():
        found.append(f"runtime state {runtime.state_root / container.runtime_id}")
    for sock in engine.containers.sock_dir.glob(f"{cid[:16]}*"):
        found.append(f"socket {sock}")
    for dirpath, dirnames, filenames in os.walk(engine.run_dir):
        found += [f"run file {dirpath}/{n}" for n in dirnames + filenames if cid[:16] in n]
    if container.pid and Path(f"/proc/{container.pid}").exists():
        try:
            zombie = Path(f"/proc/{container.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            # a zombie is dead already: reaping it is its new parent's job (init)
            if zombie != "Z" and cid[:12] in Path(f"/proc/{container.pid}/cgroup").read_text():
                found.append(f"process {container.pid}")
        except OSError:
            pass
    return found


@pytest.fixture
def leak_check():
    """The ``leaks`` function, for tests outside this folder too."""
    return leaks


@pytest.fixture
def containers(engine) -> Iterator:
    """``make(**spec)`` creates a container (network "none" unless told); all removed at the end."""
    made: list[str] = []

    def make(start: bool = False, **kw) -> Container:
        kw.setdefault("image", "busybox:latest")
        kw.setdefault("network_mode", "none")
        c = engine.containers.create(ContainerSpec(**kw))
        made.append(c.id)
        if start:
            engine.containers.start(c.id)
            c = engine.containers.get(c.id)
        return c

    yield make
    for cid in made:
        try:
            engine.containers.remove(cid, force=True)
        except Exception:
            pass


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {predicate}")


def host_pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def parent_pid(pid: int) -> int:
    """The parent of host process ``pid`` (field 4 of /proc/<pid>/stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
