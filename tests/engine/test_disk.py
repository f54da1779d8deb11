"""``tree_size``: the figure ``docker system df`` and ``ps -s`` show, from a real tree."""

from __future__ import annotations

import os

from engine.disk import tree_size


def test_counts_apparent_bytes_once_per_inode_and_never_follows_links(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "a").write_bytes(b"x" * 1000)
    (tmp_path / "b").write_bytes(b"y" * 24)
    os.link(tmp_path / "b", tmp_path / "d" / "b-again")  # one file, two names
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.write_bytes(b"z" * 5000)
    try:
        os.symlink(outside, tmp_path / "to-outside")  # its own few bytes, not the target's
        link_size = os.lstat(tmp_path / "to-outside").st_size
        os.mknod(tmp_path / "whiteout", 0o020000, 0)  # an overlay whiteout: 0 bytes
        assert tree_size(tmp_path) == 1000 + 24 + link_size
    finally:
        outside.unlink()


def test_a_missing_tree_is_empty_and_a_file_is_its_size(tmp_path):
    assert tree_size(tmp_path / "gone") == 0
    (tmp_path / "f").write_bytes(b"1234567")
    assert tree_size(tmp_path / "f") == 7
