"""``RUN --mount=...``: what a build step may see besides its image.

The reference frontend's mount types, mapped onto the container runtime's
mounts for the step's one container:

* ``bind`` (the default type): a path of the build context, or of another
  stage or image with ``from=``, read-only unless ``rw`` -- and a ``rw`` bind
  gets a private copy, so the step can never write into the context;
* ``cache``: a directory that outlives the build (``id=`` or the target
  names it), for package caches; never part of a layer;
* ``tmpfs``: an empty memory filesystem (``size=`` in bytes).

``secret`` and ``ssh`` need a client session that estiba does not have; they
are refused with a clear error rather than silently ignored.
"""

from __future__ import annotations

import csv
import hashlib
import os
import posixpath
import re
from dataclasses import dataclass

from engine.errors import BuildError

_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_KEYS = {"type", "target", "dst", "destination", "source", "src", "from", "id", "ro",
         "readonly", "rw", "readwrite", "mode", "uid", "gid", "sharing", "size", "required"}


@dataclass
class RunMount:
    type: str
    target: str
    source: str = ""
    from_: str = ""
    id: str = ""
    read_only: bool = True
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None

    def cache_dir_name(self) -> str:
        key = self.id or self.target
        return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _bool(value: str | None, key: str) -> bool:
    if value is None or value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BuildError(f"--mount: invalid value {value!r} for {key}")


def _int(value: str | None, key: str, base: int = 10) -> int:
    try:
        return int(value or "", base)
    except ValueError:
        raise BuildError(f"--mount: invalid value {value!r} for {key}") from None


def parse_mount(text: str, workdir: str) -> RunMount:
    """One ``--mount`` value (CSV of ``key=value``) as a :class:`RunMount`."""
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise BuildError(f"--mount: cannot parse {text!r}") from None
    values: dict[str, str | None] = {}
    for f in fields:
        key, eq, value = f.partition("=")
        key = key.strip().lower()
        if key not in _KEYS:
            raise BuildError(f"--mount: unexpected key {key!r} in {text!r}")
        values[key] = value if eq else None
    mtype = (values.get("type") or "bind").lower()
    if mtype not in _TYPES:
        raise BuildError(f"--mount: unsupported mount type {mtype!r}")
    if mtype in ("secret", "ssh"):
        raise BuildError(f"--mount=type={mtype} needs a client session, which estiba builds "
                         "do not have")
    target = values.get("target") or values.get("dst") or values.get("destination") or ""
    if not target:
        raise BuildError(f"--mount: a target is required in {text!r}")
    if not target.startswith("/"):
        target = posixpath.join(workdir or "/", target)
    m = RunMount(type=mtype, target=posixpath.normpath(target),
                 source=values.get("source") or values.get("src") or "",
                 from_=values.get("from") or "", id=values.get("id") or "")
    if "rw" in values or "readwrite" in values:
        m.read_only = not _bool(values.get("rw", values.get("readwrite")), "rw")
    elif "ro" in values or "readonly" in values:
        m.read_only = _bool(values.get("ro", values.get("readonly")), "ro")
    else:
        m.read_only = mtype == "bind"
    if values.get("mode") is not None:
        m.mode = _int(values["mode"], "mode", 8)
    if values.get("uid") is not None:
        m.uid = _int(values["uid"], "uid")
    if values.get("gid") is not None:
        m.gid = _int(values["gid"], "gid")
    if values.get("size") is not None:
        size = values["size"] or ""
        mult = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}.get(size[-1:].lower(), 1)
        m.size = _int(re.sub(r"[kKmMgG]$", "", size), "size") * mult
    if mtype == "cache" and m.source and m.from_ == "":
        m.source = ""  # a cache's source only matters with from=, which we do not support
    if mtype == "cache" and m.from_:
        raise BuildError("--mount=type=cache,from=... is not supported")
    return m


def prepare_cache_dir(root: str, m: RunMount) -> str:
    """The persistent directory behind a cache mount (made on first use)."""
    path = os.path.join(root, m.cache_dir_name())
    if not os.path.isdir(path):
        os.makedirs(path, mode=m.mode if m.mode is not None else 0o755, exist_ok=True)
        os.chown(path, m.uid or 0, m.gid or 0)
    return path
