"""What a container asks to mount, and how it becomes an OCI ``mounts`` entry.

A container sees three kinds of foreign storage, as in Docker: a *volume* (a
directory the engine owns, named or anonymous), a *bind mount* (a host path
shown inside the container) and a *tmpfs* (memory that vanishes at stop). The
OCI runtime spec knows only mount entries ``{destination, type, source,
options}``; this module turns each kind into one, checking the user's input
first (relative targets, missing host paths, unknown propagation modes), so a
bad ``-v`` fails with a clear message before any runtime is started.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidArgument, NotFound

#: Propagation modes of Linux's shared subtrees (mount(2), MS_SHARED & co.).
PROPAGATIONS = {"private", "rprivate", "shared", "rshared", "slave", "rslave"}
#: Docker's rule for volume names: at least two characters, no slash.
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")


@dataclass
class MountSpec:
    """One mount a container asks for (Docker's ``HostConfig.Mounts`` item, simplified)."""

    type: str  # "bind" | "volume" | "tmpfs"
    source: str | None = None
    target: str = ""
    read_only: bool = False
    tmpfs_size: int | None = None
    propagation: str | None = None
    tmpfs_mode: int | None = None
    #: Volume option ``nocopy``: do not copy the image's files into an empty volume.
    no_copy: bool = False


def coerce(mount: Any) -> MountSpec:
    """Accept a MountSpec, any object with the same attributes, or a dict (the API's JSON)."""
    if isinstance(mount, MountSpec):
        return mount
    if isinstance(mount, dict):
        get = mount.get
    else:

        def get(key: str, default: Any = None) -> Any:
            return getattr(mount, key, default)

    mtype = get("type") or get("Type")
    target = get("target") or get("Target")
    if not mtype or not target:
        raise InvalidArgument(f"mount {mount!r}: a type and a target are required")
    return MountSpec(
        type=str(mtype).lower(),
        source=get("source", get("Source")),
        target=str(target),
        read_only=bool(get("read_only", get("ReadOnly", False))),
        tmpfs_size=get("tmpfs_size"),
        propagation=get("propagation"),
        tmpfs_mode=get("tmpfs_mode"),
        no_copy=bool(get("no_copy", False)),
    )


def check_target(target: str) -> str:
    """A container path: absolute, normalised, never ``/`` itself."""
    if not target.startswith("/"):
        raise InvalidArgument(f"mount target {target!r}: must be an absolute path in the container")
    norm = posixpath.normpath(target)
    if norm == "/":
        raise InvalidArgument("mount target '/': cannot mount over the container's root")
    if "\0" in norm:
        raise InvalidArgument(f"mount target {target!r}: contains a NUL byte")
    return norm


def check_volume_name(name: str) -> str:
    if not VOLUME_NAME.match(name or ""):
        raise InvalidArgument(
            f"volume name {name!r}: use two or more of [a-zA-Z0-9_.-], "
            "starting with a letter or digit"
        )
    return name


def bind_entry(spec: MountSpec) -> dict:
    """A bind mount of a host path: it must exist (Docker's ``--mount`` rule, no silent mkdir)."""
    source = spec.source or ""
    if not source.startswith("/"):
        raise InvalidArgument(f"bind mount source {source!r}: must be an absolute host path")
    if not os.path.exists(source):
        raise NotFound(f"bind mount source path does not exist: {source}")
    propagation = spec.propagation or "rprivate"
    if propagation not in PROPAGATIONS:
        raise InvalidArgument(
            f"bind mount {source}: propagation {propagation!r} is not one of {sorted(PROPAGATIONS)}"
        )
    options = ["rbind", propagation]
    options.append("ro" if spec.read_only else "rw")
    return {
        "destination": check_target(spec.target),
        "type": "bind",
        "source": str(Path(source).resolve()),
        "options": options,
    }


def volume_entry(data_dir: Path, spec: MountSpec) -> dict:
    """A volume is a bind mount of its ``_data`` directory, private to the container."""
    return {
        "destination": check_target(spec.target),
        "type": "bind",
        "source": str(data_dir),
        "options": ["rbind", "rprivate", "ro" if spec.read_only else "rw"],
    }


def tmpfs_entry(spec: MountSpec) -> dict:
    """tmpfs: memory-backed, sized and moded; ``nosuid,nodev`` like Docker's ``--tmpfs``."""
    options = ["nosuid", "nodev"]
    if spec.tmpfs_size is not None:
        size = int(spec.tmpfs_size)
        if size <= 0:
            raise InvalidArgument(f"tmpfs {spec.target}: size must be positive, got {size}")
        options.append(f"size={size}")
    mode = 0o1777 if spec.tmpfs_mode is None else int(spec.tmpfs_mode)
    if not 0 <= mode <= 0o7777:
        raise InvalidArgument(f"tmpfs {spec.target}: mode {oct(mode)} is not a file mode")
    options.append(f"mode={mode:o}")
    if spec.read_only:
        options.append("ro")
    return {
        "destination": check_target(spec.target),
        "type": "tmpfs",
        "source": "tmpfs",
        "options": options,
    }
