"""Fixtures for volume tests: a private VolumeManager and the host-unchanged check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.events import EventBus
from engine.volumes import VolumeManager
from tests.engine.network.conftest import (  # noqa: F401 (fixtures)
    host_unchanged,
    net_engine,
    own_prefix,
)


@pytest.fixture
def volumes(host_unchanged, tmp_path) -> Iterator[VolumeManager]:  # noqa: F811
    """A VolumeManager on its own root; the mount table must be as before at the end."""
    manager = VolumeManager(tmp_path / "volumes", EventBus(tmp_path / "events.jsonl"))
    yield manager
    for vol in manager.list():
        for user in vol.users:
            manager.release(user, remove_anonymous=True)
        manager.remove(vol.name, force=True)
