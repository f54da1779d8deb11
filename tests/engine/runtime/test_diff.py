"""``docker diff`` from a real overlay upper dir after a container wrote, edited and deleted."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engine.errors import NotFound
from engine.runtime.containers import ContainerSpec
from engine.runtime.diff import ADDED, DELETED, MODIFIED, changes


@pytest.fixture
def container(engine):
    c = engine.containers.create(ContainerSpec(image="busybox:latest", cmd=["sleep", "1000"],
                                               network_mode="none"))
    try:
        engine.containers.start(c.id)
        yield engine.containers.get(c.id)
    finally:
        engine.containers.remove(c.id, force=True)


def sh(engine, c, script: str) -> subprocess.CompletedProcess:
    argv = engine.containers.runtime_for(c).command("exec", c.runtime_id, "sh", "-c", script)
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_added_changed_deleted_after_a_process_ran(engine, container):
    out = sh(engine, container,
             "echo new > /etc/added && echo more >> /etc/group && rm /usr/bin/wc"
             " && mkdir -p /srv/app/data && echo x > /srv/app/data/f && rm -r /home"
             " && chmod 700 /var/log")
    assert out.returncode == 0, out.stderr
    found = {c["Path"]: c["Kind"] for c in engine.containers.changes(container.id)}
    assert found["/etc"] == MODIFIED
    assert found["/etc/added"] == ADDED
    assert found["/etc/group"] == MODIFIED
    assert found["/usr"] == MODIFIED and found["/usr/bin"] == MODIFIED
    assert found["/usr/bin/wc"] == DELETED
    assert found["/srv"] == ADDED and found["/srv/app/data/f"] == ADDED
    assert found["/home"] == DELETED
    assert found["/var"] == MODIFIED and found["/var/log"] == MODIFIED
    assert "/bin" not in found and "/etc/passwd" not in found
    expected = {"/etc", "/etc/added", "/etc/group", "/usr", "/usr/bin", "/usr/bin/wc", "/srv",
                "/srv/app", "/srv/app/data", "/srv/app/data/f", "/home", "/var", "/var/log"}
    assert set(found) - expected <= {"/tmp", "/run"}, set(found) - expected
    # Docker's order and shape: a sorted list of {"Path", "Kind"}.
    layers = [Path(p) for p in container.config["LayerDirs"]]
    listing = changes(container.upper_dir, layers)
    assert [c["Path"] for c in listing] == sorted(listing_paths := [c["Path"] for c in listing])
    assert set(expected) <= set(listing_paths)
    assert set(listing[0]) == {"Path", "Kind"}
    ignored = {c["Path"] for c in changes(container.upper_dir, layers, ignore=["/srv"])}
    assert "/srv" not in ignored and "/srv/app" not in ignored and "/etc/added" in ignored


def test_opaque_dir_and_several_layers(tmp_path):
    """Two lower layers (base first) and an upper that replaced a whole directory."""
    base, top, upper = tmp_path / "base", tmp_path / "top", tmp_path / "upper"
    for d in (base / "opt" / "old", top / "opt", upper / "opt", base / "var"):
        d.mkdir(parents=True)
    (base / "opt" / "old" / "a").write_text("a")
    (base / "opt" / "keep").write_text("k")
    (base / "var" / "gone").write_text("g")
    (top / "opt" / "fromtop").write_text("t")
    os.mknod(top / "var", 0o600 | 0o020000, os.makedev(0, 0))  # the top layer deleted /var
    # The container did `rm -rf /opt && mkdir /opt && echo > /opt/fresh`: an opaque dir.
    (upper / "opt" / "fresh").write_text("f")
    os.setxattr(upper / "opt", "trusted.overlay.opaque", b"y")
    # ... and made /var again (hidden in the lowers by the top layer's whiteout).
    (upper / "var").mkdir()
    (upper / "var" / "gone").write_text("back")
    # A whiteout of a path no lower shows is nothing to report.
    os.mknod(upper / "never", 0o600 | 0o020000, os.makedev(0, 0))
    found = {c["Path"]: c["Kind"] for c in changes(upper, [base, top])}
    assert found == {
        "/opt": MODIFIED,
        "/opt/fresh": ADDED,
        "/opt/fromtop": DELETED,
        "/opt/keep": DELETED,
        "/opt/old": DELETED,
        "/var": ADDED,
        "/var/gone": ADDED,
    }


def test_lower_symlinks_are_not_followed(tmp_path):
    """A layer's symlinked dir must not make us stat host paths (/etc via ``link -> /``)."""
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    os.symlink("/", lower / "link")
    (upper / "link").mkdir(parents=True)  # impossible in overlay, but hostile input
    (upper / "link" / "etc").mkdir()
    found = {c["Path"]: c["Kind"] for c in changes(upper, [lower])}
    assert found["/link/etc"] == ADDED  # /etc exists on the host, not in the layer


def test_missing_upper_dir_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="upper dir"):
        changes(tmp_path / "nope", [])
