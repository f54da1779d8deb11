"""``.dockerignore`` patterns and the build context, with the reference's semantics."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from engine.build.context import BuildContext, extract_tar
from engine.build.dockerignore import PatternMatcher, read_patterns
from engine.errors import BuildError


def test_read_patterns_cleans_lines() -> None:
    data = b"\xef\xbb\xbf# comment\n  /foo/../bar  \n./baz/\n\n!  keep.md\r\n*.tmp\n"
    assert read_patterns(data) == ["bar", "baz", "!keep.md", "*.tmp"]


@pytest.mark.parametrize("patterns, path, excluded", [
    (["*.md"], "README.md", True),
    (["*.md"], "docs/a.md", False),           # * never crosses /
    (["**/*.md"], "docs/deep/a.md", True),
    (["**/*.md"], "a.md", True),
    (["docs"], "docs/deep/a.md", True),       # a parent matches
    (["docs/**"], "docs/x", True),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md", "README*"], "README.md", True),  # last match wins
    (["a?c"], "abc", True),
    (["a?c"], "a/c", False),
    (["[a-c]x"], "bx", True),
    (["\\*x"], "*x", True),
    (["\\*x"], "ax", False),
    (["**"], "anything/at/all", True),
    (["temp*/"], "temp1/f", True),
    (["/abs"], "abs", True),
    (["a/**/b"], "a/b", True),
    (["a/**/b"], "a/x/y/b", True),
])
def test_matching(patterns: list[str], path: str, excluded: bool) -> None:
    m = PatternMatcher(read_patterns("\n".join(patterns)))
    assert m.matches_or_parent_matches(path) is excluded


@pytest.mark.parametrize("bad", ["!", "[", "a\\", "[]a]"])
def test_bad_patterns_refused(bad: str) -> None:
    with pytest.raises(BuildError):
        PatternMatcher([bad])


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    buf.seek(0)
    return buf


def _info(name: str, type_=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    info.mode = 0o644
    return info


def test_tar_context_and_dockerignore(tmp_path: Path) -> None:
    stream = _tar([
        (_info("Dockerfile"), b"FROM busybox\n"),
        (_info(".dockerignore"), b"secret*\n!secret-ok\n"),
        (_info("./dir/", tarfile.DIRTYPE), None),
        (_info("dir/a.txt"), b"a"),
        (_info("secret-key"), b"k"),
        (_info("secret-ok"), b"ok"),
        (_info("link", tarfile.SYMTYPE, "dir/a.txt"), None),
    ])
    ctx = BuildContext.open(stream, "Dockerfile", tmp_path)
    try:
        assert ctx.read_dockerfile("Dockerfile") == b"FROM busybox\n"
        assert ctx.excluded("secret-key") and not ctx.excluded("secret-ok")
        with pytest.raises(BuildError, match=r"excluded by \.dockerignore"):
            ctx.sources("secret-key")
        assert [rel for rel, _ in ctx.sources("secret-*")] == ["secret-ok"]
        _, host = ctx.sources("link")[0]
        assert host.read_bytes() == b"a"
        names = sorted(rel for rel, _, _ in ctx.walk("", ctx.root))
        assert "secret-key" not in names and "dir/a.txt" in names
        root = ctx.root
    finally:
        ctx.close()
    assert not root.exists()


@pytest.mark.parametrize("entries, message", [
    ([(_info("../evil"), b"x")], "escapes the context"),
    ([(_info("a/../../evil"), b"x")], "escapes the context"),
    ([(_info("esc", tarfile.SYMTYPE, "/etc"), None), (_info("esc/passwd"), b"x")],
     "through a symlink"),
    ([(_info("hl", tarfile.LNKTYPE, "/etc/passwd"), None)], "hardlink"),
    ([(_info("dev", tarfile.CHRTYPE), None)], "device node"),
])
def test_hostile_tar_refused(tmp_path: Path, entries, message: str) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BuildError, match=message):
        extract_tar(_tar(entries), dest)
    assert not os.path.exists(tmp_path / "evil")
    assert os.stat("/etc/passwd").st_size > 0


def test_source_symlink_stays_inside_context(tmp_path: Path) -> None:
    (tmp_path / "out").symlink_to("/etc")
    ctx = BuildContext.open(tmp_path, "Dockerfile", tmp_path / "work")
    with pytest.raises(BuildError, match="file not found"):
        ctx.sources("out/passwd")
