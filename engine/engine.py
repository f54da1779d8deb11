"""The engine's front door: one object that owns a root directory.

``Engine(root)`` is everything a script, a test or a worker needs:
``engine.images``, ``engine.registry``, ``engine.containers``,
``engine.volumes``, ``engine.networks``, ``engine.builder`` and
``engine.events``. The files under ``root`` are the truth (ARCHITECTURE.md,
rule 2): two ``Engine`` objects on the same root, in two processes, see the same
containers. Each manager is built on first use, so a script that only parses
image references never touches the network code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from engine.events import EventBus

DEFAULT_ROOT = Path(os.environ.get("ESTIBA_ROOT", "/var/lib/estiba"))
DEFAULT_RUN_DIR = Path(os.environ.get("ESTIBA_RUN_DIR", "/run/estiba"))


@dataclass
class EngineConfig:
    """Host-wide settings; every field has a sensible default for a Debian host."""

    root: Path = DEFAULT_ROOT
    #: Volatile state: netns bind mounts, runtime state dirs, sockets.
    run_dir: Path = DEFAULT_RUN_DIR
    #: "crun", "runc" or None for "crun where it works, else runc".
    runtime: str | None = field(default_factory=lambda: os.environ.get("ESTIBA_RUNTIME") or None)
    #: Registries reached over plain HTTP (Docker's "insecure-registries").
    insecure_registries: tuple[str, ...] = ("localhost", "127.0.0.1")
    #: The private registry estiba starts beside itself (``make run``).
    default_registry: str = os.environ.get("ESTIBA_REGISTRY", "127.0.0.1:5000")
    seccomp_profile: Path = Path("/usr/share/containers/seccomp.json")
    #: Prefix of names estiba gives to host objects (bridges, veths, nft tables, cgroups).
    prefix: str = os.environ.get("ESTIBA_PREFIX", "estiba")


class Engine:
    """All engine managers over one root directory."""

    def __init__(self, root: str | Path | None = None, *, config: EngineConfig | None = None, **kw):
        config = config or EngineConfig(**kw)
        if root is not None:
            config.root = Path(root)
        self.config = config
        self.root = Path(config.root)
        self.run_dir = Path(config.run_dir)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        self.events = EventBus(self.root / "events" / "journal.jsonl")

    @cached_property
    def images(self):
        from engine.images.store import ImageStore

        return ImageStore(self.root / "images", self.events, in_use=self._image_in_use)

    @cached_property
    def registry(self):
        from engine.registry.client import RegistryClient

        return RegistryClient(self.images, self.events, self.config)

    @cached_property
    def containers(self):
        from engine.runtime.containers import ContainerManager

        return ContainerManager(self)

    @cached_property
    def volumes(self):
        from engine.volumes import VolumeManager

        return VolumeManager(self.root / "volumes", self.events)

    @cached_property
    def networks(self):
        from engine.network.manager import NetworkManager

        return NetworkManager(self.root / "networks", self.run_dir, self.events, self.config)

    @cached_property
    def builder(self):
        from engine.build.executor import Builder

        return Builder(self)

    def recover(self) -> None:
        """Clean up what a crash or reboot left, once, when the engine starts on a host
        (a worker's start): containers whose supervisor died, network sandboxes and
        volume markers of containers that are gone, then restart policies
        (see :meth:`ContainerManager.recover`). Running containers are left alone."""
        self.containers.recover()

    def _image_in_use(self, image_id: str) -> list[str]:
        """IDs of containers made from ``image_id`` (the image store asks before removal)."""
        return self.containers.ids_using_image(image_id)

    def info(self) -> dict:
        """Host facts for ``docker info`` and the hosts page."""
        from engine.hostinfo import host_info

        return host_info(self)

    def disk_usage(self) -> dict:
        """Docker's ``/system/df``: images with their shared sizes and the containers
        made from them, containers with what they wrote, volumes with what they hold."""
        from collections import Counter

        from engine.disk import tree_size

        listed = self.containers.list(all=True, size=True)
        usage = self.images.disk_usage(users=Counter(c.image_id for c in listed))
        volumes = []
        for vol in self.volumes.list():
            doc = vol.to_docker()
            doc["UsageData"] = {"Size": tree_size(vol.mountpoint), "RefCount": len(vol.users)}
            volumes.append(doc)
        return {"LayersSize": usage["LayersSize"], "Images": usage["Images"],
                "Containers": [c.to_docker_summary() for c in listed], "Volumes": volumes,
                "BuildCache": []}
