"""``containers.list`` reads the folder once and each container once; lookups keep their rules."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from engine import errors
from engine.runtime import store


@pytest.fixture
def counted_reads(monkeypatch):
    """How many times each container file is opened for reading (by name)."""
    reads: Counter = Counter()
    real = store.read_json

    def read_json(path, default=None):
        reads[str(path)] += 1
        return real(path, default)

    monkeypatch.setattr(store, "read_json", read_json)
    return reads


def test_list_reads_each_container_once(engine, containers, counted_reads):
    made = [containers(name=f"ls-once-{i}", labels={"n": str(i)}) for i in range(30)]
    engine.containers._configs.clear()  # as in a new engine process
    counted_reads.clear()
    listed = engine.containers.list(all=True)
    ids = {c.id for c in listed}
    assert {c.id for c in made} <= ids
    for c in made:
        assert counted_reads[str(c.dir / "config.json")] == 1
        assert counted_reads[str(c.dir / "state.json")] == 1
    # nothing else is read per container: two files each, whatever the number of them
    assert sum(counted_reads.values()) == 2 * len(ids)
    # the next list reads only the states: the configs did not change
    counted_reads.clear()
    assert {c.id for c in engine.containers.list(all=True)} == ids
    assert sum(counted_reads.values()) == len(ids)
    assert all(name.endswith("state.json") for name in counted_reads)
    # and the summaries (what ps and reconcile send) read nothing more
    counted_reads.clear()
    for c in listed:
        c.to_docker_summary()
    assert sum(counted_reads.values()) == 0


def test_get_by_full_id_reads_only_that_container(engine, containers, counted_reads):
    made = [containers() for _ in range(5)]
    counted_reads.clear()
    got = engine.containers.get(made[2].id)
    assert got.id == made[2].id
    assert {os.path.dirname(p) for p in counted_reads} == {str(made[2].dir)}


def test_list_keeps_its_filters_and_order(engine, containers):
    a = containers(name="ls-alpha", labels={"team": "a"})
    b = containers(name="ls-beta", labels={"team": "b", "x": "1"})
    c = containers(name="ls-gamma", start=True, cmd=["sleep", "60"])
    ids = [x.id for x in engine.containers.list(all=True)]
    assert ids.index(c.id) < ids.index(b.id) < ids.index(a.id)  # newest first
    assert c.id in [x.id for x in engine.containers.list()]
    assert a.id not in [x.id for x in engine.containers.list()]  # not running

    def names(**filters):
        return {x.name for x in engine.containers.list(all=True, filters=filters)} & {
            "ls-alpha", "ls-beta", "ls-gamma"}

    assert names(name=["ls-(alpha|beta)"]) == {"ls-alpha", "ls-beta"}
    assert names(label=["team"]) == {"ls-alpha", "ls-beta"}
    assert names(label=["team=b"]) == {"ls-beta"}
    assert names(label={"x=1": True}) == {"ls-beta"}
    assert names(status=["running"]) == {"ls-gamma"}
    assert names(status=["created"]) == {"ls-alpha", "ls-beta"}
    assert names(id=[b.id[:12]]) == {"ls-beta"}
    assert names(ancestor=["busybox:latest"]) == {"ls-alpha", "ls-beta", "ls-gamma"}
    labels = engine.containers.get(b.id).to_docker_summary()["Labels"]
    assert labels["team"] == "b" and labels["x"] == "1"
    assert engine.containers.get(b.id).to_docker_inspect()["Config"]["Labels"] == labels


def test_lookups_by_name_prefix_and_id(engine, containers):
    a = containers(name="ls-lookup")
    assert engine.containers.get("ls-lookup").id == a.id
    assert engine.containers.get("/ls-lookup").id == a.id
    assert engine.containers.get(a.id).id == a.id
    assert engine.containers.get(a.id[:12]).id == a.id
    with pytest.raises(errors.NotFound):
        engine.containers.get("ls-no-such-container")
    with pytest.raises(errors.NotFound):
        engine.containers.get("")


def test_a_folder_without_config_is_not_a_container(engine, containers):
    a = containers()
    stray = engine.containers.dir / ("f" * 64)
    stray.mkdir()
    try:
        ids = [c.id for c in engine.containers.list(all=True)]
        assert a.id in ids and stray.name not in ids
        with pytest.raises(errors.NotFound):
            engine.containers.get(stray.name)
    finally:
        stray.rmdir()


def test_a_changed_config_is_read_again(engine, containers):
    a = containers(name="ls-before")
    assert {c.name for c in engine.containers.list(all=True)} >= {"ls-before"}
    engine.containers.rename(a.id, "ls-after")
    names = {c.name for c in engine.containers.list(all=True)}
    assert "ls-after" in names and "ls-before" not in names
    assert engine.containers.get("ls-after").id == a.id
    # a change behind the engine's back (another process) is seen too
    cfg = a.dir / "config.json"
    data = json.loads(cfg.read_text())
    data["Spec"]["labels"] = {"edited": "1"}
    store.write_json_atomic(cfg, data)
    assert engine.containers.get(a.id).labels == {"edited": "1"}
    # a removed container leaves nothing behind in the cache
    engine.containers.remove(a.id)
    engine.containers.list(all=True)
    assert a.id not in engine.containers._configs


def test_list_with_size_measures_what_each_container_wrote(engine, containers):
    c = containers(name="ls-size", start=True, cmd=["sh", "-c",
                                                    "head -c 5000 /dev/zero > /made"])
    engine.containers.wait(c.id)
    image_size = engine.images.resolve(c.image_id).size
    plain = next(x for x in engine.containers.list(all=True) if x.id == c.id)
    assert "SizeRw" not in plain.to_docker_summary()  # not measured unless asked
    sized = next(x for x in engine.containers.list(all=True, size=True) if x.id == c.id)
    summary = sized.to_docker_summary()
    assert 5000 <= summary["SizeRw"] < 5000 + 4096  # the file, and the dirs copied up
    assert summary["SizeRootFs"] == summary["SizeRw"] + image_size
