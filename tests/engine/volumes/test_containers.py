"""End to end: volumes and bind mounts seen by real busybox containers."""

from __future__ import annotations

from engine.runtime.containers import ContainerSpec, MountSpec
from tests.engine.network.conftest import output


def test_volume_data_outlives_the_container(net_engine):
    engine, run = net_engine
    writer = run(cmd=["sh", "-c", "echo kept > /data/f"], network_mode="none",
                 mounts=[MountSpec(type="volume", source="e2e-keep", target="/data")])
    assert output(engine, writer.id)[0] == 0
    engine.containers.remove(writer.id, volumes=True)  # rm -v spares named volumes
    assert engine.volumes.get("e2e-keep").users == []
    reader = run(cmd=["cat", "/data/f"], network_mode="none",
                 mounts=[MountSpec(type="volume", source="e2e-keep", target="/data")])
    assert output(engine, reader.id) == (0, "kept\n")
    assert engine.volumes.get("e2e-keep").users == [reader.id]
    engine.containers.remove(reader.id)
    engine.volumes.remove("e2e-keep")


def test_read_only_bind_refuses_writes_read_write_accepts(net_engine, tmp_path):
    engine, run = net_engine
    shared = tmp_path / "shared"
    shared.mkdir()
    ro = run(cmd=["sh", "-c", "echo x > /mnt/f"], network_mode="none",
             mounts=[MountSpec(type="bind", source=str(shared), target="/mnt", read_only=True)])
    code, text = output(engine, ro.id)
    assert code != 0 and "Read-only file system" in text
    assert not (shared / "f").exists()
    rw = run(cmd=["sh", "-c", "echo y > /mnt/f"], network_mode="none",
             mounts=[MountSpec(type="bind", source=str(shared), target="/mnt")])
    assert output(engine, rw.id)[0] == 0
    assert (shared / "f").read_text() == "y\n"


def test_empty_volume_over_an_image_dir_gets_its_files(net_engine):
    engine, run = net_engine
    c = run(cmd=["sh", "-c", "grep ^root: /etc/passwd && ls -ld /etc"], network_mode="none",
            mounts=[MountSpec(type="volume", source="e2e-etc", target="/etc")])
    code, text = output(engine, c.id)
    assert code == 0 and text.startswith("root:x:0:0"), text
    assert (engine.volumes.get("e2e-etc").mountpoint / "group").exists()
    engine.containers.remove(c.id)
    engine.volumes.remove("e2e-etc")


def test_a_created_container_already_uses_its_named_volume(net_engine):
    """As in Docker: ``docker create -v name:/x`` makes the volume and holds it, unstarted."""
    import pytest

    from engine.errors import Conflict

    engine, _run = net_engine
    c = engine.containers.create(ContainerSpec(
        image="busybox:latest", cmd=["true"], network_mode="none",
        mounts=[MountSpec(type="volume", source="e2e-created", target="/data")]))
    try:
        assert engine.volumes.get("e2e-created").users == [c.id]
        with pytest.raises(Conflict, match="in use"):
            engine.volumes.remove("e2e-created")
        assert "e2e-created" not in (engine.volumes.prune().get("VolumesDeleted") or [])
    finally:
        engine.containers.remove(c.id)
    assert engine.volumes.get("e2e-created").users == []
    engine.volumes.remove("e2e-created")


def test_a_created_container_already_has_its_anonymous_volumes(net_engine):
    """As in Docker: the image's ``VOLUME`` and a ``-v /path`` get their volumes at create,
    held from then on; the first start uses those, with the image's files copied in."""
    import pytest

    from engine.errors import Conflict

    engine, _run = net_engine
    source = engine.containers.create(ContainerSpec(image="busybox:latest", cmd=["true"],
                                                    network_mode="none"))
    image = engine.containers.commit(source.id, "e2e-anon-volumes:1", changes=["VOLUME /etc"])
    engine.containers.remove(source.id)
    before = {v.name for v in engine.volumes.list()}
    c = engine.containers.create(ContainerSpec(
        image="e2e-anon-volumes:1", cmd=["sh", "-c", "grep -c ^root: /etc/passwd; ls /scratch"],
        network_mode="none", mounts=[MountSpec(type="volume", target="/scratch")]))
    try:
        made = [v for v in engine.volumes.list() if v.name not in before]
        assert len(made) == 2 and all(v.users == [c.id] for v in made)
        assert all(not any(v.mountpoint.iterdir()) for v in made)  # empty until the start
        with pytest.raises(Conflict, match="in use"):
            engine.volumes.remove(made[0].name)
        assert not set(engine.volumes.prune().get("VolumesDeleted") or []) & {
            v.name for v in made}
        engine.containers.start(c.id)
        assert output(engine, c.id) == (0, "1\n")
        assert {v.name for v in engine.volumes.list()} - before == {v.name for v in made}
        etc = next(v for v in made if (v.mountpoint / "passwd").exists())  # copied in
        assert etc.users == [c.id]
    finally:
        engine.containers.remove(c.id, force=True, volumes=True)
        engine.images.remove(image.id, force=True)
    assert {v.name for v in engine.volumes.list()} == before  # rm -v took both
