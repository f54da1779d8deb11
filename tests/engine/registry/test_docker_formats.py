"""Docker schema2 manifests and Docker manifest lists, from a real docker-registry.

Images made by skopeo (``--format v2s2``) and documents PUT by hand over HTTP,
as ``docker push`` of a multi-arch image leaves them on a registry.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import requests

from engine import Engine
from engine.errors import ImageNotFound, InvalidArgument, RegistryError
from engine.images.store import (
    MT_DOCKER_CONFIG,
    MT_DOCKER_LAYER,
    MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST,
)
from engine.registry.manifest import MT_DOCKER_LAYER_TAR
from tests.engine.registry.conftest import tar_bytes, write_oci_dir


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _raw_manifest(target: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                           f"docker://{target}"], capture_output=True, check=True,
                          timeout=60).stdout


def test_skopeo_v2s2_image_is_pulled(engine: Engine, empty_engine: Engine, registry_server,
                                     scratch: Path) -> None:
    oci = scratch / "oci"
    info = write_oci_dir(oci, [
        ({"etc": None, "etc/motd": b"docker schema2\n", "opt": None, "opt/old": b"x"}, "gzip"),
        ({"opt": None, "opt/.wh.old": b"", "opt/new": b"y"}, "gzip"),
        ({"plain": b"uncompressed"}, "tar"),
    ], cmd=["/bin/echo", "v2s2"])
    target = f"{registry_server.host}/docker/v2s2:1"
    subprocess.run(["skopeo", "copy", "--format", "v2s2", "--dest-tls-verify=false",
                    f"oci:{oci}:latest", f"docker://{target}"], capture_output=True,
                   check=True, timeout=120)
    raw = _raw_manifest(target)
    served = json.loads(raw)
    assert served["mediaType"] == MT_DOCKER_MANIFEST
    assert served["config"]["mediaType"] == MT_DOCKER_CONFIG
    # (skopeo gzips the uncompressed layer on its way to a registry.)
    assert {la["mediaType"] for la in served["layers"]} == {MT_DOCKER_LAYER}

    img = empty_engine.registry.pull(target)
    assert img.id == served["config"]["digest"]
    assert img.repo_digests == [f"{registry_server.host}/docker/v2s2@{_sha(raw)}"]
    assert img.runtime_config["Cmd"] == ["/bin/echo", "v2s2"]
    assert [la.diff_id for la in img.layers] == info["diff_ids"]
    base, middle, top = img.layer_dirs()
    assert (base / "etc/motd").read_bytes() == b"docker schema2\n"
    assert (middle / "opt/new").read_bytes() == b"y"
    assert (top / "plain").read_bytes() == b"uncompressed"

    # Pushed on by estiba, it stays the same docker schema2 document (same digest).
    again = f"{registry_server.host}/docker/v2s2-again:1"
    digest = empty_engine.registry.push(again, source=img.id)
    assert digest == _sha(raw)
    assert json.loads(_raw_manifest(again))["mediaType"] == MT_DOCKER_MANIFEST


def _upload(base: str, repo: str, data: bytes) -> dict:
    digest = _sha(data)
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    if location.startswith("/"):
        location = base + location
    r = requests.put(location, params={"digest": digest}, data=data, timeout=30,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return {"digest": digest, "size": len(data)}


def _docker_image(base: str, repo: str, os_name: str, arch: str) -> tuple[dict, dict]:
    """A schema2 image of two layers: gzip, then uncompressed (``.diff.tar``, as
    containers/image names it when it does not compress)."""
    tar = tar_bytes({"arch": f"{os_name}/{arch}".encode(), "etc": None,
                     "etc/hostname": b"list\n"})
    plain = tar_bytes({"plain": b"uncompressed " + arch.encode()})
    config = json.dumps({
        "architecture": arch, "os": os_name, "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [_sha(tar), _sha(plain)]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ADD arch"},
                    {"created": "2024-01-01T00:00:00Z", "created_by": "ADD plain"}],
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
        "config": {"mediaType": MT_DOCKER_CONFIG, **_upload(base, repo, config)},
        "layers": [{"mediaType": MT_DOCKER_LAYER, **_upload(base, repo, gzip.compress(tar))},
                   {"mediaType": MT_DOCKER_LAYER_TAR, **_upload(base, repo, plain)}],
    }, indent=3).encode()  # docker's own indentation: the bytes, not the JSON, are hashed
    digest = _sha(manifest)
    r = requests.put(f"{base}/v2/{repo}/manifests/{digest}", data=manifest, timeout=30,
                     headers={"Content-Type": MT_DOCKER_MANIFEST})
    assert r.status_code == 201, r.text
    platform = {"architecture": arch, "os": os_name}
    if arch == "arm64":
        platform["variant"] = "v8"
    return ({"mediaType": MT_DOCKER_MANIFEST, "digest": digest, "size": len(manifest),
             "platform": platform}, {"config": _sha(config), "diff_ids": [_sha(tar), _sha(plain)]})


def push_manifest_list(base: str, repo: str, entries: list[dict], tag: str = "v1"
                       ) -> tuple[bytes, requests.Response]:
    """PUT a Docker manifest list of ``entries`` (from ``_docker_image``) as ``repo:tag``."""
    listing = json.dumps({"schemaVersion": 2, "mediaType": MT_DOCKER_LIST,
                          "manifests": entries}, indent=3).encode()
    r = requests.put(f"{base}/v2/{repo}/manifests/{tag}", data=listing, timeout=30,
                     headers={"Content-Type": MT_DOCKER_LIST})
    assert r.status_code == 201, r.text
    return listing, r


def test_docker_manifest_list_pull_picks_linux_amd64(empty_engine: Engine,
                                                     registry_server) -> None:
    base = f"http://{registry_server.host}"
    repo = "docker/multiarch"
    arm, arm_info = _docker_image(base, repo, "linux", "arm64")
    win, _ = _docker_image(base, repo, "windows", "amd64")
    amd, amd_info = _docker_image(base, repo, "linux", "amd64")
    listing, r = push_manifest_list(base, repo, [arm, win, amd])
    assert r.headers["Docker-Content-Digest"] == _sha(listing)
    target = f"{registry_server.host}/{repo}:v1"
    assert json.loads(_raw_manifest(target))["mediaType"] == MT_DOCKER_LIST

    lines: list[dict] = []
    img = empty_engine.registry.pull(target, progress=lines.append)
    assert img.id == amd_info["config"]
    assert (img.config["os"], img.config["architecture"]) == ("linux", "amd64")
    layer, plain = img.layer_dirs()
    assert (layer / "arch").read_bytes() == b"linux/amd64"
    assert (plain / "plain").read_bytes() == b"uncompressed amd64"
    assert [la.diff_id for la in img.layers] == amd_info["diff_ids"]
    assert img.repo_tags == [target]
    assert img.repo_digests == [f"{registry_server.host}/{repo}@{_sha(listing)}"]
    assert f"Digest: {_sha(listing)}" in [line.get("status") for line in lines]
    # Only the chosen platform's blobs came down.
    assert not empty_engine.images.blobs.has(arm_info["config"])
    assert [la.diff_id for la in img.layers] != arm_info["diff_ids"]

    # By the list's digest, and by the amd64 manifest's own digest: the same image.
    assert empty_engine.registry.pull(
        f"{registry_server.host}/{repo}@{_sha(listing)}").id == img.id
    assert empty_engine.registry.pull(
        f"{registry_server.host}/{repo}@{amd['digest']}").id == img.id


def test_pull_for_another_platform_chooses_its_entry(empty_engine: Engine,
                                                     registry_server) -> None:
    base = f"http://{registry_server.host}"
    repo = "docker/multiplatform"
    arm, arm_info = _docker_image(base, repo, "linux", "arm64")
    amd, _ = _docker_image(base, repo, "linux", "amd64")
    push_manifest_list(base, repo, [amd, arm])
    target = f"{registry_server.host}/{repo}:v1"
    img = empty_engine.registry.pull(target, platform="linux/aarch64")  # an alias of arm64
    assert img.id == arm_info["config"] and img.config["architecture"] == "arm64"
    assert (img.layer_dirs()[0] / "arch").read_bytes() == b"linux/arm64"
    with pytest.raises(RegistryError, match=r"no image for linux/s390x"):
        empty_engine.registry.pull(target, platform="linux/s390x")
    with pytest.raises(InvalidArgument, match="os/arch"):
        empty_engine.registry.pull(target, platform="arm64")


def test_a_single_platform_image_is_checked_against_the_platform(empty_engine: Engine,
                                                                registry_server) -> None:
    """No index to choose from: the config says the platform, as Docker reads it."""
    base = f"http://{registry_server.host}"
    repo = "docker/arm-only"
    arm, arm_info = _docker_image(base, repo, "linux", "arm64")
    r = requests.put(f"{base}/v2/{repo}/manifests/v1", timeout=30,
                     data=requests.get(f"{base}/v2/{repo}/manifests/{arm['digest']}", timeout=30,
                                       headers={"Accept": MT_DOCKER_MANIFEST}).content,
                     headers={"Content-Type": MT_DOCKER_MANIFEST})
    assert r.status_code == 201, r.text
    target = f"{registry_server.host}/{repo}:v1"
    with pytest.raises(ImageNotFound, match=r"does not match the specified platform: "
                                            r"wanted linux/amd64, actual: linux/arm64"):
        empty_engine.registry.pull(target, platform="linux/amd64")
    assert not empty_engine.images.list()
    lines: list[dict] = []
    img = empty_engine.registry.pull(target, progress=lines.append)  # the host's, assumed
    assert img.id == arm_info["config"]
    assert any("does not match the detected host platform" in str(line.get("status"))
               for line in lines)
    assert empty_engine.registry.pull(target, platform="linux/arm64/v8").id == img.id
