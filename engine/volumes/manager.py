"""Named and anonymous volumes of the ``local`` driver, and the mounts a container gets.

A volume is a directory the engine owns, outside every container's overlay, so
its data outlives ``docker rm`` and engine restarts. The layout copies Docker's
so people who know ``/var/lib/docker/volumes`` find their way::

    <root>/<name>/meta.json        Name, Driver, CreatedAt, Labels, Options, Anonymous
    <root>/<name>/_data/           what the container sees (the Mountpoint)
    <root>/<name>/users/<cid>      one empty file per container that has it mounted
    <root>/_containers/<cid>.json  the anonymous volumes a container made (target -> name)

Usage is tracked with one marker file per (volume, container) rather than a
counter in a JSON file: creating or unlinking a file is atomic, so a crash
between two steps leaves at worst a stale marker for a container that no longer
runs, which :meth:`VolumeManager.recover` removes; a counter would be wrong
forever. A volume is created in a temporary directory and renamed into place,
so a crash never leaves a half-made volume behind.

The local driver's options (``type``, ``device``, ``o``) make a volume a mount
of its own, as ``mount -t TYPE -o O DEVICE`` (a tmpfs, or ``type=none o=bind``
of a host directory): it is mounted on ``_data`` when its first container
starts and unmounted when its last one stops, as Docker does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.disk import tree_size
from engine.errors import Conflict, InvalidArgument, NotFound, RuntimeFailure
from engine.events import EventBus
from engine.volumes import copyup
from engine.volumes.specs import (
    bind_entry,
    check_target,
    check_volume_name,
    coerce,
    tmpfs_entry,
    volume_entry,
)

DRIVER = "local"
DRIVER_OPTIONS = {"type", "device", "o"}
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``path`` so readers see the old or the new content, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def mountpoints() -> set[str]:
    """Mount points of this mount namespace (field 5 of /proc/self/mountinfo, unescaped)."""
    points = set()
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            raw = line.split()[4]
            points.add(raw.encode().decode("unicode_escape"))
    return points


@dataclass
class Volume:
    """One volume as stored on disk."""

    name: str
    driver: str
    mountpoint: Path
    created_at: str
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False
    users: list[str] = field(default_factory=list)

    def to_docker(self) -> dict[str, Any]:
        """Docker's ``Volume`` JSON, plus ``UsedBy`` (the ids of containers that mount it)."""
        return {
            "Name": self.name,
            "Driver": self.driver,
            "Mountpoint": str(self.mountpoint),
            "CreatedAt": self.created_at,
            "Labels": dict(self.labels),
            "Scope": "local",
            "Options": dict(self.options) or None,
            "Status": {},
            "UsageData": {"Size": -1, "RefCount": len(self.users)},
            "UsedBy": list(self.users),
        }


