"""Volumes: storage that outlives containers (named, anonymous, bind and tmpfs mounts).

``from engine.volumes import VolumeManager`` is the entry point; see
:mod:`engine.volumes.manager`.
"""

from engine.volumes.manager import Volume, VolumeManager
from engine.volumes.specs import MountSpec

__all__ = ["MountSpec", "Volume", "VolumeManager"]
