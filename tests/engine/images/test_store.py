"""The image store: import, references, shared layers, commit, remove, prune, inspect."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from engine.errors import Conflict, ImageNotFound, InvalidArgument
from engine.images.store import ImageStore
from tests.engine.images.conftest import entry, make_tar


def rootfs(**files: bytes) -> bytes:
    return make_tar([entry("etc", "dir")] + [entry(k.replace("__", "/"), data=v)
                                             for k, v in files.items()])


def upper(tmp: Path, files: dict[str, bytes | None]) -> Path:
    """A directory shaped like an overlay upper dir (None = whiteout char device)."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        else:
            p.write_bytes(data)
    return tmp


def test_import_compressions_and_changes(store: ImageStore) -> None:
    tar = rootfs(etc__a=b"1")
    img = store.import_rootfs(gzip.compress(tar), "plain:gz",
                              changes=["ENV A=1 B=two", 'CMD ["echo", "hi"]', "EXPOSE 80",
                                       "LABEL tier=web", "WORKDIR /srv", "USER 1000"])
    same = store.import_rootfs(io.BytesIO(zstandard.ZstdCompressor().compress(tar)), "plain:zst")
    assert img.layers[0].diff_id == same.layers[0].diff_id      # content, not compression
    assert img.layer_dirs() == same.layer_dirs()                 # unpacked once, shared
    rc = img.runtime_config
    assert rc["Env"] == ["A=1", "B=two"] and rc["Cmd"] == ["echo", "hi"]
    assert rc["ExposedPorts"] == {"80/tcp": {}} and rc["Labels"] == {"tier": "web"}
    assert (rc["WorkingDir"], rc["User"]) == ("/srv", "1000")
    with pytest.raises(InvalidArgument, match="RUN"):
        store.import_rootfs(tar, "bad:1", changes=["RUN rm -rf /"])


def test_references_and_ids(store: ImageStore) -> None:
    img = store.import_rootfs(rootfs(etc__x=b"x"), "app")
    assert img.repo_tags == ["docker.io/library/app:latest"]
    for ref in ("app", "app:latest", "docker.io/library/app", img.id, img.id[7:19], img.id[:14]):
        assert store.resolve(ref).id == img.id
    with pytest.raises(ImageNotFound, match="No such image: nope"):
        store.resolve("nope")
    store.tag("app", "127.0.0.1:5000/team/app:v1")
    assert store.resolve("127.0.0.1:5000/team/app:v1").id == img.id
    summary = store.resolve(img.id).to_docker_summary()
    assert summary["RepoTags"] == ["127.0.0.1:5000/team/app:v1", "app:latest"]
    index = json.loads((store.root / "index.json").read_text())
    names = {m["annotations"]["io.containerd.image.name"] for m in index["manifests"]}
    assert names == {"docker.io/library/app:latest", "127.0.0.1:5000/team/app:v1"}


def test_shared_layers_are_removed_with_their_last_image(store: ImageStore, workdir: Path) -> None:
    base = store.import_rootfs(rootfs(etc__base=b"b"), "base:1")
    child1 = store.commit(base, upper(workdir / "u1", {"one": b"1"}), reference="c:1",
                          config={"Cmd": ["one"]}, created_by="RUN one")
    child2 = store.commit(base, upper(workdir / "u2", {"two": b"2"}), reference="c:2",
                          config={"Cmd": ["two"]}, created_by="RUN two")
    assert child1.layer_dirs()[0] == child2.layer_dirs()[0] == base.layer_dirs()[0]
    assert store.layer_refcounts()[base.layers[0].chain_id] == 3

    assert store.remove("base:1") == [{"Untagged": "base:1"}]   # children keep it
    assert base.layer_dirs()[0].is_dir()
    out = store.remove("c:1")
    assert {"Deleted": child1.id} in out and child1.layer_dirs()[1].exists() is False
    assert base.layer_dirs()[0].is_dir()                          # still used by c:2
    out = store.remove("c:2")
    deleted = [x["Deleted"] for x in out if "Deleted" in x]
    assert deleted == [child2.id, base.id]                        # untagged parent goes too
    assert not any(p for p in store.layers_dir.iterdir())
    assert store.blobs.all() == []


def test_remove_refused_while_in_use_unless_forced(workdir: Path) -> None:
    users: dict[str, list[str]] = {}
    store = ImageStore(workdir / "images2", in_use=lambda image_id: users.get(image_id, []))
    img = store.import_rootfs(rootfs(), "busy:1")
    users[img.id] = ["c0ffee" * 10]
    with pytest.raises(Conflict, match="used by container c0ffeec0ffee"):
        store.remove("busy:1")
    store.tag("busy:1", "busy:2")
    assert store.remove("busy:2") == [{"Untagged": "busy:2"}]     # untag is always allowed
    out = store.remove("busy:1", force=True)
    assert {"Deleted": img.id} in out
    assert not store.exists(img.id)


def test_id_with_several_tags_needs_force(store: ImageStore) -> None:
    img = store.import_rootfs(rootfs(), "m:1")
    store.tag("m:1", "m:2")
    with pytest.raises(Conflict, match="must be forced"):
        store.remove(img.id[7:19])
    out = store.remove(img.id[7:19], force=True)
    assert {"Untagged": "m:1"} in out and {"Untagged": "m:2"} in out
    assert {"Deleted": img.id} in out