class VolumeManager:
    """Create, list, inspect, remove and prune volumes; prepare a container's mounts."""

    def __init__(self, root: Path, events: EventBus) -> None:
        self.root = Path(root)
        self.events = events
        self.root.mkdir(parents=True, exist_ok=True, mode=0o701)
        (self.root / "_containers").mkdir(exist_ok=True, mode=0o700)
        self._thread_lock = threading.RLock()

    # -- locking -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, across threads and processes (the worker, the CLI, tests)."""
        with self._thread_lock:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    # -- reading ---------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.root / check_volume_name(name)

    def _load(self, name: str) -> Volume:
        vdir = self._dir(name)
        try:
            meta = json.loads((vdir / "meta.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"no such volume: {name}") from None
        except ValueError as exc:
            raise RuntimeFailure(f"volume {name}: unreadable meta.json ({exc})") from None
        users_dir = vdir / "users"
        users = sorted(os.listdir(users_dir)) if users_dir.is_dir() else []
        return Volume(
            name=meta["Name"],
            driver=meta.get("Driver", DRIVER),
            mountpoint=vdir / "_data",
            created_at=meta["CreatedAt"],
            labels=meta.get("Labels") or {},
            options=meta.get("Options") or {},
            anonymous=bool(meta.get("Anonymous")),
            users=users,
        )

    def get(self, name: str) -> Volume:
        """The volume called ``name`` (NotFound if none)."""
        return self._load(name)

    def inspect(self, name: str) -> dict[str, Any]:
        return self._load(name).to_docker()

    def _names(self) -> list[str]:
        return sorted(
            entry.name
            for entry in os.scandir(self.root)
            if entry.is_dir() and not entry.name.startswith((".", "_"))
        )

    def list(self, filters: dict[str, Any] | None = None) -> list[Volume]:
        """Volumes matching Docker's filters: ``dangling``, ``name``, ``label``, ``driver``."""
        filters = _normalise_filters(filters)
        out = []
        for name in self._names():
            try:
                vol = self._load(name)
            except (NotFound, RuntimeFailure):
                continue
            if _matches(vol, filters):
                out.append(vol)
        return out

    # -- creating ------------------------------------------------------------------------------
    def create(
        self,
        name: str | None = None,
        driver: str = DRIVER,
        driver_opts: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> Volume:
        """Create a volume (an existing one of the same name is returned, as Docker does)."""
        with self._locked():
            return self._create(name, driver, driver_opts, labels)

    def _create(
        self,
        name: str | None,
        driver: str,
        driver_opts: dict[str, str] | None,
        labels: dict[str, str] | None,
    ) -> Volume:
        driver = driver or DRIVER
        if driver != DRIVER:
            raise InvalidArgument(f"volume driver {driver!r}: only the 'local' driver exists here")
        options = _check_options(dict(driver_opts or {}))
        labels = {str(k): str(v) for k, v in (labels or {}).items()}
        anonymous = name is None or name == ""
        if anonymous:
            name = secrets.token_hex(32)
            labels.setdefault(ANONYMOUS_LABEL, "")
        vdir = self._dir(name)
        if (vdir / "meta.json").exists():
            return self._load(name)
        tmp = self.root / f".new-{name}-{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o701)
        try:
            (tmp / "_data").mkdir(mode=0o755)
            (tmp / "users").mkdir(mode=0o700)
            meta = {
                "Name": name,
                "Driver": driver,
                "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "Labels": labels,
                "Options": options,
                "Anonymous": anonymous,
            }
            atomic_write_json(tmp / "meta.json", meta)
            os.rename(tmp, vdir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.events.emit("volume", "create", name, {"driver": driver})
        return self._load(name)

    # -- removing ------------------------------------------------------------------------------
    def remove(self, name: str, force: bool = False) -> None:
        """Remove a volume and its data; refused while a container uses it unless ``force``."""
        with self._locked():
            self._remove(name, force)

    def _remove(self, name: str, force: bool) -> None:
        vol = self._load(name)
        if vol.users and not force:
            raise Conflict(
                f"volume {name} is in use by container(s) {', '.join(u[:12] for u in vol.users)}"
            )
        vdir = self._dir(name)
        self._unmount_data(vol)
        # Rename first: the volume disappears atomically, then its data is deleted.
        trash = self.root / f".trash-{name}-{secrets.token_hex(4)}"
        os.rename(vdir, trash)
        shutil.rmtree(trash, ignore_errors=True)
        self.events.emit("volume", "destroy", name, {"driver": vol.driver})

    def prune(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Remove every volume no container uses (``label`` / ``label!`` filters apply)."""
        filters = _normalise_filters(filters)
        filters.pop("dangling", None)
        deleted, reclaimed = [], 0
        with self._locked():
            for vol in self.list():
                if vol.users or not _matches(vol, filters):
                    continue
                reclaimed += tree_size(vol.mountpoint) if not vol.options else 0
                self._remove(vol.name, force=False)
                deleted.append(vol.name)
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    # -- a container's mounts -------------------------------------------------------------------
    def prepare_mounts(
        self,
        container_id: str,
        mounts: Iterable[Any],
        image_volumes: dict[str, Any] | None = None,
        image_rootfs: list[Path] | None = None,
    ) -> list[dict[str, Any]]:
        """The OCI ``mounts`` entries for a container's volumes, binds and tmpfs mounts.

        Named volumes are created on demand; the image's ``VOLUME`` paths not
        covered by an explicit mount get anonymous volumes (the same ones again
        when the container restarts); an empty volume gets the image's files at
        its target first. Each volume used is marked as used by the container.
        On any error nothing stays marked and no anonymous volume made here is left.
        """
        _check_container_id(container_id)
        specs = [coerce(m) for m in mounts or []]
        by_target: dict[str, Any] = {}
        for spec in specs:
            target = check_target(spec.target)
            if target in by_target:
                raise InvalidArgument(f"duplicate mount point in the container: {target}")
            by_target[target] = spec
        layers = [Path(p) for p in image_rootfs or []]
        record_path = self.root / "_containers" / f"{container_id}.json"
        with self._locked():
            record = _read_json(record_path) or {"anonymous": {}}
            made: list[str] = []
            marked: list[str] = []
            entries: list[dict[str, Any]] = []
            try:
                for target in sorted(image_volumes or {}):
                    norm = check_target(target)
                    if norm in by_target:
                        continue
                    name = record["anonymous"].get(norm)
                    if not name or not (self.root / name / "meta.json").exists():
                        name = self._create(None, DRIVER, None, None).name
                        made.append(name)
                        record["anonymous"][norm] = name
                    by_target[norm] = coerce({"type": "volume", "source": name, "target": norm})
                for target, spec in sorted(by_target.items(), key=lambda kv: kv[0].count("/")):
                    if spec.type == "bind":
                        entries.append(bind_entry(spec))
                    elif spec.type == "tmpfs":
                        entries.append(tmpfs_entry(spec))
                    elif spec.type == "volume":
                        if not spec.source:
                            name = record["anonymous"].get(target)
                            if not name or not (self.root / name / "meta.json").exists():
                                name = self._create(None, DRIVER, None, None).name
                                made.append(name)
                                record["anonymous"][target] = name
                            spec.source = name
                        vol = self._create(spec.source, DRIVER, None, None)
                        self._mount_data(vol)
                        marker = vol.mountpoint.parent / "users" / container_id
                        marker.touch()
                        marked.append(vol.name)
                        if not spec.no_copy and layers:
                            copyup.copy_up(layers, target, vol.mountpoint, self.root / ".scratch")
                        entries.append(volume_entry(vol.mountpoint, spec))
                        self.events.emit(
                            "volume",
                            "mount",
                            vol.name,
                            {
                                "container": container_id,
                                "destination": target,
                                "driver": vol.driver,
                                "read/write": str(not spec.read_only).lower(),
                                "propagation": "rprivate",
                            },
                        )
                    else:
                        raise InvalidArgument(
                            f"mount {target}: type {spec.type!r} is not bind, volume or tmpfs"
                        )
                atomic_write_json(record_path, record)
            except BaseException:
                for name in marked:
                    with contextlib.suppress(OSError):
                        (self.root / name / "users" / container_id).unlink()
                for name in made:
                    with contextlib.suppress(EngineErrorTypes):
                        self._remove(name, force=False)
                raise
        return entries

    def reserve(self, container_id: str, mounts: Iterable[Any],
                image_volumes: dict[str, Any] | None = None) -> list[str]:
        """At ``docker create``, as Docker does it: the container's volumes exist and count
        as used by it from now on, started or not. Its named volumes, and an anonymous
        one for each ``VOLUME`` of its image (and each ``-v /path``) that no mount covers;
        its first start finds them here and copies the image's files into them, still
        empty. On any error nothing stays marked and no anonymous volume made here is
        left. Returns the names."""
        _check_container_id(container_id)
        specs = [coerce(m) for m in mounts or []]
        covered = {check_target(spec.target) for spec in specs}
        anonymous = [check_target(spec.target) for spec in specs
                     if spec.type == "volume" and not spec.source]
        anonymous += [t for t in (check_target(t) for t in sorted(image_volumes or {}))
                      if t not in covered]
        names = [spec.source for spec in specs if spec.type == "volume" and spec.source]
        record_path = self.root / "_containers" / f"{container_id}.json"
        marked: list[Path] = []
        made: list[str] = []
        with self._locked():
            record = _read_json(record_path) or {"anonymous": {}}
            try:
                volumes = [self._create(name, DRIVER, None, None) for name in names]
                for target in anonymous:
                    vol = self._create(None, DRIVER, None, None)
                    made.append(vol.name)
                    record["anonymous"][target] = vol.name
                    volumes.append(vol)
                for vol in volumes:
                    marker = vol.mountpoint.parent / "users" / container_id
                    marker.touch()
                    marked.append(marker)
                if made:
                    atomic_write_json(record_path, record)
            except BaseException:
                for marker in marked:
                    marker.unlink(missing_ok=True)
                for name in made:
                    with contextlib.suppress(Exception):
                        self._remove(name, force=True)
                raise
        return [*names, *made]

    def release(self, container_id: str, remove_anonymous: bool = False) -> list[str]:
        """The container no longer uses its volumes; with ``remove_anonymous`` (``rm -v``)
        its anonymous volumes go too. Returns the names of the volumes removed."""
        _check_container_id(container_id)
        removed = []
        record_path = self.root / "_containers" / f"{container_id}.json"
        with self._locked():
            for name in self._names():
                marker = self.root / name / "users" / container_id
                if not marker.exists():
                    continue
                marker.unlink()
                try:
                    vol = self._load(name)
                except NotFound:
                    continue
                self.events.emit("volume", "unmount", name, {"container": container_id})
                if not vol.users:
                    self._unmount_data(vol)
            if remove_anonymous:
                record = _read_json(record_path) or {"anonymous": {}}
                for name in record["anonymous"].values():
                    try:
                        vol = self._load(name)
                    except NotFound:
                        continue
                    if vol.anonymous and not vol.users:
                        self._remove(name, force=False)
                        removed.append(name)
                with contextlib.suppress(FileNotFoundError):
                    record_path.unlink()
        return removed

    def users(self, name: str) -> list[str]:
        return self._load(name).users

    def recover(self, live_container_ids: Iterable[str] | None = None) -> None:
        """After a crash or reboot: drop markers of containers that no longer run, finish
        interrupted creations and removals, unmount driver mounts nobody uses."""
        live = None if live_container_ids is None else set(live_container_ids)
        with self._locked():
            for entry in os.scandir(self.root):
                if entry.name.startswith((".new-", ".trash-")):
                    shutil.rmtree(entry.path, ignore_errors=True)
            scratch = self.root / ".scratch"
            if scratch.is_dir():
                points = mountpoints()
                for leftover in scratch.iterdir():
                    if str(leftover) in points:
                        subprocess.run(["umount", "-l", str(leftover)], capture_output=True)
                    with contextlib.suppress(OSError):
                        leftover.rmdir()
            for name in self._names():
                shutil.rmtree(self.root / name / ".copyup", ignore_errors=True)
                users_dir = self.root / name / "users"
                if live is not None and users_dir.is_dir():
                    for cid in os.listdir(users_dir):
                        if cid not in live:
                            (users_dir / cid).unlink()
                try:
                    vol = self._load(name)
                except (NotFound, RuntimeFailure):
                    continue
                if not vol.users:
                    self._unmount_data(vol)

    # -- driver options: a volume that is a mount of its own --------------------------------------
    def _mount_data(self, vol: Volume) -> None:
        if not vol.options or str(vol.mountpoint) in mountpoints():
            return
        opts = vol.options
        cmd = ["mount", "-t", opts.get("type", "none")]
        if opts.get("o"):
            cmd += ["-o", opts["o"]]
        cmd += [opts.get("device", "none"), str(vol.mountpoint)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeFailure(
                f"volume {vol.name}: mount of {opts.get('device')} failed: {result.stderr.strip()}"
            )

    def _unmount_data(self, vol: Volume) -> None:
        if vol.options and str(vol.mountpoint) in mountpoints():
            subprocess.run(["umount", "-l", str(vol.mountpoint)], capture_output=True)


EngineErrorTypes = (NotFound, Conflict, RuntimeFailure, OSError)


def _check_container_id(container_id: str) -> None:
    if not container_id or "/" in container_id or container_id.startswith("."):
        raise InvalidArgument(f"container id {container_id!r} is not a valid id")


def _check_options(options: dict[str, str]) -> dict[str, str]:
    unknown = set(options) - DRIVER_OPTIONS
    if unknown:
        raise InvalidArgument(
            f"volume driver options {sorted(unknown)}: the local driver knows only type, device, o"
        )
    options = {k: str(v) for k, v in options.items()}
    if options and ("type" not in options or "device" not in options):
        raise InvalidArgument("volume driver options: 'type' and 'device' go together")
    if options.get("type") == "none" or "bind" in options.get("o", "").split(","):
        device = options.get("device", "")
        if not device.startswith("/") or not os.path.isdir(device):
            raise NotFound(f"volume bind device does not exist or is not a directory: {device}")
    return options


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _normalise_filters(filters: dict[str, Any] | None) -> dict[str, list[str]]:
    """Docker sends ``{"label": ["a=b"]}`` or ``{"label": {"a=b": true}}``; accept both."""
    out: dict[str, list[str]] = {}
    for key, value in (filters or {}).items():
        if isinstance(value, dict):
            values = [k for k, v in value.items() if v]
        elif isinstance(value, (list, tuple, set)):
            values = [str(v) for v in value]
        else:
            values = [str(value)]
        if key not in {"dangling", "name", "label", "label!", "driver"}:
            raise InvalidArgument(
                f"volume filter {key!r} is not one of dangling, name, label, driver"
            )
        out[key] = values
    return out


def _label_match(labels: dict[str, str], expr: str) -> bool:
    key, sep, value = expr.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _matches(vol: Volume, filters: dict[str, list[str]]) -> bool:
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"volume filter dangling={value!r}: use true or false")
        want_dangling = value.lower() in ("true", "1")
        if want_dangling != (not vol.users):
            return False
    if filters.get("name") and not any(n in vol.name for n in filters["name"]):
        return False
    if filters.get("driver") and vol.driver not in filters["driver"]:
        return False
    if not all(_label_match(vol.labels, e) for e in filters.get("label", [])):
        return False
    return not any(_label_match(vol.labels, e) for e in filters.get("label!", []))
