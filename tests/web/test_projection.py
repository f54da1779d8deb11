"""The projection never clobbers ``owner``; the worker's heartbeat does not wait for reconcile.

The owner race, made deterministic: the dashboard's ``record_owner`` sets a row's
owner right after the engine made the object, while the worker projects the
object's event; if the worker read the row before the owner was set and then
saved every field, the owner went back to none. Here a ``pre_save`` receiver
sets the owner (with its own query, as the dashboard's process does) at the
worst moment — after the projection read the row, before it writes it — for
each kind of object the projection keeps.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db.models.signals import pre_save


@pytest.fixture
def owner(orm):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username=f"proj-{uuid.uuid4().hex[:8]}")
    yield user
    user.delete()


@pytest.fixture
def host(orm) -> Iterator[str]:
    """A host name of this test's own, its rows removed at the end."""
    from containers_app.models import Container
    from images_app.models import Image
    from networks_app.models import Network
    from volumes_app.models import Volume

    name = f"proj-{uuid.uuid4().hex[:8]}"
    yield name
    for model in (Container, Image, Volume, Network):
        model.objects.filter(host=name).delete()


@contextmanager
def owner_set_between_read_and_write(model, user) -> Iterator[list[str]]:
    """While active, every save of a ``model`` row first gives it ``user`` in the database."""
    seen: list[str] = []

    def record_owner_meanwhile(sender, instance, **kwargs) -> None:
        if instance.pk is not None and instance.owner_id is None:
            sender.objects.filter(pk=instance.pk).update(owner=user)  # another process's write
            seen.append(instance.engine_id)

    pre_save.connect(record_owner_meanwhile, sender=model, weak=False)
    try:
        yield seen
    finally:
        pre_save.disconnect(record_owner_meanwhile, sender=model)


def container_summary(cid: str, status: str) -> dict:
    return {"Id": cid, "Names": ["/proj-c"], "Image": "busybox", "ImageID": "sha256:" + "b" * 64,
            "Command": "true", "Created": int(time.time()), "State": status,
            "Status": status.capitalize(), "Labels": {}, "Ports": [], "Mounts": []}


def image_data(iid: str, tags: list[str]) -> dict:
    return {"Id": iid, "RepoTags": tags, "Size": 1234, "Created": int(time.time()),
            "RootFS": {"Type": "layers", "Layers": ["sha256:" + "c" * 64]}}


def volume_data(name: str, mountpoint: str) -> dict:
    return {"Name": name, "Driver": "local", "Mountpoint": mountpoint, "CreatedAt": "",
            "Labels": {}}


def network_data(nid: str, subnet: str) -> dict:
    return {"Id": nid, "Name": "proj-net", "Driver": "bridge",
            "IPAM": {"Config": [{"Subnet": subnet}]}}


def kinds():
    from containers_app.models import Container
    from estiba import projection
    from images_app.models import Image
    from networks_app.models import Network
    from volumes_app.models import Volume

    return {
        "container": (Container, projection.upsert_container, container_summary,
                      ("created", "exited")),
        "image": (Image, projection.upsert_image, image_data, (["a:1"], ["a:1", "a:2"])),
        "volume": (Volume, projection.upsert_volume, volume_data, ("/v/1", "/v/2")),
        "network": (Network, projection.upsert_network, network_data,
                    ("10.9.0.0/24", "10.9.1.0/24")),
    }


@pytest.mark.parametrize("kind", ["container", "image", "volume", "network"])
@pytest.mark.parametrize("path", ["event", "reconcile"])
def test_projection_update_keeps_an_owner_set_meanwhile(kind, path, host, owner):
    model, upsert, make, (before, after) = kinds()[kind]
    engine_id = uuid.uuid4().hex * 2 if kind != "volume" else f"proj-{uuid.uuid4().hex[:8]}"
    if kind == "image":
        engine_id = "sha256:" + engine_id
    upsert(host, make(engine_id, before))  # the create event: a row without owner
    row = model.objects.get(host=host, engine_id=engine_id)
    assert row.owner_id is None

    with owner_set_between_read_and_write(model, owner) as seen:
        if path == "event":  # the worker's event: reads the row itself, then writes it
            upsert(host, make(engine_id, after))
        else:  # reconcile: all rows read at once, written later
            upsert(host, make(engine_id, after), row=row)
    assert seen == [engine_id], "the projection did not write the row: nothing was tested"

    row = model.objects.get(host=host, engine_id=engine_id)
    assert row.owner_id == owner.pk, f"the {kind}'s owner was overwritten by the projection"
    projected = {"container": lambda r: r.state, "image": lambda r: r.tags,
                 "volume": lambda r: r.mountpoint, "network": lambda r: r.subnet}[kind]
    assert projected(row) == after  # and the engine's news did arrive


