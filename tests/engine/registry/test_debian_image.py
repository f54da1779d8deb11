"""The demo base image ``debian:bookworm``, built from Debian's packages (slow: ~1 min)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from engine.images import debian
from engine.runtime.containers import ContainerSpec

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap is not installed")
def test_debian_bookworm_builds_runs_and_pushes(empty_engine, registry_server, scratch):
    image = debian.build_debian(empty_engine.images, tmp_dir=scratch)
    assert empty_engine.images.resolve("debian:bookworm").id == image.id
    assert len(image.layers) == 1 and image.runtime_config["Cmd"] == ["bash"]
    c = empty_engine.containers.create(ContainerSpec(
        image="debian:bookworm", network_mode="none",
        cmd=["bash", "-c", "cat /etc/debian_version; apt-get --version | head -1"]))
    try:
        empty_engine.containers.start(c.id)
        assert empty_engine.containers.wait(c.id, timeout=60) == 0
        out = b"".join(e.data for e in empty_engine.containers.logs(c.id)).decode()
    finally:
        empty_engine.containers.remove(c.id, force=True)
    version, apt = out.splitlines()[:2]
    assert version.startswith("12.") and apt.startswith("apt ")

    target = f"{registry_server.host}/library/debian:bookworm"
    digest = empty_engine.registry.push(target, source="debian:bookworm")
    seen = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{target}"],
                          capture_output=True, text=True, check=True, timeout=60)
    info = json.loads(seen.stdout)
    assert info["Digest"] == digest
    assert info["Layers"] == [image.layers[0].digest]


def test_a_failed_build_says_why_and_leaves_no_image(empty_engine, scratch):
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed")
    with pytest.raises(debian.RuntimeFailure, match="mmdebstrap no-such-suite failed"):
        debian.build_debian(empty_engine.images, suite="no-such-suite",
                            mirror="http://127.0.0.1:9/debian", tmp_dir=scratch)
    assert empty_engine.images.list() == []
    assert list(scratch.glob("estiba-debian-*")) == []
