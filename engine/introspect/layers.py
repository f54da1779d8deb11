"""Image layers in the spirit of dive: what each layer adds, changes, removes.

An image is a stack of layers, each the filesystem diff one build instruction
made (the image config's ``history`` says which: entries marked
``empty_layer`` made no layer, the others match the layers in order, base
first). Replaying the diffs from the base up, a path in a layer is *added* if
no layer below gives it, *changed* if one does, and *removed* if the layer
holds a whiteout for it. A file that a later layer changes or removes still
takes its bytes in the layer below: that is *wasted space*, and the image's
*efficiency* is the share of all layer bytes still visible at the top.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InvalidArgument
from engine.introspect.overlay import is_opaque, is_whiteout

MAX_ENTRIES_PER_LAYER = 5000


@dataclass
class _Version:
    layer: int
    size: int
    is_dir: bool


@dataclass
class LayerReport:
    index: int
    created_by: str
    size: int
    digest: str = ""
    entries: list[dict] = field(default_factory=list)
    truncated: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"added": 0, "changed": 0, "removed": 0})

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _walk(root: Path):
    """(relative path, lstat) for every entry of a layer dir, parents first."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            yield rel, os.lstat(os.path.join(dirpath, name))


def layer_history(history: list[dict], n_layers: int) -> list[str]:
    """The instruction that made each layer (base first)."""
    made = [h for h in history if not h.get("empty_layer")]
    out = [(h.get("created_by") or h.get("comment") or "").strip() for h in made]
    if len(out) != n_layers:  # history missing or inconsistent: say so, don't guess
        return [out[i] if i < len(out) and len(out) == n_layers else "" for i in range(n_layers)]
    return out


def analyze_layers(
    layer_dirs: list[str | Path],
    history: list[dict] | None = None,
    digests: list[str] | None = None,
) -> dict:
    """The dive-like report of a stack of unpacked layer dirs, base first."""
    if not layer_dirs:
        raise InvalidArgument("an image with no layers has nothing to analyze")
    made_by = layer_history(history or [], len(layer_dirs))
    merged: dict[str, _Version] = {}
    bytes_by_path: dict[str, list[int]] = {}
    total = 0
    reports: list[LayerReport] = []
    for idx, ldir in enumerate(layer_dirs):
        root = Path(ldir)
        if not root.is_dir():
            raise InvalidArgument(f"layer {idx}: no unpacked directory at {root}")
        digest = digests[idx] if digests and idx < len(digests) else ""
        rep = LayerReport(index=idx, created_by=made_by[idx], size=0, digest=digest)
        for rel, st in _walk(root):
            path = "/" + rel
            if is_whiteout(st):
                gone = [p for p in merged if p == path or p.startswith(path + "/")]
                for p in gone:
                    del merged[p]
                status, kind, size = "removed", "whiteout", 0
            else:
                is_dir = stat.S_ISDIR(st.st_mode)
                size = st.st_size if stat.S_ISREG(st.st_mode) else 0
                kind = "dir" if is_dir else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
                below = merged.get(path)
                if is_dir and below is not None and below.is_dir:
                    if not is_opaque(str(root / rel)):
                        continue  # a directory that only holds changes: not a change itself
                    for p in [p for p in merged if p.startswith(path + "/")]:
                        del merged[p]
                status = "changed" if below is not None else "added"
                if below is not None and below.is_dir and not is_dir:
                    for p in [p for p in merged if p.startswith(path + "/")]:
                        del merged[p]
                merged[path] = _Version(idx, size, is_dir)
                if size:
                    bytes_by_path.setdefault(path, []).append(size)
                rep.size += size
            rep.counts[status] += 1
            if len(rep.entries) < MAX_ENTRIES_PER_LAYER:
                rep.entries.append({"path": path, "kind": kind, "size": size, "status": status})
            else:
                rep.truncated = True
        total += rep.size
        reports.append(rep)
    visible = sum(v.size for v in merged.values())
    wasted_paths = sorted(
        (
            {
                "path": p,
                "versions": len(sizes),
                "bytes": sum(sizes) - (merged[p].size if p in merged else 0),
            }
            for p, sizes in bytes_by_path.items()
            if len(sizes) > 1 or p not in merged
        ),
        key=lambda w: -w["bytes"],
    )
    return {
        "layers": [r.to_dict() for r in reports],
        "total_bytes": total,
        "visible_bytes": visible,
        "wasted_bytes": total - visible,
        "efficiency": round(visible / total, 4) if total else 1.0,
        "efficiency_percent": round(100 * visible / total, 2) if total else 100.0,
        "wasted_paths": wasted_paths[:100],
        "files": len(merged),
    }


def layer_providing(layer_dirs: list[str | Path], path: str) -> int | None:
    """Index (base first) of the layer that gives ``path`` at the top of the stack."""
    from engine.introspect.overlay import provider_of

    top_first = [str(p) for p in reversed(layer_dirs)]
    idx = provider_of(top_first, path)
    return None if idx is None else len(layer_dirs) - 1 - idx


def analyze_image(image) -> dict:
    """``analyze_layers`` for an ``engine.images`` Image (its layer dirs and history)."""
    report = analyze_layers(
        image.layer_dirs(),
        image.config.get("history", []),
        [layer.digest for layer in image.layers],
    )
    report["image"] = {"id": image.id, "tags": list(image.repo_tags)}
    return report
