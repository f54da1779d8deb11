"""Pull and push against the real docker-registry, and skopeo on the other end."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from engine import Engine
from engine.errors import ImageNotFound, RegistryError
from engine.images.busybox import BUSYBOX
from tests.engine.registry.conftest import random_image, write_oci_dir


def skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120,
                          check=True)


def test_push_then_pull_into_an_empty_store(engine: Engine, empty_engine: Engine,
                                            registry_server) -> None:
    target = f"{registry_server.host}/estiba/busybox:1"
    lines: list[dict] = []
    digest = engine.registry.push(target, source="busybox", progress=lines.append)
    assert digest.startswith("sha256:")
    # The session's registry may hold busybox's blobs already (another test pushed
    # them): each blob then ends "Layer already exists" or "Mounted from", not "Pushed".
    prepared = {line["id"] for line in lines if line.get("status") == "Preparing"}
    finished = {line["id"] for line in lines
                if line.get("status", "").startswith(("Pushed", "Layer already exists",
                                                      "Mounted from"))}
    assert prepared and finished == prepared
    local = engine.images.resolve("busybox")
    # one line per layer, as Docker shows it: the config goes up without lines of its own
    assert local.id.split(":")[1][:12] not in {line.get("id") for line in lines}

    assert not empty_engine.images.list()
    events = []
    unsubscribe = empty_engine.events.subscribe(events.append)
    pulled_lines: list[dict] = []
    try:
        img = empty_engine.registry.pull(target, progress=pulled_lines.append)
    finally:
        unsubscribe()
    assert img.id == local.id                         # same config blob, same image ID
    assert img.repo_tags == [target]
    assert img.repo_digests == [f"{registry_server.host}/estiba/busybox@{digest}"]
    assert img.runtime_config["Cmd"] == ["sh"]
    [layer_dir] = img.layer_dirs()
    assert (layer_dir / "bin/busybox").read_bytes() == BUSYBOX.read_bytes()
    assert os.readlink(layer_dir / "bin/sh") == "/bin/busybox"
    statuses = [line.get("status") for line in pulled_lines]
    assert "Downloading" in statuses and "Pull complete" in statuses
    assert any(e.action == "progress" and e.transient for e in events)
    assert any(e.action == "pull" and not e.transient for e in events)
    assert empty_engine.images.resolve(f"{registry_server.host}/estiba/busybox@{digest}").id \
        == img.id

    # Pulled twice: nothing is downloaded again.
    again: list[dict] = []
    empty_engine.registry.pull(target, progress=again.append)
    assert "Downloading" not in [line.get("status") for line in again]
    assert "Already exists" in [line.get("status") for line in again]


def test_pulled_image_runs(empty_engine: Engine, engine: Engine, registry_server) -> None:
    pytest.importorskip("engine.runtime.containers")
    from engine.runtime.containers import ContainerSpec

    target = f"{registry_server.host}/estiba/runme:1"
    engine.registry.push(target, source="busybox")
    empty_engine.registry.pull(target)
    c = empty_engine.containers.create(ContainerSpec(
        image=target, cmd=["sh", "-c", "echo pulled-and-running"], network_mode="none"))
    try:
        empty_engine.containers.start(c.id)
        assert empty_engine.containers.wait(c.id, timeout=30) == 0
        out = b"".join(e.data for e in empty_engine.containers.logs(c.id))
        assert b"pulled-and-running" in out
    finally:
        empty_engine.containers.remove(c.id, force=True)


def test_pull_unknown_tag_is_image_not_found(empty_engine: Engine, registry_server) -> None:
    with pytest.raises(ImageNotFound, match="nothing/here:nope"):
        empty_engine.registry.pull(f"{registry_server.host}/nothing/here:nope")
    assert not empty_engine.images.list()


def test_skopeo_pushes_an_index_estiba_pulls_the_host_platform(
        empty_engine: Engine, registry_server, scratch: Path) -> None:
    oci = scratch / "oci"
    info = write_oci_dir(oci, [
        ({"etc": None, "etc/motd": b"hello from skopeo\n", "opt": None, "opt/gone": b"x"}, "gzip"),
        ({"etc": None, "etc/.wh.motd": b"", "opt": None, "opt/.wh..wh..opq": b"",
          "opt/new": b"y"}, "zstd"),
        ({"plain": b"uncompressed layer"}, "tar"),
    ], extra_platforms=("arm64", "ppc64le"))
    target = f"{registry_server.host}/skopeo/multi:v1"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{oci}:latest", f"docker://{target}")

    img = empty_engine.registry.pull(target)
    assert img.id == info["config"]
    assert img.config["architecture"] == "amd64"
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{target}"], capture_output=True, check=True).stdout
    served = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert json.loads(raw)["mediaType"].endswith("index.v1+json")
    assert img.repo_digests == [f"{registry_server.host}/skopeo/multi@{served}"]
    base, middle, top = img.layer_dirs()
    assert (base / "etc/motd").read_bytes() == b"hello from skopeo\n"
    wh = os.lstat(middle / "etc/motd")
    assert wh.st_rdev == 0 and (wh.st_mode & 0o170000) == 0o020000   # overlay whiteout
    assert os.getxattr(middle / "opt", "trusted.overlay.opaque") == b"y"
    assert (top / "plain").read_bytes() == b"uncompressed layer"
    assert [la.diff_id for la in img.layers] == info["diff_ids"]


def test_skopeo_pulls_what_estiba_pushed(engine: Engine, registry_server, scratch: Path) -> None:
    target = f"{registry_server.host}/estiba/for-skopeo:2"
    digest = engine.registry.push(target, source="busybox")
    out = scratch / "out"
    skopeo("copy", "--src-tls-verify=false", f"docker://{target}", f"oci:{out}:x")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    manifest = json.loads((out / "blobs/sha256" / digest[7:]).read_text())
    local = engine.images.resolve("busybox")
    assert manifest["config"]["digest"] == local.id
    assert [d["digest"] for d in manifest["layers"]] == [la.digest for la in local.layers]
    inspect = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{target}").stdout)
    assert inspect["Digest"] == digest and inspect["Architecture"] == "amd64"


def test_chunked_upload_and_multi_layer_round_trip(engine: Engine, empty_engine: Engine,
                                                   registry_server, scratch: Path) -> None:
    img = random_image(engine, "estiba-test/chunky:1", [300_000, 50_000, 700_000], scratch)
    target = f"{registry_server.host}/estiba/chunky:1"
    lines: list[dict] = []
    try:
        engine.registry.push(target, source=img.id, chunk_size=128 * 1024,
                             progress=lines.append)
        assert any(line.get("status") == "Pushing" for line in lines)  # PATCHed in chunks
        pulled = empty_engine.registry.pull(target)
        assert [la.diff_id for la in pulled.layers] == [la.diff_id for la in img.layers]
        for ours, theirs in zip(img.layer_dirs(), pulled.layer_dirs(), strict=True):
            for f in ours.iterdir():
                assert (theirs / f.name).read_bytes() == f.read_bytes()
    finally:
        engine.images.remove(img.id, force=True)


def test_corrupted_blob_in_the_registry_is_refused(engine: Engine, empty_engine: Engine,
                                                   registry_server, scratch: Path) -> None:
    img = random_image(engine, "estiba-test/corrupt:1", [200_000], scratch)
    target = f"{registry_server.host}/estiba/corrupt:1"
    try:
        engine.registry.push(target, source=img.id)
        digest = img.layers[-1].digest
        blob = (registry_server.storage / "docker/registry/v2/blobs/sha256" / digest[7:9]
                / digest[7:] / "data")
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        with pytest.raises(RegistryError, match="failed verification"):
            empty_engine.registry.pull(target)
        assert not empty_engine.images.list()
        assert not empty_engine.images.blobs.has(digest)
        assert [p.name for p in empty_engine.images.layers_dir.iterdir()] == []
    finally:
        engine.images.remove(img.id, force=True)


def test_https_is_used_for_registries_not_marked_insecure(engine_config, scratch: Path,
                                                          registry_server) -> None:
    import dataclasses

    config = dataclasses.replace(engine_config, root=scratch / "root3", insecure_registries=())
    strict = Engine(config=config)
    with pytest.raises(RegistryError, match="TLS"):
        strict.registry.pull(f"{registry_server.host}/estiba/busybox:1")


def test_monolithic_push_reports_bytes(engine: Engine, empty_engine: Engine,
                                       registry_server, scratch: Path) -> None:
    """A blob small enough for one PUT still shows its bytes going out."""
    img = random_image(engine, "estiba-test/mono:1", [900_000], scratch)
    target = f"{registry_server.host}/estiba/mono:1"
    lines: list[dict] = []
    try:
        engine.registry.push(target, source=img.id, progress=lines.append)
        layer = img.layers[-1]
        sid = layer.digest.split(":", 1)[1][:12]
        pushing = [line["progressDetail"] for line in lines
                   if line.get("id") == sid and line.get("status") == "Pushing"]
        assert len(pushing) >= 5
        assert {p["total"] for p in pushing} == {layer.blob_size}
        currents = [p["current"] for p in pushing]
        assert currents == sorted(currents) and currents[0] < layer.blob_size
        assert currents[-1] == layer.blob_size
        statuses = [line.get("status") for line in lines if line.get("id") == sid]
        assert statuses.index("Pushed") > statuses.index("Pushing")
        pulled = empty_engine.registry.pull(target)
        assert [la.diff_id for la in pulled.layers] == [la.diff_id for la in img.layers]
    finally:
        engine.images.remove(img.id, force=True)
