"""docker-py against the endpoints the other API tests leave out.

pause/unpause, the four prunes, export and exec resize — each checked by what
really happened (a frozen process writes nothing, a pruned object is gone and
the one in use stays, the tar holds the container's own files, ``stty`` inside
the terminal sees the new size).
"""

from __future__ import annotations

import io
import select
import tarfile
import time
import uuid

import docker
import pytest


def _wait(check, what: str, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not seen in {timeout}s")


def test_pause_freezes_and_unpause_thaws(dclient, made):
    name = made.uniq()
    c = dclient.containers.run("busybox", ["sh", "-c", "while :; do echo tick; sleep 0.05; done"],
                               name=name, detach=True)
    _wait(lambda: c.logs().count(b"tick") >= 2, "ticks")
    c.pause()
    c.reload()
    assert c.status == "paused"
    assert c.attrs["State"]["Paused"] is True and c.attrs["State"]["Running"] is True
    assert name in [x.name for x in dclient.containers.list(filters={"status": "paused"})]
    with pytest.raises(docker.errors.APIError) as err:  # Docker: 409, unpause it first
        c.exec_run(["true"])
    assert err.value.status_code == 409
    time.sleep(0.3)  # a tick the freezer let through on its way down
    frozen = c.logs().count(b"tick")
    time.sleep(0.6)
    assert c.logs().count(b"tick") == frozen, "a paused container went on running"
    with pytest.raises(docker.errors.APIError):  # already paused
        c.pause()
    c.unpause()
    c.reload()
    assert c.status == "running" and c.attrs["State"]["Paused"] is False
    _wait(lambda: c.logs().count(b"tick") > frozen + 2, "ticks after unpause")
    with pytest.raises(docker.errors.APIError):  # not paused
        c.unpause()


def test_container_prune_removes_stopped_only(dclient, made):
    label = {"estiba.prune": uuid.uuid4().hex[:8]}
    stopped, running = made.uniq(), made.uniq()
    s = dclient.containers.run("busybox", ["true"], name=stopped, labels=label, detach=True)
    s.wait(timeout=30)
    r = dclient.containers.run("busybox", ["sleep", "60"], name=running, labels=label,
                               detach=True)
    result = dclient.containers.prune(
        filters={"label": f"estiba.prune={label['estiba.prune']}"})
    assert result["ContainersDeleted"] == [s.id]
    assert isinstance(result["SpaceReclaimed"], int)
    with pytest.raises(docker.errors.NotFound):
        dclient.containers.get(stopped)
    assert dclient.containers.get(running).status == "running"
    assert r.id not in (dclient.containers.prune(
        filters={"label": f"estiba.prune={label['estiba.prune']}"})["ContainersDeleted"] or [])


def test_image_prune_removes_dangling_only(dclient, made):
    name = made.uniq()
    c = dclient.containers.run("busybox", ["sh", "-c", "echo x > /dangling"], name=name,
                               detach=True)
    c.wait(timeout=30)
    image = c.commit()  # no repository: a dangling image
    assert image.tags == []
    assert image.id in [i.id for i in dclient.images.list(filters={"dangling": True})]
    c.remove()
    result = dclient.images.prune(filters={"dangling": True})
    deleted = [d.get("Deleted") for d in result["ImagesDeleted"] or []]
    assert image.id in deleted
    assert isinstance(result["SpaceReclaimed"], int)
    with pytest.raises(docker.errors.ImageNotFound):
        dclient.images.get(image.id)
    assert dclient.images.get("busybox:latest").tags  # tagged images stay


def test_volume_prune_keeps_volumes_in_use(dclient, made):
    tag = {"estiba.prune": uuid.uuid4().hex[:8]}
    unused, created, exited = made.uniq("v"), made.uniq("v"), made.uniq("v")
    for name in (unused, created, exited):
        dclient.volumes.create(name, labels=tag)
    other = made.uniq("v")
    dclient.volumes.create(other)  # no label: the filter keeps it out
    # In use by a container only created, and by one that ran and exited.
    dclient.containers.create("busybox", ["true"], name=made.uniq(),
                              volumes={created: {"bind": "/data", "mode": "rw"}})
    ran = dclient.containers.run("busybox", ["sh", "-c", "echo hi > /data/f"], detach=True,
                                 name=made.uniq(), volumes={exited: {"bind": "/data"}})
    ran.wait(timeout=30)
    result = dclient.volumes.prune(filters={"label": f"estiba.prune={tag['estiba.prune']}"})
    assert result["VolumesDeleted"] == [unused]
    assert isinstance(result["SpaceReclaimed"], int)
    with pytest.raises(docker.errors.NotFound):
        dclient.volumes.get(unused)
    for name in (created, exited, other):
        assert dclient.volumes.get(name).name == name
    # Without filters: every unused volume goes (Docker 1.41), the used ones stay.
    result = dclient.volumes.prune()
    assert other in result["VolumesDeleted"]
    assert created not in result["VolumesDeleted"] and exited not in result["VolumesDeleted"]
    assert dclient.volumes.get(created).name == created


def test_network_prune_keeps_networks_in_use_and_the_defaults(dclient, made):
    unused, used = made.uniq("n"), made.uniq("n")
    dclient.networks.create(unused, driver="bridge")
    net = dclient.networks.create(used, driver="bridge")
    c = dclient.containers.run("busybox", ["sleep", "60"], name=made.uniq(), detach=True,
                               network=used)
    assert net.id
    tag = uuid.uuid4().hex[:8]
    labelled = made.uniq("n")
    dclient.networks.create(labelled, driver="bridge", labels={"estiba.prune": tag})
    result = dclient.networks.prune(filters={"label": f"estiba.prune={tag}"})
    assert result["NetworksDeleted"] == [labelled]
    assert dclient.networks.get(unused).name == unused
    result = dclient.networks.prune()
    assert unused in (result["NetworksDeleted"] or [])
    assert used not in (result["NetworksDeleted"] or [])
    assert "bridge" not in (result["NetworksDeleted"] or [])
    with pytest.raises(docker.errors.NotFound):
        dclient.networks.get(unused)
    assert dclient.networks.get(used).name == used
    assert dclient.networks.get("bridge").name == "bridge"
    c.remove(force=True)


def test_export_is_a_tar_of_the_containers_files(dclient, made):
    name = made.uniq()
    c = dclient.containers.run(
        "busybox", ["sh", "-c", "mkdir -p /srv/x && echo exported > /srv/x/hello.txt"],
        name=name, detach=True)
    c.wait(timeout=30)
    data = b"".join(c.export())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = {m.name.lstrip("./").rstrip("/") for m in tar.getmembers()}
        assert "srv/x/hello.txt" in names
        assert "bin/busybox" in names  # the image's files too: the whole filesystem
        member = next(m for m in tar.getmembers()
                      if m.name.lstrip("./") == "srv/x/hello.txt")
        assert tar.extractfile(member).read() == b"exported\n"
    with pytest.raises(docker.errors.NotFound):  # docker-py raises when the stream is read
        b"".join(dclient.api.export(made.uniq()))


def _read_until(sock, text: bytes, timeout: float = 15) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while text not in out:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{text!r} not seen; got {out[-500:]!r}")
        ready, _, _ = select.select([sock], [], [], min(left, 0.2))
        if ready:
            chunk = sock.recv(4096)
            if not chunk:
                raise AssertionError(f"{text!r} not seen before EOF: {out[-500:]!r}")
            out += chunk
    return out


def test_exec_resize_reaches_the_terminal(dclient, made):
    name = made.uniq()
    c = dclient.containers.run("busybox", ["sleep", "120"], name=name, detach=True)
    api = dclient.api
    eid = api.exec_create(c.id, ["sh"], stdin=True, tty=True)["Id"]
    sock = api.exec_start(eid, tty=True, socket=True)
    raw = getattr(sock, "_sock", sock)
    try:
        api.exec_resize(eid, height=33, width=101)
        raw.sendall(b"echo SIZE=$(stty size)\n")
        assert b"SIZE=33 101" in _read_until(raw, b"SIZE=33 101")
        api.exec_resize(eid, height=12, width=40)
        raw.sendall(b"echo SIZE=$(stty size)\n")
        assert b"SIZE=12 40" in _read_until(raw, b"SIZE=12 40")
        raw.sendall(b"exit 0\n")
    finally:
        sock.close()
    info = _wait(lambda: (i := api.exec_inspect(eid)) and not i["Running"] and i,
                 "the exec ending")
    assert info["ExitCode"] == 0
    with pytest.raises(docker.errors.NotFound):
        api.exec_resize("0" * 64, height=10, width=10)
