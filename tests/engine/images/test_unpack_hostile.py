"""Malicious layer tarballs: each is refused or neutralized, and the host stays untouched.

Every test unpacks as root into a fresh directory beside a "host" sentinel
directory holding a secret file, then checks the sentinel byte for byte.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
from pathlib import Path

import pytest
import zstandard

from engine.errors import LayerRejected
from tests.engine.images.conftest import entry, make_tar, unpack


@pytest.fixture(autouse=True, params=["openat2", "component-walk"])
def resolver(request, monkeypatch) -> str:
    """Run every case with openat2 and with the O_NOFOLLOW walk (kernels before 5.6)."""
    from engine.images import unpack as mod

    if request.param == "component-walk":
        monkeypatch.setattr(mod, "_HAVE_OPENAT2", False)
    else:
        assert mod.have_openat2(), "this kernel should have openat2"
    return request.param


@pytest.fixture
def host(workdir: Path) -> Path:
    """A stand-in for the host: files an attacker would like to overwrite."""
    outside = workdir / "outside"
    outside.mkdir()
    (outside / "secret").write_text("untouched")
    return outside


def assert_host_intact(host: Path) -> None:
    assert sorted(os.listdir(host)) == ["secret"]
    assert (host / "secret").read_text() == "untouched"
    assert os.stat(host / "secret").st_nlink == 1


def test_dotdot_traversal_is_refused_naming_the_entry(dest: Path, host: Path) -> None:
    data = make_tar([entry("ok"), entry("../outside/secret", data=b"pwned")])
    with pytest.raises(LayerRejected, match=r"'\.\./outside/secret'.*'\.\.'"):
        unpack(data, dest)
    assert_host_intact(host)


def test_dotdot_hidden_in_the_middle_is_refused(dest: Path, host: Path) -> None:
    data = make_tar([entry("a/b/../../../outside/secret", data=b"pwned")])
    with pytest.raises(LayerRejected):
        unpack(data, dest)
    assert_host_intact(host)


def test_absolute_path_is_neutralized_inside_the_layer(dest: Path, host: Path) -> None:
    data = make_tar([entry(f"{host}/secret", data=b"pwned")])
    unpack(data, dest)
    assert_host_intact(host)
    inside = dest / str(host).lstrip("/") / "secret"
    assert inside.read_bytes() == b"pwned"


def test_absolute_symlink_is_kept_but_never_written_through(dest: Path, host: Path) -> None:
    data = make_tar([entry("evil", "symlink", link=str(host)),
                     entry("evil/secret", data=b"pwned")])
    with pytest.raises(LayerRejected, match=r"'evil/secret'.*symlink"):
        unpack(data, dest)
    assert_host_intact(host)


def test_relative_symlink_escape_is_refused(dest: Path, host: Path) -> None:
    data = make_tar([entry("dir", "dir"), entry("dir/up", "symlink", link="../../outside"),
                     entry("dir/up/secret", data=b"pwned")])
    with pytest.raises(LayerRejected, match="symlink"):
        unpack(data, dest)
    assert_host_intact(host)


def test_symlinks_are_stored_as_written(dest: Path) -> None:
    data = make_tar([
        entry("usr/bin", "dir"),
        entry("usr/bin/editor", "symlink", link="/etc/alternatives/editor"),
        entry("escape", "symlink", link="../../../../../etc/shadow"),
    ])
    unpack(data, dest)
    assert os.readlink(dest / "usr/bin/editor") == "/etc/alternatives/editor"
    assert os.readlink(dest / "escape") == "../../../../../etc/shadow"


def test_symlink_then_a_file_of_the_same_name_replaces_the_link(dest: Path, host: Path) -> None:
    data = make_tar([entry("f", "symlink", link=f"{host}/secret"), entry("f", data=b"new")])
    unpack(data, dest)
    assert_host_intact(host)
    assert not (dest / "f").is_symlink() and (dest / "f").read_bytes() == b"new"


def test_directory_replaced_by_symlink_then_written_through_is_refused(
        dest: Path, host: Path) -> None:
    # The applier caches directory descriptors; replacing "d" must invalidate them.
    data = make_tar([entry("d", "dir"), entry("d/x", data=b"1"),
                     entry("d", "symlink", link=str(host)), entry("d/secret", data=b"pwned")])
    with pytest.raises(LayerRejected, match="'d/secret'"):
        unpack(data, dest)
    assert_host_intact(host)


def test_hardlink_out_of_the_layer_is_refused(dest: Path, host: Path) -> None:
    data = make_tar([entry("hl", "hardlink", link="../outside/secret")])
    with pytest.raises(LayerRejected, match="hardlink"):
        unpack(data, dest)
    assert_host_intact(host)


def test_absolute_hardlink_to_a_host_file_is_refused(dest: Path, host: Path) -> None:
    data = make_tar([entry("hl", "hardlink", link=f"{host}/secret")])
    with pytest.raises(LayerRejected, match="not an earlier entry"):
        unpack(data, dest)
    assert_host_intact(host)


def test_hardlink_through_a_symlink_is_refused(dest: Path, host: Path) -> None:
    data = make_tar([entry("lnk", "symlink", link=str(host)),
                     entry("hl", "hardlink", link="lnk/secret")])
    with pytest.raises(LayerRejected):
        unpack(data, dest)
    assert_host_intact(host)


def test_hardlink_inside_the_layer_works(dest: Path) -> None:
    data = make_tar([entry("a", data=b"same"), entry("b", "hardlink", link="a")])
    unpack(data, dest)
    assert os.stat(dest / "a").st_ino == os.stat(dest / "b").st_ino


def test_device_nodes_are_not_created(dest: Path) -> None:
    data = make_tar([entry("dev", "dir"), entry("dev/mem", "chr", devmajor=1, devminor=1),
                     entry("dev/sda", "blk", devmajor=8, devminor=0), entry("dev/fifo", "fifo")])
    result = unpack(data, dest)
    assert not os.path.lexists(dest / "dev/mem") and not os.path.lexists(dest / "dev/sda")
    assert result.skipped_devices == ["dev/mem", "dev/sda"]
    assert stat.S_ISFIFO(os.lstat(dest / "dev/fifo").st_mode)


def test_whiteout_of_a_path_outside_is_refused(dest: Path, host: Path) -> None:
    data = make_tar([entry("../outside/.wh.secret")])
    with pytest.raises(LayerRejected):
        unpack(data, dest)
    assert_host_intact(host)


def test_whiteout_through_a_symlink_is_refused(dest: Path, host: Path) -> None:
    data = make_tar([entry("evil", "symlink", link=str(host)), entry("evil/.wh.secret")])
    with pytest.raises(LayerRejected):
        unpack(data, dest)
    assert_host_intact(host)


def test_whiteouts_become_overlay_whiteouts(dest: Path) -> None:
    data = make_tar([entry("etc", "dir"), entry("etc/.wh.hostname"), entry("var", "dir"),
                     entry("var/.wh..wh..opq"), entry("var/new", data=b"x")])
    unpack(data, dest)
    st = os.lstat(dest / "etc/hostname")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert not os.path.lexists(dest / "etc/.wh.hostname")
    assert os.getxattr(dest / "var", "trusted.overlay.opaque") == b"y"
    assert (dest / "var/new").read_bytes() == b"x"


def test_owners_are_numeric_not_mapped_by_name(dest: Path) -> None:
    data = make_tar([entry("f", data=b"x", uid=1000, gid=1001, uname="root"),
                     entry("s", data=b"x", mode=0o4755, uid=0)])
    unpack(data, dest)
    st = os.lstat(dest / "f")
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    assert stat.S_IMODE(os.lstat(dest / "s").st_mode) == 0o4755


def test_trusted_xattrs_from_the_tarball_are_ignored(dest: Path) -> None:
    data = make_tar([entry("d", "dir", pax={"SCHILY.xattr.trusted.overlay.opaque": "y"}),
                     entry("f", data=b"x", pax={"SCHILY.xattr.user.note": "hello"})])
    unpack(data, dest)
    with pytest.raises(OSError):
        os.getxattr(dest / "d", "trusted.overlay.opaque")
    assert os.getxattr(dest / "f", "user.note") == b"hello"


@pytest.mark.parametrize("compress", ["plain", "gzip", "zstd"])
def test_compressions_and_diff_id(dest: Path, compress: str) -> None:
    tar = make_tar([entry("hello", data=b"world" * 1000)])
    blob = {"plain": lambda b: b, "gzip": gzip.compress,
            "zstd": lambda b: zstandard.ZstdCompressor().compress(b)}[compress](tar)
    result = unpack(blob, dest)
    assert (dest / "hello").read_bytes() == b"world" * 1000
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_garbage_and_truncated_layers_are_rejected(dest: Path) -> None:
    with pytest.raises(LayerRejected):
        unpack(b"this is not a tarball at all" * 40, dest)
    tar = make_tar([entry("big", data=os.urandom(100_000))])
    with pytest.raises(LayerRejected):
        unpack(gzip.compress(tar)[:5000], dest)


def test_rejected_layer_leaves_nothing_in_the_store(store, host: Path) -> None:
    before = {p.relative_to(store.root) for p in store.root.rglob("*")}
    data = make_tar([entry("ok", data=b"fine"), entry("evil", "symlink", link=str(host)),
                     entry("evil/secret", data=b"pwned")])
    with pytest.raises(LayerRejected, match="evil/secret"):
        store.import_rootfs(io.BytesIO(data), "evil:latest")
    after = {p.relative_to(store.root) for p in store.root.rglob("*")}
    assert after == before
    assert_host_intact(host)
    assert not store.exists("evil:latest")