def test_commit_translates_overlay_whiteouts_and_records_history(store: ImageStore,
                                                                 workdir: Path) -> None:
    base = store.import_rootfs(rootfs(etc__hostname=b"h", etc__keep=b"k"), "b:1",
                               comment="base import")
    up = upper(workdir / "up", {"etc/hostname": None, "etc/new": b"n", "var/data": b"d"})
    os.setxattr(up / "var", "trusted.overlay.opaque", b"y")
    os.symlink("/etc/new", up / "link")
    child = store.commit(base, up, reference="child:1", config={"Cmd": ["sh"]},
                         created_by="/bin/sh -c changes", comment="a step", author="teacher")
    with store.blobs.open(child.layers[-1].digest) as fh, \
            tarfile.open(fileobj=gzip.GzipFile(fileobj=fh)) as tar:
        names = set(tar.getnames())
    assert {"etc/.wh.hostname", "etc/new", "var/.wh..wh..opq", "var/data", "link"} <= names
    top = child.layer_dirs()[-1]
    assert stat.S_ISCHR(os.lstat(top / "etc/hostname").st_mode)
    assert os.getxattr(top / "var", "trusted.overlay.opaque") == b"y"
    assert os.readlink(top / "link") == "/etc/new"

    tagged = store.commit(child, None, reference="child:2", config={"Cmd": ["env"]},
                          created_by='/bin/sh -c #(nop)  CMD ["env"]')
    assert tagged.layers == child.layers
    assert tagged.config["history"][-1]["empty_layer"] is True
    hist = store.history("child:2")
    assert [h["CreatedBy"] for h in hist] == ['/bin/sh -c #(nop)  CMD ["env"]',
                                               "/bin/sh -c changes", ""]
    assert hist[0]["Id"] == tagged.id and hist[0]["Tags"] == ["child:2"] and hist[0]["Size"] == 0
    assert hist[1]["Id"] == child.id and hist[1]["Comment"] == "a step"
    assert hist[2]["Id"] == base.id and hist[2]["Size"] == base.size
    inspect = tagged.to_docker_inspect()
    assert inspect["Parent"] == child.id and inspect["Config"]["Cmd"] == ["env"]
    assert inspect["RootFS"]["Layers"] == [la.diff_id for la in child.layers]
    assert inspect["GraphDriver"]["Data"]["UpperDir"] == str(top)


def test_list_filters_and_prune(store: ImageStore, workdir: Path) -> None:
    old = store.import_rootfs(rootfs(etc__o=b"o"), "old:1", changes=["LABEL tier=db"])
    time.sleep(0.01)
    new = store.import_rootfs(rootfs(etc__n=b"n"), "new:1", changes=["LABEL tier=web"])
    time.sleep(0.01)
    dangling = store.import_rootfs(rootfs(etc__d=b"d"), None)
    ids = lambda **f: [i.id for i in store.list(filters=f)]  # noqa: E731
    assert ids() == [dangling.id, new.id, old.id]
    assert ids(dangling=["true"]) == [dangling.id]
    assert ids(dangling={"false": True}) == [new.id, old.id]
    assert ids(reference=["new"]) == [new.id]
    assert ids(reference=["ne*:1"]) == [new.id]
    assert ids(label=["tier=db"]) == [old.id] and ids(label=["tier"]) == [new.id, old.id]
    assert ids(before=["new:1"]) == [old.id]
    assert ids(since=["old:1"]) == [dangling.id, new.id]
    with pytest.raises(InvalidArgument, match="invalid filter"):
        store.list(filters={"colour": ["red"]})

    report = store.prune()
    assert report["ImagesDeleted"] == [{"Deleted": dangling.id}]
    assert report["SpaceReclaimed"] == dangling.size
    assert store.exists("old:1") and store.exists("new:1")
    usage = store.disk_usage()
    assert {i["Id"] for i in usage["Images"]} == {old.id, new.id}
    assert usage["LayersSize"] == old.size + new.size
    store.prune(dangling_only=False)
    assert store.list() == []


def test_events_are_emitted(store: ImageStore) -> None:
    seen = []
    store.events.subscribe(seen.append)
    img = store.import_rootfs(rootfs(), "ev:1")
    store.tag("ev:1", "ev:2")
    store.remove("ev:2")
    store.remove("ev:1")
    actions = [(e.action, e.actor_id) for e in seen]
    assert ("import", img.id) in actions and ("tag", img.id) in actions
    assert ("untag", img.id) in actions and ("delete", img.id) in actions


def test_leftovers_of_a_dead_writer_are_cleaned_at_opening(store: ImageStore) -> None:
    dead = 2**22 + 12345  # above pid_max's default: never a live process
    (store.tmp / f".blob-{dead}-abc").write_bytes(b"half")
    (store.layers_dir / f".layer-{dead}-abc" / "diff").mkdir(parents=True)
    live = store.tmp / f".blob-{os.getpid()}-abc"
    live.write_bytes(b"being written")
    again = ImageStore(store.root)
    assert [p.name for p in again.tmp.iterdir()] == [live.name]
    assert not list(again.layers_dir.iterdir())
    live.unlink()
