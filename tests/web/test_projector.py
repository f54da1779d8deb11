"""The projector process beside the worker: started again when it dies, gone with the worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from estiba import gateway

REPO = Path(__file__).resolve().parents[2]


def projectors(host: str) -> list[int]:
    """PIDs of the projector processes serving ``host``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"estiba.projector" in cmdline and f"ESTIBA_HOSTNAME={host}".encode() in environ:
            found.append(int(entry.name))
    return found


def wait_until(predicate, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout:g} s")


def test_the_projector_is_started_again_and_catches_up(web_worker, orm):
    from containers_app.models import Container

    (first,) = wait_until(lambda: projectors(web_worker), "a projector")
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: [p for p in projectors(web_worker) if p != first], "a new projector")
    cid = gateway.call("containers.create", {"image": "busybox:latest", "cmd": ["true"],
                                             "network_mode": "none"})["Id"]
    try:
        wait_until(lambda: Container.objects.filter(host=web_worker, engine_id=cid).exists(),
                   "the new container in the projection")
    finally:
        gateway.call("containers.remove", cid, force=True)
    wait_until(lambda: not Container.objects.filter(host=web_worker, engine_id=cid).exists(),
               "the removed container out of the projection")


@pytest.fixture
def lone_host(web_env, orm):
    """A host name of this test's own: what its projector writes is removed after."""
    from estiba import bus
    from hosts_app.models import Host

    name = f"lone-{uuid.uuid4().hex[:6]}"
    yield name
    for model in _projected_models():
        model.objects.filter(host=name).delete()
    Host.objects.filter(name=name).delete()
    bus.client().delete(bus.events_offset_key(name), bus.ready_key(name))


def _projected_models():
    from containers_app.models import Container
    from images_app.models import Image
    from networks_app.models import Network
    from volumes_app.models import Volume

    return (Container, Image, Volume, Network)


PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "estiba.projector"])
print(child.pid, flush=True)
time.sleep(600)
"""


def test_the_projector_goes_with_its_worker_even_after_kill_9(web_env, lone_host):
    from estiba import bus

    env = dict(web_env.env, ESTIBA_HOSTNAME=lone_host)
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        # it works: its first reconcile pass says the host is ready
        wait_until(lambda: bus.client().exists(bus.ready_key(lone_host)), "a first pass")
    finally:
        parent.kill()
        parent.wait()
    wait_until(lambda: not Path(f"/proc/{child}").exists()
               or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2],
               "the projector gone with its parent", timeout=10)
