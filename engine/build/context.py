"""The build context: the files a Dockerfile may COPY/ADD, minus ``.dockerignore``.

A context is a directory, or a tar stream (what ``docker build`` uploads
and the Engine API's ``POST /build`` receives). A tar stream is hostile input,
so it is unpacked here with rules of its own -- every name cleaned, no ``..``,
no entry written through a symlink (each parent opened with ``O_NOFOLLOW``),
hardlinks only to regular files already unpacked, no device nodes -- into a
private temporary directory that :meth:`BuildContext.close` removes.

Paths named by COPY/ADD are resolved *inside* the context: a symlink in it is
followed, but never out of it, exactly as the reference scopes its copies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from engine.build.dockerignore import PatternMatcher, read_patterns
from engine.errors import BuildError
from engine.runtime.rootfs import resolve_in_root

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40


def clean_parts(name: str, what: str) -> list[str]:
    """A tar member name as path components; ``..`` anywhere refuses the stream."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BuildError(f"{what}: entry {name!r} escapes the context ('..')")
    return parts


def _open_parent(root_fd: int, parts: list[str], what: str, name: str,
                 create: bool = True) -> int:
    """Open (creating) the parent directories of an entry, never through a symlink."""
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise BuildError(f"{what}: hardlink {name!r} must point to a regular "
                                     "file already in the archive") from None
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise BuildError(f"{what}: entry {name!r} goes through a symlink or a "
                                 f"non-directory ({exc.strerror})") from None
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _remove_entry(dfd: int, base: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        st = os.stat(base, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise BuildError(f"cannot replace directory {base!r} with a non-directory")
        os.unlink(base, dir_fd=dfd)


def extract_tar(stream: BinaryIO, dest: Path, what: str = "build context") -> None:
    """Unpack a (possibly compressed) tar stream into the empty directory ``dest``."""
    root_fd = os.open(dest, _DIR_FLAGS)
    name = "<header>"
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for m in tar:
                name = m.name
                parts = clean_parts(m.name, what)
                if not parts:
                    continue
                base = parts[-1]
                if m.isdev():
                    raise BuildError(f"{what}: entry {m.name!r} is a device node")
                dfd = _open_parent(root_fd, parts, what, m.name)
                try:
                    mode = m.mode & 0o7777
                    if m.isdir():
                        try:
                            os.mkdir(base, 0o755, dir_fd=dfd)
                        except FileExistsError:
                            st = os.stat(base, dir_fd=dfd, follow_symlinks=False)
                            if not stat.S_ISDIR(st.st_mode):
                                raise BuildError(f"{what}: entry {m.name!r} is both a "
                                                 "directory and a file") from None
                        fd = os.open(base, _DIR_FLAGS, dir_fd=dfd)
                        try:
                            os.chmod(fd, mode)
                        finally:
                            os.close(fd)
                    elif m.issym():
                        _remove_entry(dfd, base)
                        os.symlink(m.linkname, base, dir_fd=dfd)
                    elif m.islnk():
                        target = clean_parts(m.linkname, what)
                        if not target:
                            raise BuildError(f"{what}: hardlink {m.name!r} has no target")
                        tdfd = _open_parent(root_fd, target, what, m.name, create=False)
                        try:
                            try:
                                st = os.stat(target[-1], dir_fd=tdfd, follow_symlinks=False)
                            except FileNotFoundError:
                                st = None
                            if st is None or not stat.S_ISREG(st.st_mode):
                                raise BuildError(f"{what}: hardlink {m.name!r} must point to a "
                                                 "regular file already in the archive")
                            _remove_entry(dfd, base)
                            os.link(target[-1], base, src_dir_fd=tdfd, dst_dir_fd=dfd,
                                    follow_symlinks=False)
                        finally:
                            os.close(tdfd)
                    elif m.isfile():
                        _remove_entry(dfd, base)
                        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o600, dir_fd=dfd)
                        with os.fdopen(fd, "wb") as out:
                            src = tar.extractfile(m)
                            if src is not None:
                                shutil.copyfileobj(src, out, 1 << 20)
                            os.chmod(out.fileno(), mode)
                            os.utime(out.fileno(), (m.mtime, m.mtime))
                    elif m.isfifo():
                        _remove_entry(dfd, base)
                        os.mkfifo(base, mode, dir_fd=dfd)
                    else:
                        raise BuildError(f"{what}: entry {m.name!r} has an unsupported type")
                finally:
                    os.close(dfd)
    except BuildError:
        raise
    except (tarfile.TarError, EOFError, ValueError, OSError) as exc:
        raise BuildError(f"{what}: cannot unpack near entry {name!r}: {exc}") from None
    finally:
        os.close(root_fd)


def resolve_in(root: Path, path: str, follow_last: bool = True) -> Path | None:
    """``path`` as seen with ``root`` as ``/`` (symlinks followed inside it), or None."""
    return resolve_in_root(root, path, MAX_LINKS, follow_last=follow_last, loop_error=BuildError(
        f"too many levels of symbolic links resolving {path}"))


def _go_match_regex(pattern: str) -> re.Pattern:
    """One path component of Go's ``filepath.Match`` as a regex."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i < n:
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise BuildError(f"syntax error in pattern {pattern!r}")
            body = pattern[i:j]
            if body.startswith("^"):
                body = "^" + body[1:].replace("\\", "\\\\")
            else:
                body = body.replace("\\", "\\\\").replace("^", "\\^")
            out.append("[" + body + "]")
            i = j + 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z")


def glob_in(root: Path, pattern: str, excluded=lambda rel: False) -> list[tuple[str, Path]]:
    """Entries of ``root`` matching a ``filepath.Match`` pattern, component by component."""
    comps = [c for c in pattern.split("/") if c not in ("", ".")]
    if not comps:
        return [("", root)]
    regexes = [_go_match_regex(c) for c in comps]
    out: list[tuple[str, Path]] = []

    def walk(prefix: list[str], depth: int) -> None:
        base = resolve_in(root, "/".join(prefix)) if prefix else root
        if base is None or not base.is_dir():
            return
        for name in sorted(os.listdir(base)):
            if not regexes[depth].match(name):
                continue
            rel = "/".join([*prefix, name])
            if depth + 1 == len(comps):
                if not excluded(rel):
                    out.append((rel, base / name))
            else:
                walk([*prefix, name], depth + 1)

    walk([], 0)
    return out


def has_wildcards(path: str) -> bool:
    return any(c in path for c in "*?[")


class BuildContext:
    """A directory of sources, with the ``.dockerignore`` matcher applied to it."""

    def __init__(self, root: Path, matcher: PatternMatcher, temp: Path | None = None) -> None:
        self.root = root
        self.matcher = matcher
        self._temp = temp

    @classmethod
    def open(cls, source: Path | str | BinaryIO, dockerfile: str, work_dir: Path
             ) -> BuildContext:
        temp = None
        if isinstance(source, (str, Path)):
            root = Path(source)
            if not root.is_dir():
                raise BuildError(f"build context {root} is not a directory")
            root = root.resolve()
        else:
            work_dir.mkdir(parents=True, exist_ok=True)
            temp = Path(tempfile.mkdtemp(prefix="ctx-", dir=work_dir))
            try:
                extract_tar(source, temp)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
            root = temp
        patterns: list[str] = []
        for name in (dockerfile + ".dockerignore", ".dockerignore"):
            candidate = resolve_in(root, name)
            if candidate is not None and candidate.is_file():
                patterns = read_patterns(candidate.read_bytes())
                break
        try:
            matcher = PatternMatcher(patterns)
        except BuildError:
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)
            raise
        return cls(root, matcher, temp)

    def close(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    def read_dockerfile(self, name: str) -> bytes:
        """The Dockerfile bytes (read even when ``.dockerignore`` names it, like Docker)."""
        path = resolve_in(self.root, name)
        if path is None or not path.is_file():
            raise BuildError(f"Cannot locate specified Dockerfile: {name}")
        return path.read_bytes()

    def excluded(self, rel: str) -> bool:
        return bool(rel) and rel != "." and self.matcher.matches_or_parent_matches(rel)

    def sources(self, src: str) -> list[tuple[str, Path]]:
        """Context entries named by a COPY/ADD source (wildcards allowed), as (rel, host)."""
        clean = os.path.normpath("/" + src).lstrip("/")
        if not has_wildcards(clean):
            host = resolve_in(self.root, clean)
            if host is None or (clean and self.excluded(clean)):
                raise BuildError(f"COPY failed: file not found in build context or excluded "
                                 f"by .dockerignore: stat {src}: file does not exist")
            return [(clean, host)]
        out = glob_in(self.root, clean, self.excluded)
        if not out:
            raise BuildError(f"COPY failed: no source files were specified (pattern {src})")
        return out

    def walk(self, rel: str, host: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
        """Every entry below directory ``host`` (context path ``rel``) not excluded."""
        stack = [(rel, host)]
        while stack:
            drel, dhost = stack.pop()
            try:
                names = sorted(os.listdir(dhost))
            except OSError as exc:
                raise BuildError(f"cannot read {drel or '.'} in the build context: "
                                 f"{exc.strerror}") from None
            for name in names:
                crel = f"{drel}/{name}" if drel else name
                chost = dhost / name
                st = os.lstat(chost)
                excluded = self.excluded(crel)
                if stat.S_ISDIR(st.st_mode):
                    if excluded and not self.matcher.needs_walk(crel):
                        continue
                    if not excluded:
                        yield crel, chost, st
                    stack.append((crel, chost))
                elif not excluded:
                    yield crel, chost, st

    def checksum(self, rel: str, host: Path) -> str:
        """A digest of content and metadata of a source: the cache key of COPY/ADD."""
        h = hashlib.sha256()

        def add(crel: str, path: Path, st: os.stat_result) -> None:
            kind = stat.S_IFMT(st.st_mode)
            h.update(f"{crel}\0{kind}\0{st.st_mode & 0o7777:o}\0".encode("utf-8",
                                                                          "surrogateescape"))
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
            h.update(b"\0")

        st = os.stat(host)
        add("", host, st)
        if stat.S_ISDIR(st.st_mode):
            for crel, chost, cst in self.walk_below(rel, host):
                add(crel, chost, cst)
        return "sha256:" + h.hexdigest()

    def walk_below(self, rel: str, host: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
        """Like :meth:`walk`, with paths relative to the directory ``host`` itself."""
        cut = len(rel) + 1 if rel else 0
        for crel, chost, cst in self.walk(rel, host):
            yield crel[cut:], chost, cst
