"""Helpers for real builds: a context directory, a runner, cleanup of what a test made."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import Engine
from engine.errors import EngineError


@pytest.fixture
def builder(engine: Engine) -> Iterator[Engine]:
    """The session engine; tags made during the test are removed afterwards, and the
    test fails if a build left a container behind."""
    before_tags = {t for img in engine.images.list() for t in img.repo_tags}
    before_containers = {c.id for c in engine.containers.list(all=True)}
    yield engine
    for img in engine.images.list():
        for tag in img.repo_tags:
            if tag not in before_tags:
                with contextlib.suppress(EngineError):
                    engine.images.remove(tag, force=True)
    left = {c.id for c in engine.containers.list(all=True)} - before_containers
    for cid in left:
        with contextlib.suppress(EngineError):
            engine.containers.remove(cid, force=True)
    assert not left, f"the build left containers behind: {left}"


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def run_in(engine: Engine, image: str, cmd: list[str], **spec) -> tuple[int, str]:
    """Run ``cmd`` in a container of ``image``; return (exit code, output)."""
    from engine.runtime.containers import ContainerSpec

    c = engine.containers.create(ContainerSpec(image=image, cmd=cmd or None, network_mode="none",
                                               **spec))
    try:
        engine.containers.start(c.id)
        code = engine.containers.wait(c.id, timeout=60)
        out = b"".join(e.data for e in engine.containers.logs(c.id))
    finally:
        engine.containers.remove(c.id, force=True)
    return code, out.decode()
