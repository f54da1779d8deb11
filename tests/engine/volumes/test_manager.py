"""Volumes on a real filesystem: lifecycle, filters, copy-up, mounts, usage, recovery."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from engine.errors import Conflict, InvalidArgument, NotFound
from engine.events import EventBus
from engine.volumes import VolumeManager

CID1, CID2 = "1" * 64, "2" * 64


def test_create_inspect_list_filters_remove(volumes):
    vol = volumes.create("data", labels={"app": "db"})
    seen = volumes.inspect("data")
    assert seen["Name"] == "data" and seen["Driver"] == "local" and seen["Scope"] == "local"
    assert seen["Labels"] == {"app": "db"}
    assert seen["Mountpoint"] == str(vol.mountpoint) and vol.mountpoint.is_dir()
    assert seen["CreatedAt"].endswith("Z") and seen["UsedBy"] == []
    assert volumes.create("data").created_at == vol.created_at  # idempotent, like Docker
    volumes.create("other")
    assert [v.name for v in volumes.list({"label": ["app=db"]})] == ["data"]
    assert [v.name for v in volumes.list({"name": ["oth"]})] == ["other"]
    assert {v.name for v in volumes.list({"dangling": ["true"]})} == {"data", "other"}
    assert volumes.list({"driver": {"local": True}, "label!": ["app"]})[0].name == "other"
    with pytest.raises(InvalidArgument, match="filter"):
        volumes.list({"colour": ["red"]})
    volumes.remove("other")
    with pytest.raises(NotFound, match="other"):
        volumes.inspect("other")
    events = [json.loads(line) for line in volumes.events.journal.read_text().splitlines()]
    assert [e["action"] for e in events] == ["create", "create", "destroy"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": "a"}, InvalidArgument),
        ({"name": "../etc"}, InvalidArgument),
        ({"name": "x1", "driver": "nfs"}, InvalidArgument),
        ({"name": "x1", "driver_opts": {"colour": "red"}}, InvalidArgument),
        ({"name": "x1", "driver_opts": {"type": "none", "o": "bind", "device": "/nope"}}, NotFound),
    ],
)
def test_bad_volume_requests(volumes, kwargs, error):
    with pytest.raises(error):
        volumes.create(**kwargs)
    assert volumes.list() == []


def _layers(tmp_path: Path) -> list[Path]:
    """Two image layers: the upper one deletes a file (whiteout) and adds another."""
    base, top = tmp_path / "l1", tmp_path / "l2"
    (base / "srv").mkdir(parents=True)
    (base / "srv" / "old").write_text("deleted above")
    (base / "srv" / "conf").write_text("setting=1\n")
    os.chown(base / "srv" / "conf", 1000, 1001)
    os.chmod(base / "srv" / "conf", 0o640)
    os.setxattr(base / "srv" / "conf", "user.origin", b"image")
    os.symlink("conf", base / "srv" / "link")
    os.chown(base / "srv", 33, 33)
    os.chmod(base / "srv", 0o750)
    (top / "srv").mkdir(parents=True)
    os.mknod(top / "srv" / "old", stat.S_IFCHR, os.makedev(0, 0))
    (top / "srv" / "new").write_text("from the top layer")
    os.chown(top / "srv", 33, 33)
    os.chmod(top / "srv", 0o750)
    return [base, top]


def test_first_mount_copies_the_image_files_preserving_metadata(volumes, tmp_path):
    layers = _layers(tmp_path)
    mounts = volumes.prepare_mounts(CID1, [{"type": "volume", "source": "web", "target": "/srv"}],
                                    {}, layers)
    data = volumes.get("web").mountpoint
    assert mounts == [{"destination": "/srv", "type": "bind", "source": str(data),
                       "options": ["rbind", "rprivate", "rw"]}]
    assert sorted(os.listdir(data)) == ["conf", "link", "new"]  # the whiteout hid "old"
    st = os.lstat(data / "conf")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o640)
    assert os.getxattr(data / "conf", "user.origin") == b"image"
    assert os.readlink(data / "link") == "conf"
    top = os.stat(data)
    assert (top.st_uid, stat.S_IMODE(top.st_mode)) == (33, 0o750)
    # Not empty any more: a second container's mount copies nothing over the user's data.
    (data / "conf").write_text("changed by the app\n")
    volumes.prepare_mounts(CID2, [{"type": "volume", "source": "web", "target": "/srv"}], {},
                           layers)
    assert (data / "conf").read_text() == "changed by the app\n"
    assert volumes.inspect("web")["UsedBy"] == sorted([CID1, CID2])
    with pytest.raises(Conflict, match="in use"):
        volumes.remove("web")
    volumes.release(CID1)
    volumes.release(CID2)
    volumes.remove("web")


def test_anonymous_volumes_for_image_volume_paths(volumes, tmp_path):
    layers = _layers(tmp_path)
    first = volumes.prepare_mounts(CID1, [], {"/srv": {}, "/cache": {}}, layers)
    assert [m["destination"] for m in first] == ["/cache", "/srv"]
    anon = {v.name for v in volumes.list()}
    assert len(anon) == 2 and all(len(n) == 64 for n in anon)
    assert all(v.labels == {"com.docker.volume.anonymous": ""} for v in volumes.list())
    # A restart of the same container gets the same anonymous volumes back.
    again = volumes.prepare_mounts(CID1, [], {"/srv": {}, "/cache": {}}, layers)
    assert again == first
    # An explicit mount on a VOLUME path replaces the anonymous one.
    other = volumes.prepare_mounts(CID2, [{"type": "tmpfs", "target": "/srv"}], {"/srv": {}},
                                   layers)
    assert other[0]["type"] == "tmpfs"
    assert set(volumes.release(CID1, remove_anonymous=True)) == anon
    assert {v.name for v in volumes.list()} == set()


def test_named_volume_survives_release_without_removal(volumes):
    volumes.prepare_mounts(CID1, [{"type": "volume", "source": "keep", "target": "/k"}], {}, [])
    (volumes.get("keep").mountpoint / "f").write_text("data")
    assert volumes.release(CID1, remove_anonymous=True) == []
    fresh = VolumeManager(volumes.root, EventBus(volumes.events.journal))  # an engine restart
    assert (fresh.get("keep").mountpoint / "f").read_text() == "data"
    assert fresh.get("keep").users == []
    pruned = fresh.prune()
    assert pruned["VolumesDeleted"] == ["keep"] and pruned["SpaceReclaimed"] >= 4


def test_bind_and_tmpfs_entries(volumes, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    mounts = volumes.prepare_mounts(
        CID1,
        [
            {"type": "bind", "source": str(host), "target": "/ro", "read_only": True},
            {"type": "bind", "source": str(host), "target": "/rw", "propagation": "rshared"},
            {"type": "tmpfs", "target": "/scratch", "tmpfs_size": 1 << 20, "tmpfs_mode": 0o700},
        ],
        {}, [],
    )
    by_dest = {m["destination"]: m for m in mounts}
    assert by_dest["/ro"]["options"] == ["rbind", "rprivate", "ro"]
    assert by_dest["/rw"]["options"] == ["rbind", "rshared", "rw"]
    assert by_dest["/scratch"] == {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                                   "options": ["nosuid", "nodev", "size=1048576", "mode=700"]}
    with pytest.raises(NotFound, match="does not exist: /no/such/dir"):
        volumes.prepare_mounts(CID2, [{"type": "bind", "source": "/no/such/dir", "target": "/x"}],
                               {}, [])
    with pytest.raises(InvalidArgument, match="propagation"):
        volumes.prepare_mounts(CID2, [{"type": "bind", "source": str(host), "target": "/x",
                                       "propagation": "weird"}], {}, [])
    with pytest.raises(InvalidArgument, match="absolute"):
        volumes.prepare_mounts(CID2, [{"type": "tmpfs", "target": "relative"}], {}, [])
    with pytest.raises(InvalidArgument, match="duplicate"):
        volumes.prepare_mounts(CID2, [{"type": "tmpfs", "target": "/a"},
                                      {"type": "tmpfs", "target": "/a/"}], {}, [])
    volumes.release(CID1)


def test_failed_prepare_leaves_nothing(volumes, tmp_path):
    with pytest.raises(NotFound):
        volumes.prepare_mounts(
            CID1,
            [{"type": "volume", "source": "", "target": "/anon"},
             {"type": "volume", "source": "named", "target": "/named"},
             {"type": "bind", "source": "/no/such", "target": "/zz/deeper"}],
            {}, [],
        )
    assert [v.name for v in volumes.list()] == ["named"]  # created on demand, not in use
    assert volumes.get("named").users == []


def test_driver_options_tmpfs_volume_is_mounted_while_used(volumes):
    vol = volumes.create("ram", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=2m"})
    assert volumes.inspect("ram")["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=2m"}
    volumes.prepare_mounts(CID1, [{"type": "volume", "source": "ram", "target": "/r"}], {}, [])
    out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", str(vol.mountpoint)],
                         capture_output=True, text=True).stdout.strip()
    assert out == "tmpfs"
    volumes.release(CID1)
    assert subprocess.run(["findmnt", str(vol.mountpoint)], capture_output=True).returncode != 0


def test_recover_drops_markers_of_dead_containers(volumes):
    volumes.prepare_mounts(CID1, [{"type": "volume", "source": "v1", "target": "/v"}], {}, [])
    volumes.prepare_mounts(CID2, [{"type": "volume", "source": "v1", "target": "/v"}], {}, [])
    (volumes.root / ".new-half-made-abcd").mkdir()  # a crash during create
    volumes.recover(live_container_ids=[CID2])
    assert volumes.get("v1").users == [CID2]
    assert not (volumes.root / ".new-half-made-abcd").exists()
    volumes.release(CID2)
