"""``.dockerignore``: which files of the build context the builder never sees.

The semantics are those of the reference (moby/patternmatcher and its
``ignorefile`` reader): one pattern a line, ``#`` comments, patterns cleaned
like paths (a leading ``/`` or ``./`` dropped), ``*`` and ``?`` never cross a
``/``, ``**`` crosses any number of directories, ``[...]`` classes, ``\\``
escapes, and ``!pattern`` re-includes what an earlier line excluded. The
*last* matching line wins, and a path is excluded when the path itself or
any of its parent directories is -- which is why ``!`` cannot re-include a
file below an excluded directory unless the directory is walked anyway
(:meth:`PatternMatcher.needs_walk`).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from engine.errors import BuildError

_EXACT, _PREFIX, _SUFFIX, _REGEXP = "exact", "prefix", "suffix", "regexp"
_ESCAPE = set(".+()|{}$")


def read_patterns(data: bytes | str, source: str = ".dockerignore") -> list[str]:
    """The reference's ``ignorefile.ReadAll``: lines -> cleaned patterns."""
    if isinstance(data, bytes):
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        data = data.decode("utf-8", "surrogateescape")
    out: list[str] = []
    for raw in data.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern.lstrip("/") or "/"
        out.append("!" + pattern if invert else pattern)
    return out


def _clean(p: str) -> str:
    """Go's ``filepath.Clean`` (``normpath`` keeps a leading ``//``; Clean does not)."""
    cleaned = posixpath.normpath(p)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


@dataclass
class _Pattern:
    cleaned: str
    exclusion: bool
    kind: str = ""
    regexp: re.Pattern | None = None

    def compile(self) -> None:
        out = "^"
        kind = _EXACT
        p = self.cleaned
        i = 0
        n = len(p)
        first = True
        while i < n:
            ch = p[i]
            i += 1
            if ch == "*":
                if i < n and p[i] == "*":
                    i += 1
                    if i < n and p[i] == "/":
                        i += 1
                    if i >= n:
                        if kind == _EXACT:
                            kind = _PREFIX
                        else:
                            out += ".*"
                            kind = _REGEXP
                    else:
                        out += "(.*/)?"
                        kind = _REGEXP
                    if first:
                        kind = _SUFFIX
                else:
                    out += "[^/]*"
                    kind = _REGEXP
            elif ch == "?":
                out += "[^/]"
                kind = _REGEXP
            elif ch in _ESCAPE:
                out += "\\" + ch
            elif ch == "\\":
                if i < n:
                    out += "\\" + p[i]
                    i += 1
                    kind = _REGEXP
                else:
                    out += "\\\\"
            elif ch in "[]":
                out += ch
                kind = _REGEXP
            else:
                out += ch  # raw, as the reference writes it into its regexp
            first = False
        if kind != _REGEXP:
            self.kind = kind
            return
        try:
            self.regexp = re.compile(out + r"\Z")
        except re.error as exc:
            raise BuildError(f".dockerignore: bad pattern {self.cleaned!r}: {exc}") from None
        self.kind = _REGEXP

    def match(self, path: str) -> bool:
        if not self.kind:
            self.compile()
        if self.kind == _EXACT:
            return path == self.cleaned
        if self.kind == _PREFIX:
            return path.startswith(self.cleaned[:-2])
        if self.kind == _SUFFIX:
            suffix = self.cleaned[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regexp is not None
        return self.regexp.match(path) is not None


def _validate(pattern: str) -> None:
    """Refuse what Go's ``filepath.Match`` calls ErrBadPattern."""
    bad = BuildError(f".dockerignore: syntax error in pattern {pattern!r}")
    i, n = 0, len(pattern)

    def esc(j: int) -> int:
        if j >= n or pattern[j] in "-]":
            raise bad
        if pattern[j] == "\\":
            j += 1
            if j >= n:
                raise bad
        return j + 1

    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise bad
            i += 2
            continue
        if ch == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            nrange = 0
            while True:
                if i < n and pattern[i] == "]" and nrange > 0:
                    i += 1
                    break
                i = esc(i)
                if i < n and pattern[i] == "-":
                    i = esc(i + 1)
                nrange += 1
            continue
        i += 1


class PatternMatcher:
    """A list of patterns, last match wins (``patternmatcher.PatternMatcher``)."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            exclusion = False
            if p[0] == "!":
                if len(p) == 1:
                    raise BuildError('.dockerignore: illegal exclusion pattern: "!"')
                exclusion = True
                p = p[1:]
            _validate(p)
            pat = _Pattern(cleaned=_clean(p), exclusion=exclusion)
            pat.compile()
            self.patterns.append(pat)

    @property
    def exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def matches_or_parent_matches(self, path: str) -> bool:
        """True when ``path`` (relative, ``/``-separated) is excluded."""
        matched = False
        parent = posixpath.dirname(path) or "."
        parent_dirs = parent.split("/")
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent != ".":
                for i in range(len(parent_dirs)):
                    if pattern.match("/".join(parent_dirs[: i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def needs_walk(self, directory: str) -> bool:
        """Must an excluded directory still be walked (an ``!`` may re-include below it)?"""
        if not self.exclusions:
            return False
        prefix = directory.rstrip("/") + "/"
        for p in self.patterns:
            if not p.exclusion:
                continue
            c = p.cleaned
            if c.startswith(prefix) or any(ch in c for ch in "*?[\\"):
                return True
        return False


def load(context_dir, dockerfile: str = "Dockerfile") -> PatternMatcher:
    """The context's matcher: ``<Dockerfile>.dockerignore`` first, else ``.dockerignore``."""
    from pathlib import Path

    root = Path(context_dir)
    for name in (dockerfile + ".dockerignore", ".dockerignore"):
        candidate = root / name
        if candidate.is_file() and not candidate.is_symlink():
            return PatternMatcher(read_patterns(candidate.read_bytes()))
    return PatternMatcher([])
