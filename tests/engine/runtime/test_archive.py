"""docker cp through the engine: a container's files out and in as tar streams."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from engine.errors import Forbidden, InvalidArgument, LayerRejected, NotFound

from .conftest import wait_for

DIR_BIT = 1 << 31


def tar_of(*entries: tuple[str, bytes | str | None]) -> bytes:
    """A tar: (name, bytes) files, (name, None) directories, (name, "->target") symlinks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data[2:]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def members(data: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar}


def test_get_a_file_and_a_directory_of_a_running_container(engine, containers):
    c = containers(start=True, cmd=["sh", "-c", "mkdir -p /srv/d/sub && echo one > /srv/d/a "
                                          "&& echo two > /srv/d/sub/b && sleep 30"])
    wait_for(lambda: os.path.exists(engine.containers._cdir(c.id).upper / "srv/d/sub/b"))
    buf = io.BytesIO()
    info = engine.containers.archive_get(c.id, "/srv/d", buf)
    assert info["name"] == "d" and info["mode"] & DIR_BIT and info["linkTarget"] == ""
    got = members(buf.getvalue())
    assert got["d/a"] == b"one\n" and got["d/sub/b"] == b"two\n" and "d/sub" in got
    one = io.BytesIO()
    info = engine.containers.archive_get(c.id, "/srv/d/a", one)
    assert info["size"] == 4 and not info["mode"] & DIR_BIT
    assert members(one.getvalue()) == {"a": b"one\n"}
    with pytest.raises(NotFound, match="/nothing/here"):
        engine.containers.archive_stat(c.id, "/nothing/here")


def test_put_into_a_stopped_container_lands_in_its_upper_dir(engine, containers):
    c = containers(cmd=["cat", "/copied/hello.txt"])
    count = engine.containers.archive_put(
        c.id, "/", tar_of(("copied", None), ("copied/hello.txt", b"copied in\n"),
                             ("copied/.wh.kept", b"not a whiteout\n")))
    assert count == 3
    upper = engine.containers._cdir(c.id).upper
    assert (upper / "copied/.wh.kept").read_bytes() == b"not a whiteout\n"
    engine.containers.start(c.id)
    assert engine.containers.wait(c.id, timeout=20) == 0
    assert [e.data for e in engine.containers.logs(c.id)] == [b"copied in\n"]
    # a second copy replaces what the first one wrote
    engine.containers.archive_put(c.id, "/", tar_of(("copied/hello.txt", b"again\n")))
    assert (upper / "copied/hello.txt").read_bytes() == b"again\n"


def test_hostile_archives_are_refused_and_the_host_is_untouched(engine, containers, tmp_path):
    c = containers(cmd=["true"])
    outside = tmp_path / "outside"
    for data in (
        tar_of(("../../../../../../" + str(outside).lstrip("/"), b"x")),  # out by ".."
        tar_of(("link", "->" + str(tmp_path)), ("link/evil", b"x")),  # through a symlink
    ):
        with pytest.raises(LayerRejected, match="refused"):
            engine.containers.archive_put(c.id, "/tmp", data)
    assert not outside.exists() and not (tmp_path / "evil").exists()
    with pytest.raises(InvalidArgument, match="not a directory"):
        engine.containers.archive_put(c.id, "/bin/sh", tar_of(("x", b"x")))
    with pytest.raises(NotFound):
        engine.containers.archive_put(c.id, "/no/such/dir", tar_of(("x", b"x")))


def test_paths_resolve_inside_the_container_root(engine, containers):
    c = containers(cmd=["true"])
    # an image (or a user) may make a path a link to "/": it is the container's "/"
    engine.containers.archive_put(c.id, "/", tar_of(("hostroot", "->/")))
    buf = io.BytesIO()
    engine.containers.archive_get(c.id, "/hostroot/etc/passwd", buf)
    passwd = members(buf.getvalue())["passwd"]
    image_passwd = engine.images.resolve("busybox:latest").layer_dirs()[-1] / "etc/passwd"
    assert passwd == image_passwd.read_bytes() != Path("/etc/passwd").read_bytes()
    link = engine.containers.archive_stat(c.id, "/hostroot")
    assert link["linkTarget"] == "/" and link["mode"] & (1 << 27)


def test_a_read_only_root_refuses_a_copy_in(engine, containers):
    c = containers(cmd=["true"], read_only=True)
    with pytest.raises(Forbidden, match="read-only"):
        engine.containers.archive_put(c.id, "/tmp", tar_of(("x", b"x")))


def _mountpoints() -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return sorted(line.split()[4] for line in fh)


def test_copies_see_into_volumes_and_binds_as_the_container_does(engine, containers, tmp_path):
    """A volume or bind is mounted in the container, not on the host's view of its root:
    each copy builds the container's view, and leaves no mount behind."""
    import uuid

    from engine.runtime.containers import MountSpec

    volume = f"cp-vol-{uuid.uuid4().hex[:6]}"
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "host.txt").write_text("from the host\n")
    before = _mountpoints()
    c = containers(start=True, mounts=[
        MountSpec(type="volume", source=volume, target="/data"),
        MountSpec(type="bind", source=str(shared), target="/ro", read_only=True)],
        cmd=["sh", "-c", "echo in-volume > /data/v.txt; sleep 30"])
    try:
        vdir = str(engine.volumes.get(volume).mountpoint)
        wait_for(lambda: os.path.exists(os.path.join(vdir, "v.txt")))
        out = io.BytesIO()
        assert engine.containers.archive_get(c.id, "/data/v.txt", out)["name"] == "v.txt"
        assert members(out.getvalue()) == {"v.txt": b"in-volume\n"}
        out = io.BytesIO()
        engine.containers.archive_get(c.id, "/ro", out)
        assert members(out.getvalue())["ro/host.txt"] == b"from the host\n"
        engine.containers.archive_put(c.id, "/data", tar_of(("put.txt", b"copied in\n")))
        assert Path(vdir, "put.txt").read_bytes() == b"copied in\n"  # in the volume itself
        assert not (engine.containers._cdir(c.id).upper / "data" / "put.txt").exists()
        with pytest.raises(Forbidden, match="read-only mount /ro"):
            engine.containers.archive_put(c.id, "/ro", tar_of(("x", b"x")))
        assert set(_mountpoints()) - set(before) <= {str(engine.containers._cdir(c.id).rootfs)}
        engine.containers.stop(c.id, timeout=1)
        out = io.BytesIO()  # stopped: the same view, built on a root mounted for the copy
        engine.containers.archive_get(c.id, "/data/put.txt", out)
        assert members(out.getvalue()) == {"put.txt": b"copied in\n"}
    finally:
        engine.containers.remove(c.id, force=True, volumes=True)
        engine.volumes.remove(volume, force=True)
    assert set(_mountpoints()) <= set(before)