@pytest.mark.parametrize("kind", ["container", "image", "volume", "network"])
def test_record_owner_before_the_event_survives_it(kind, host, owner):
    from estiba import permissions

    model, upsert, make, (before, after) = kinds()[kind]
    engine_id = uuid.uuid4().hex * 2 if kind != "volume" else f"proj-{uuid.uuid4().hex[:8]}"
    if kind == "image":
        engine_id = "sha256:" + engine_id
    permissions.record_owner(owner, kind, engine_id, host=host)
    upsert(host, make(engine_id, before))
    upsert(host, make(engine_id, after))
    row = model.objects.get(host=host, engine_id=engine_id)
    assert row.owner_id == owner.pk


def test_reconcile_keeps_owners_of_many_rows_set_while_it_runs(engine, host, owner):
    """A whole reconcile pass over real containers, each row owned meanwhile."""
    from containers_app.models import Container
    from engine.runtime.containers import ContainerSpec
    from estiba import projection

    spec = ContainerSpec(image="busybox", cmd=["true"], network_mode="none")
    made = [engine.containers.create(spec).id for _ in range(5)]
    try:
        for cid in made:  # the create events, projected before anyone owns the rows
            projection.upsert_container(host, engine.containers.get(cid).to_docker_summary())
        Container.objects.filter(host=host).update(status="stale")  # reconcile must write
        with owner_set_between_read_and_write(Container, owner) as seen:
            projection.reconcile_containers(engine, host)
        assert set(made) <= set(seen)
        rows = Container.objects.filter(host=host, engine_id__in=made)
        assert {r.owner_id for r in rows} == {owner.pk}
        assert {r.status for r in rows} == {"Created"}
    finally:
        for cid in made:
            engine.containers.remove(cid, force=True)


def test_heartbeat_beats_while_a_reconcile_pass_takes_longer_than_its_timeout(
        engine, host, orm, monkeypatch):
    """The heartbeat's own timer renews the key and the row during a 3x-timeout reconcile."""
    from django.conf import settings

    from estiba import bus, projection, projector, worker
    from hosts_app.models import Host

    timeout = 2
    monkeypatch.setattr(settings, "ESTIBA_HOSTNAME", host)
    monkeypatch.setattr(settings, "ESTIBA_HEARTBEAT_TIMEOUT", timeout)
    monkeypatch.setattr(settings, "ESTIBA_RECONCILE_INTERVAL", 0.1)
    monkeypatch.setattr(worker, "_engine", engine)
    stop = threading.Event()
    monkeypatch.setattr(worker, "_stop", stop)
    monkeypatch.setattr(projector, "_stop", stop)
    in_pass = threading.Event()

    def slow_reconcile(engine, host_name) -> None:
        in_pass.set()
        stop.wait(3 * timeout)  # a pass over very many containers

    monkeypatch.setattr(projection, "reconcile_containers", slow_reconcile)
    r = bus.client()
    key = bus.heartbeat_key(host)
    threads = [threading.Thread(target=projector.reconcile_loop, args=(engine,), daemon=True),
               threading.Thread(target=worker.heartbeat_loop, daemon=True)]
    for t in threads:
        t.start()
    try:
        assert in_pass.wait(10)
        deadline = time.monotonic() + 10
        while not (r.exists(key) and Host.objects.filter(name=host).exists()):
            assert time.monotonic() < deadline, "no first heartbeat"
            time.sleep(0.05)
        seen = []
        deadline = time.monotonic() + 3 * timeout  # the whole of the long pass
        while time.monotonic() < deadline:
            assert r.exists(key), "the heartbeat expired during a long reconcile pass"
            row = Host.objects.filter(name=host).first()
            assert row is not None and row.online, "the host shows offline"
            seen.append(row.last_seen)
            time.sleep(0.2)
        assert len(set(seen)) >= 4, "the host's row was not renewed during the pass"
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        r.delete(key)
        Host.objects.filter(name=host).delete()


def test_a_connect_refreshes_that_network_alone(engine, host):
    """A container joining a network updates that network's row; a gone one is dropped."""
    from engine.events import Event
    from engine.runtime.containers import ContainerSpec
    from estiba import projection
    from networks_app.models import Network

    net_id = engine.networks.create(f"proj-net-{uuid.uuid4().hex[:6]}")["Id"]
    other_id = engine.networks.create(f"proj-other-{uuid.uuid4().hex[:6]}")["Id"]
    c = engine.containers.create(ContainerSpec(image="busybox", cmd=["sleep", "30"],
                                               network_mode=net_id))
    try:
        engine.containers.start(c.id)
        projection.apply_event(engine, host, Event("network", "connect", net_id,
                                                   {"container": c.id}))
        row = Network.objects.get(host=host, engine_id=net_id)
        assert c.id in (row.data.get("Containers") or {})
        assert not Network.objects.filter(host=host, engine_id=other_id).exists()  # untouched
        engine.containers.remove(c.id, force=True)
        engine.networks.remove(net_id)
        projection.apply_event(engine, host, Event("network", "disconnect", net_id,
                                                   {"container": c.id}))
        assert not Network.objects.filter(host=host, engine_id=net_id).exists()
    finally:
        if c.dir.exists():
            engine.containers.remove(c.id, force=True)
        for nid in (net_id, other_id):
            with contextlib.suppress(Exception):
                engine.networks.remove(nid)
