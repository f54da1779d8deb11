"""Choosing from an index: os, architecture and CPU variant, as containerd does."""

from __future__ import annotations

import pytest

from engine.errors import RegistryError
from engine.registry.manifest import select_platform

MT = "application/vnd.oci.image.manifest.v1+json"


def index(*platforms: str) -> dict:
    entries = []
    for n, text in enumerate(platforms):
        os_name, arch, *variant = text.split("/")
        platform = {"os": os_name, "architecture": arch}
        if variant:
            platform["variant"] = variant[0]
        entries.append({"mediaType": MT, "digest": "sha256:" + f"{n:x}" * 64,
                        "size": 500, "platform": platform})
    return {"schemaVersion": 2, "manifests": entries}


def chosen(doc: dict, arch: str, variant: str = "") -> str:
    d = select_platform(doc, "linux", arch, "test", variant)
    p = d.platform
    return "/".join(filter(None, (p["os"], p["architecture"], p.get("variant"))))


def test_the_hosts_own_variant_wins_then_the_newest_older_one():
    doc = index("linux/arm/v5", "linux/arm/v7", "linux/arm/v6", "linux/arm64/v8")
    assert chosen(doc, "arm", "v7") == "linux/arm/v7"
    assert chosen(doc, "arm", "v6") == "linux/arm/v6"
    assert chosen(index("linux/arm/v5", "linux/arm/v6"), "arm", "v7") == "linux/arm/v6"


def test_a_variant_newer_than_the_host_is_never_chosen():
    with pytest.raises(RegistryError, match=r"no image for linux/arm/v6 .*linux/arm/v7"):
        select_platform(index("linux/arm/v7"), "linux", "arm", "test", "v6")
    # amd64 with no variant is v1: an image built for x86-64-v3 needs a newer CPU
    assert chosen(index("linux/amd64/v3", "linux/amd64"), "amd64") == "linux/amd64"


def test_a_bare_architecture_means_its_default_variant():
    assert chosen(index("linux/arm64", "linux/amd64"), "arm64", "v8") == "linux/arm64"
    assert chosen(index("linux/arm64/v8"), "arm64") == "linux/arm64/v8"


def test_among_equals_the_index_order_decides_and_other_systems_are_skipped():
    doc = index("windows/amd64", "linux/amd64", "linux/amd64", "linux/s390x")
    assert select_platform(doc, "linux", "amd64", "test").digest == "sha256:" + "1" * 64
    with pytest.raises(RegistryError, match="linux/riscv64"):
        select_platform(doc, "linux", "riscv64", "test")
