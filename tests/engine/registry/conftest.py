"""Helpers for registry tests: empty engines, OCI directories for skopeo, random images."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from engine import Engine
from tests.fixtures.engine import TEST_BASE


@pytest.fixture
def scratch(engine_config) -> Iterator[Path]:
    path = TEST_BASE / f"reg-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def empty_engine(engine_config, scratch: Path) -> Engine:
    """A second engine with its own, empty image store (same host prefix as the session's)."""
    config = dataclasses.replace(engine_config, root=scratch / "root2")
    return Engine(config=config)


def tar_bytes(files: dict[str, bytes | None]) -> bytes:
    """A layer tar: ``name -> content``; ``None`` makes a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_oci_dir(dest: Path, layers: list[tuple[dict, str]], *, tag: str = "latest",
                  cmd: list[str] | None = None, extra_platforms: tuple[str, ...] = ()) -> dict:
    """An OCI image layout as skopeo reads it; ``layers`` = [(files, "gzip"|"zstd"|"tar")].

    With ``extra_platforms`` (e.g. ``("arm64",)``) the tag names an image index whose
    other entries are images for those architectures (holding a file ``/arch``).
    Returns the digests written (config, manifest, layers, index).
    """
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = _sha(data)
        (blobs / digest[7:]).write_bytes(data)
        return digest

    def image(arch: str, layer_specs: list[tuple[dict, str]]) -> tuple[dict, dict]:
        diff_ids, descs = [], []
        for files, comp in layer_specs:
            tar = tar_bytes(files)
            diff_ids.append(_sha(tar))
            if comp == "gzip":
                blob, mt = gzip.compress(tar), "application/vnd.oci.image.layer.v1.tar+gzip"
            elif comp == "zstd":
                blob = zstandard.ZstdCompressor().compress(tar)
                mt = "application/vnd.oci.image.layer.v1.tar+zstd"
            else:
                blob, mt = tar, "application/vnd.oci.image.layer.v1.tar"
            descs.append({"mediaType": mt, "digest": put(blob), "size": len(blob)})
        config = {"architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
                  "config": {"Cmd": cmd or ["/bin/sh"], "Env": ["PATH=/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                              for i in range(len(diff_ids))]}
        cbytes = json.dumps(config).encode()
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": put(cbytes), "size": len(cbytes)},
                    "layers": descs}
        mbytes = json.dumps(manifest).encode()
        desc = {"mediaType": manifest["mediaType"], "digest": put(mbytes), "size": len(mbytes),
                "platform": {"os": "linux", "architecture": arch}}
        return desc, {"config": manifest["config"]["digest"], "layers": descs,
                      "diff_ids": diff_ids}

    main_desc, info = image("amd64", layers)
    info["manifest"] = main_desc["digest"]
    entries = [image(arch, [({"arch": arch.encode()}, "gzip")])[0] for arch in extra_platforms]
    if entries:
        entries.insert(len(entries) // 2, main_desc)  # the host's entry is not simply first
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": entries}
        ibytes = json.dumps(index).encode()
        info["index"] = put(ibytes)
        top = {"mediaType": index["mediaType"], "digest": info["index"], "size": len(ibytes)}
    else:
        top = {k: v for k, v in main_desc.items() if k != "platform"}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [top]}))
    return info


def random_image(engine: Engine, reference: str, layer_sizes: list[int], workdir: Path):
    """An image of random (incompressible) files, one layer per size, built by commit."""
    img = None
    for i, size in enumerate(layer_sizes):
        upper = workdir / f"upper-{uuid.uuid4().hex[:6]}"
        upper.mkdir()
        (upper / f"data{i}.bin").write_bytes(os.urandom(size))
        img = engine.images.commit(img, upper, reference=reference,
                                   config={"Cmd": ["sh"]}, created_by=f"layer {i}")
        shutil.rmtree(upper)
    return img
