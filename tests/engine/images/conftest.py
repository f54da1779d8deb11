"""Helpers for image tests: tarballs built entry by entry, and private stores."""

from __future__ import annotations

import io
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.engine import TEST_BASE


def entry(name: str, kind: str = "file", data: bytes = b"", *, link: str = "",
          mode: int | None = None, uid: int = 0, gid: int = 0, uname: str = "",
          devmajor: int = 0, devminor: int = 0,
          pax: dict | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.uid, info.gid, info.uname, info.gname = uid, gid, uname, ""
    info.mtime = 1_700_000_000
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
             "fifo": tarfile.FIFOTYPE}
    info.type = types[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.linkname = link
    info.devmajor, info.devminor = devmajor, devminor
    if pax:
        info.pax_headers = pax
    if kind == "file":
        info.size = len(data)
    return info, data


def make_tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


@pytest.fixture
def workdir(engine_config) -> Iterator[Path]:
    """A private directory on the engine's filesystem, removed afterwards."""
    path = TEST_BASE / f"img-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store(workdir: Path):
    """An empty image store of its own (no busybox), with an event recorder."""
    from engine.events import EventBus
    from engine.images.store import ImageStore

    bus = EventBus(workdir / "events.jsonl")
    return ImageStore(workdir / "images", bus)


@pytest.fixture
def dest(workdir: Path) -> Path:
    """An empty layer directory to unpack into."""
    d = workdir / "layer"
    d.mkdir()
    return d


def unpack(data: bytes, dest: Path):
    """Unpack an in-memory layer blob into ``dest`` (the store's own entry point)."""
    from engine.images.unpack import unpack_blob

    return unpack_blob(io.BufferedReader(io.BytesIO(data)), dest, what="test layer")
