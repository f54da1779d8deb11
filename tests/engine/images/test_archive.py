"""save/load in docker-archive and OCI archive form, interoperable with skopeo both ways."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine import Engine
from engine.errors import InvalidArgument, LayerRejected
from engine.images.busybox import BUSYBOX
from tests.engine.registry.conftest import write_oci_dir


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, timeout=120,
                   check=True)


@pytest.fixture
def empty(engine_config, workdir: Path) -> Engine:
    import dataclasses

    return Engine(config=dataclasses.replace(engine_config, root=workdir / "root2"))


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_then_load_into_an_empty_store(engine: Engine, empty: Engine, workdir: Path,
                                            fmt: str) -> None:
    archive = workdir / "bb.tar"
    engine.images.save(["busybox:latest"], archive, format=fmt)
    [img] = empty.images.load(archive)
    local = engine.images.resolve("busybox")
    assert img.id == local.id
    assert img.repo_tags == ["docker.io/library/busybox:latest"]
    assert (img.layer_dirs()[0] / "bin/busybox").read_bytes() == BUSYBOX.read_bytes()
    # Loading again reuses what is there.
    [again] = empty.images.load(archive.open("rb"))
    assert again.id == img.id and len(empty.images.list()) == 1


def test_skopeo_reads_our_docker_archive(engine: Engine, workdir: Path) -> None:
    archive = workdir / "bb.tar"
    engine.images.save(["busybox"], archive)
    skopeo("copy", f"docker-archive:{archive}", f"oci:{workdir / 'oci'}:bb")
    index = json.loads((workdir / "oci/index.json").read_text())
    blobs = workdir / "oci/blobs/sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    local = engine.images.resolve("busybox")
    # skopeo re-encodes the config for OCI; the filesystem and the settings survive.
    assert config["rootfs"] == local.config["rootfs"]
    assert config["config"]["Cmd"] == ["sh"]


def test_skopeo_reads_our_oci_archive(engine: Engine, workdir: Path) -> None:
    archive = workdir / "bb-oci.tar"
    engine.images.save(["busybox"], archive, format="oci-archive")
    skopeo("copy", f"oci-archive:{archive}:latest", f"oci:{workdir / 'oci'}:bb")
    index = json.loads((workdir / "oci/index.json").read_text())
    manifest = json.loads((workdir / "oci/blobs/sha256" /
                           index["manifests"][0]["digest"][7:]).read_text())
    assert manifest["config"]["digest"] == engine.images.resolve("busybox").id


@pytest.mark.parametrize("dest", ["docker-archive", "oci-archive"])
def test_we_load_what_skopeo_wrote(empty: Engine, workdir: Path, dest: str) -> None:
    info = write_oci_dir(workdir / "src", [({"a": b"first"}, "gzip"), ({"b": b"second"}, "tar")])
    out = workdir / "from-skopeo.tar"
    name = "example.org/class/demo:v3"
    skopeo("copy", f"oci:{workdir / 'src'}:latest", f"{dest}:{out}:{name}")
    [img] = empty.images.load(out)
    assert img.id == info["config"]
    assert [la.diff_id for la in img.layers] == info["diff_ids"]
    assert (img.layer_dirs()[1] / "b").read_bytes() == b"second"
    if dest == "docker-archive":
        assert img.repo_tags == [name]


def _archive(members: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_hostile_archives_are_refused_and_nothing_is_indexed(empty: Engine) -> None:
    evil_path = _archive({"manifest.json": json.dumps(
        [{"Config": "../../../etc/passwd", "Layers": []}]).encode()})
    with pytest.raises(InvalidArgument, match="no file"):
        empty.images.load(evil_path)

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("f")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    config = {"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]},
              "config": {}, "os": "linux", "architecture": "amd64"}
    lying = _archive({
        "c.json": json.dumps(config).encode(), "l.tar": layer.getvalue(),
        "manifest.json": json.dumps([{"Config": "c.json", "RepoTags": ["liar:1"],
                                      "Layers": ["l.tar"]}]).encode()})
    with pytest.raises(LayerRejected, match="diff ID"):
        empty.images.load(lying)
    assert not empty.images.list() and not empty.images.exists("liar:1")

    with pytest.raises(InvalidArgument, match="not a tar"):
        empty.images.load(io.BytesIO(b"garbage" * 100))
