"""The union filesystem: which layer gives each file of a container's root.

A container's root is an overlay mount: read-only *lower* dirs (the image's
layers, listed top first in ``lowerdir=``), one writable *upper* dir and a
*work* dir, merged into one tree. For each name the topmost layer that has it
wins, with three special cases that this module follows as the kernel does:
a directory present in several layers is merged; a *whiteout* (a 0/0
character device) hides the name in every layer below; a directory marked
*opaque* (xattr ``trusted.overlay.opaque=y``) hides what is below it.
A file changed in a running container is first *copied up* into the upper dir,
so a name present in both the upper dir and a lower one is a copy-up.
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.errors import InvalidArgument, NotFound
from engine.introspect.mounts import root_mount

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


@dataclass
class OverlayStack:
    lower_dirs: list[str]  # top first, as in lowerdir=
    upper_dir: str | None
    work_dir: str | None
    options: dict[str, str] = field(default_factory=dict)

    def layers_top_first(self) -> list[tuple[str, str]]:
        """(role, path) from the upper dir down to the base layer."""
        out = [("upper", self.upper_dir)] if self.upper_dir else []
        n = len(self.lower_dirs)
        out += [(f"lower {n - i}", p) for i, p in enumerate(self.lower_dirs)]
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "layers": [list(x) for x in self.layers_top_first()]}


def split_options(text: str) -> dict[str, str]:
    """Overlay super options; ``\\,`` and ``\\:`` escapes kept for the caller to split."""
    opts: dict[str, str] = {}
    current, i = [], 0
    parts = []
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    for part in parts:
        if part:
            key, _, value = part.partition("=")
            opts[key] = value
    return opts


def split_lowerdir(value: str) -> list[str]:
    dirs, current, i = [], [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            current.append(value[i + 1])
            i += 2
            continue
        if value[i] == ":":
            dirs.append("".join(current))
            current = []
        else:
            current.append(value[i])
        i += 1
    dirs.append("".join(current))
    return [d for d in dirs if d]


def parse_overlay_options(super_options: str) -> OverlayStack:
    opts = split_options(super_options)
    if "lowerdir" not in opts:
        raise InvalidArgument(f"overlay options without lowerdir=: {super_options!r}")
    return OverlayStack(
        lower_dirs=split_lowerdir(opts["lowerdir"]),
        upper_dir=split_lowerdir(opts["upperdir"])[0] if opts.get("upperdir") else None,
        work_dir=split_lowerdir(opts["workdir"])[0] if opts.get("workdir") else None,
        options=opts,
    )


def overlay_of(pid: int) -> OverlayStack:
    """The overlay stack under ``pid``'s root, read from its mountinfo."""
    mount = root_mount(pid)
    if mount.fstype != "overlay":
        raise NotFound(f"process {pid}: its root is {mount.fstype}, not an overlay")
    return parse_overlay_options(mount.super_options)


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _kind(st: os.stat_result) -> str:
    if is_whiteout(st):
        return "whiteout"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "other"


@dataclass
class MergedEntry:
    path: str  # "/etc/passwd"
    kind: str  # file dir symlink other whiteout
    layer: int  # index in layers_top_first(): 0 is the upper dir when there is one
    size: int
    also_below: bool  # the name exists in a lower layer too (copy-up / override / deletion)

    def to_dict(self) -> dict:
        return asdict(self)


def merged_view(layers_top_first: list[str], limit: int = 20000) -> list[MergedEntry]:
    """Walk the layers as overlayfs merges them; whiteouts listed where they sit.

    Entries come in path order; at most ``limit`` (a Debian image has ~20,000).
    """
    out: list[MergedEntry] = []
    roots = [Path(p) for p in layers_top_first]

    def walk(rel: str, contributors: list[int]) -> None:
        names: list[str] = []
        seen: set[str] = set()
        for idx in contributors:
            try:
                for name in os.listdir(roots[idx] / rel if rel else roots[idx]):
                    if name not in seen:
                        seen.add(name)
                        names.append(name)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
        for name in sorted(names):
            if len(out) >= limit:
                return
            sub = f"{rel}/{name}" if rel else name
            top: tuple[int, os.stat_result] | None = None
            dirs: list[int] = []
            below = False
            for idx in contributors:
                try:
                    st = os.lstat(roots[idx] / sub)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if top is None:
                    top = (idx, st)
                    if stat.S_ISDIR(st.st_mode):
                        dirs.append(idx)
                        if is_opaque(str(roots[idx] / sub)):
                            break
                        continue
                    # a file or a whiteout: does anything below have the name?
                    below = any(os.path.lexists(roots[j] / sub) for j in contributors if j > idx)
                    break
                below = True
                if not stat.S_ISDIR(st.st_mode) or not stat.S_ISDIR(top[1].st_mode):
                    break
                dirs.append(idx)
                if is_opaque(str(roots[idx] / sub)):
                    break
            if top is None:
                continue
            idx, st = top
            kind = _kind(st)
            out.append(
                MergedEntry(
                    path="/" + sub,
                    kind=kind,
                    layer=idx,
                    size=st.st_size if kind == "file" else 0,
                    also_below=below,
                )
            )
            if kind == "dir":
                walk(sub, dirs)

    walk("", list(range(len(roots))))
    return out


def provider_of(layers_top_first: list[str], path: str) -> int | None:
    """Index of the layer that gives ``path`` in the merged view (None: absent or whited out)."""
    rel = path.strip("/")
    if not rel or ".." in rel.split("/"):
        raise InvalidArgument(f"not a path inside the image: {path!r}")
    parts = rel.split("/")
    for idx, root in enumerate(layers_top_first):
        # a whiteout or opaque dir on the way hides everything below this layer
        hidden = False
        for depth in range(1, len(parts) + 1):
            p = os.path.join(root, *parts[:depth])
            try:
                st = os.lstat(p)
            except (FileNotFoundError, NotADirectoryError):
                break
            if is_whiteout(st):
                return None
            if depth == len(parts):
                return idx
            if not stat.S_ISDIR(st.st_mode):
                return None  # a non-directory here covers the name in every layer below
            if stat.S_ISDIR(st.st_mode) and is_opaque(p):
                hidden = True
        if hidden:
            return None
    return None
