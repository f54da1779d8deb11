"""``docker diff``: what a container changed, read from its overlay upper dir.

A container's root is an overlayfs mount: the image's layers are read-only
*lower* dirs and every write lands in the container's own *upper* dir. So the
upper dir alone says what changed, in overlay's own vocabulary:

* an ordinary entry is a file the container created or copied up to edit it —
  *changed* (Kind 0) if the lower layers show that path, else *added* (Kind 1);
* a 0/0 character device is a *whiteout*: the path was deleted (Kind 2);
* a directory with the xattr ``trusted.overlay.opaque=y`` hides everything the
  lower layers have under it (it was removed and made again): the lower
  entries it hides are deleted, what it holds now is added.

Docker also lists the parent directory of every added or deleted path as
changed, even when its own metadata is equal; we do the same, and skip a
copied-up directory with no change below it whose mode, owner and mtime equal
the lower one's (Docker's ``sameFsTime`` rule). Kinds are Docker's numbers
(``0`` modified, ``1`` added, ``2`` deleted). Lower dirs are looked at without
following any symlink, so an image cannot make us stat host files.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.errors import NotFound

MODIFIED, ADDED, DELETED = 0, 1, 2
OPAQUE_XATTR = "trusted.overlay.opaque"


def is_whiteout(st: os.stat_result) -> bool:
    """Overlay marks a deleted path with a character device numbered 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str | Path) -> bool:
    """True for a directory overlay made opaque (its lower contents are hidden)."""
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _stack(rel: str, lowers_top_first: list[Path]) -> Iterator[tuple[str, os.stat_result]]:
    """Each layer that shows ``rel`` in the merged lower view, top first: (host path, lstat).

    Walks every layer component by component with ``lstat`` (never following a
    link). A whiteout of the path or of a parent, or a non-directory parent,
    hides everything below; an opaque directory hides the layers under it.
    """
    parts = [p for p in rel.strip("/").split("/") if p]
    if not parts:
        return
    for layer in lowers_top_first:
        current = str(layer)
        present: os.stat_result | None = None
        opaque_parent = False
        for i, part in enumerate(parts):
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except (FileNotFoundError, NotADirectoryError):
                break  # this layer says nothing about rel
            if is_whiteout(st):
                return
            if i == len(parts) - 1:
                present = st
                break
            if not stat.S_ISDIR(st.st_mode):
                return  # a file (or link) at a parent shadows the rest of the path
            if is_opaque(current):
                opaque_parent = True
        if present is not None:
            yield current, present
            if not stat.S_ISDIR(present.st_mode) or is_opaque(current):
                return
        if opaque_parent:
            return


def lower_lookup(rel: str, lowers_top_first: list[Path]) -> os.stat_result | None:
    """The lstat of ``rel`` as the lower layers merged show it, or None if they lack it."""
    for _, st in _stack(rel, lowers_top_first):
        return st
    return None


def _lower_children(rel: str, lowers_top_first: list[Path]) -> set[str]:
    """Names the lower layers show inside directory ``rel`` (merged, whiteouts applied)."""
    names: set[str] = set()
    hidden: set[str] = set()
    for directory, st in _stack(rel, lowers_top_first):
        if not stat.S_ISDIR(st.st_mode):
            break
        for entry in os.scandir(directory):
            if entry.name in names or entry.name in hidden:
                continue
            (hidden if is_whiteout(entry.stat(follow_symlinks=False)) else names).add(entry.name)
    return names


def changes(
    upper_dir: str | Path,
    lower_dirs: Iterable[str | Path],
    ignore: Iterable[str] = (),
) -> list[dict]:
    """Docker's ``[{"Path": "/etc/passwd", "Kind": 0}, ...]`` for one container, sorted by path.

    ``lower_dirs`` are the image's unpacked layers BASE FIRST (as
    ``Image.layer_dirs()`` gives them). ``ignore`` lists absolute paths
    (and everything below them) the engine itself made in the upper dir, such
    as mount points for ``/etc/hosts``, which are not the container's changes.
    """
    upper = Path(upper_dir)
    if not upper.is_dir():
        raise NotFound(f"upper dir {upper} of the container does not exist")
    lowers = [Path(p) for p in lower_dirs][::-1]
    skip = {"/" + p.strip("/") for p in ignore}
    found: dict[str, int] = {}

    def ignored(path: str) -> bool:
        return any(path == s or path.startswith(s + "/") for s in skip)

    def add_parents(path: str) -> None:
        parent = os.path.dirname(path)
        while parent != "/" and parent not in found:
            found[parent] = MODIFIED if lower_lookup(parent, lowers) is not None else ADDED
            parent = os.path.dirname(parent)

    def walk(directory: Path, rel: str) -> bool:
        """Record changes under ``directory``; True if anything was recorded."""
        recorded = False
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return False
        for entry in entries:
            path = f"{rel}/{entry.name}"
            if ignored(path):
                continue
            st = entry.stat(follow_symlinks=False)
            if is_whiteout(st):
                if lower_lookup(path, lowers) is not None:
                    found[path] = DELETED
                    add_parents(path)
                    recorded = True
                continue
            below = lower_lookup(path, lowers)
            if stat.S_ISDIR(st.st_mode):
                opaque = is_opaque(entry.path)
                if opaque and below is not None and stat.S_ISDIR(below.st_mode):
                    present = {e.name for e in os.scandir(entry.path)}
                    for name in sorted(_lower_children(path, lowers) - present):
                        found[f"{path}/{name}"] = DELETED
                        recorded = True
                    # What the opaque dir holds now hides the lowers: all of it is new.
                    inner = walk_all_added(Path(entry.path), path)
                else:
                    inner = walk(Path(entry.path), path)
                if below is None:
                    found[path] = ADDED
                    recorded = True
                elif inner or opaque or not _same_dir(st, below):
                    found[path] = MODIFIED
                    recorded = True
                if inner:
                    recorded = True
                continue
            found[path] = MODIFIED if below is not None else ADDED
            add_parents(path)
            recorded = True
        return recorded

    def walk_all_added(directory: Path, rel: str) -> bool:
        recorded = False
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = f"{rel}/{entry.name}"
            if ignored(path) or is_whiteout(entry.stat(follow_symlinks=False)):
                continue
            found[path] = ADDED
            recorded = True
            if entry.is_dir(follow_symlinks=False):
                walk_all_added(Path(entry.path), path)
        return recorded

    walk(upper, "")
    return [{"Path": path, "Kind": kind} for path, kind in sorted(found.items())]


def _same_dir(upper: os.stat_result, lower: os.stat_result) -> bool:
    """Docker skips a copied-up directory whose metadata did not change."""
    return (
        stat.S_ISDIR(lower.st_mode)
        and upper.st_mode == lower.st_mode
        and upper.st_uid == lower.st_uid
        and upper.st_gid == lower.st_gid
        and int(upper.st_mtime) == int(lower.st_mtime)
    )
