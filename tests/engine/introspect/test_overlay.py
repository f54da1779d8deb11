"""The overlay stack of a real overlay mount, and copy-ups seen as they happen."""

from __future__ import annotations

import os
import time

import pytest

from engine.errors import InvalidArgument
from engine.introspect.mounts import mounts_of, parse_mountinfo, root_mount
from engine.introspect.overlay import merged_view, overlay_of, parse_overlay_options, provider_of
from engine.introspect.watch import UpperDirWatcher


def test_the_root_is_the_overlay_with_its_dirs(handmade_container):
    c = handmade_container
    assert root_mount(c.pid).fstype == "overlay"
    stack = overlay_of(c.pid)
    assert stack.lower_dirs == [str(c.lowers[1]), str(c.lowers[0])]  # top first
    assert stack.upper_dir == str(c.upper) and stack.work_dir == str(c.work)
    points = {m.mount_point for m in mounts_of(c.pid)}
    assert "/proc" in points


def test_each_file_tagged_with_its_layer_and_whiteouts_hide(handmade_container):
    c = handmade_container
    layers = [role_path[1] for role_path in overlay_of(c.pid).layers_top_first()]
    view = {e.path: e for e in merged_view(layers)}
    # layers: 0 upper, 1 lower 2 (l1), 2 lower 1 (l0)
    assert view["/etc/motd"].layer == 1 and view["/etc/motd"].also_below
    assert view["/bin/busybox"].layer == 2
    assert view["/app/run.sh"].layer == 1
    assert view["/etc/old.conf"].kind == "whiteout" and view["/etc/old.conf"].layer == 1
    assert not os.path.exists(c.root("/etc/old.conf"))  # the kernel agrees: it is hidden
    assert provider_of(layers, "/etc/motd") == 1
    assert provider_of(layers, "/etc/old.conf") is None
    assert provider_of(layers, "/etc/hostname") == 2
    with pytest.raises(InvalidArgument):
        provider_of(layers, "/../etc/passwd")


def test_copy_up_whiteout_and_new_file_seen_within_2_seconds(handmade_container):
    c = handmade_container
    lowers = [str(p) for p in reversed(c.lowers)]
    with UpperDirWatcher(c.upper, lowers) as watcher:
        start = time.monotonic()
        with open(c.root("/etc/motd"), "a") as fh:  # a lower file: copied up
            fh.write("changed inside\n")
        os.unlink(c.root("/etc/hostname"))  # a lower file deleted: a whiteout
        c.root("/tmp/new.txt").write_text("new\n")  # a new file
        seen: dict[str, str] = {}
        while time.monotonic() - start < 2 and len(seen) < 3:
            for ev in watcher.poll(0.2):
                seen.setdefault(ev["path"], ev["kind"])
    assert seen.get("/etc/motd") == "copy-up"
    assert seen.get("/etc/hostname") == "whiteout"
    assert seen.get("/tmp/new.txt") == "added"
    layers = [str(c.upper), *lowers]
    view = {e.path: e for e in merged_view(layers)}
    assert view["/etc/motd"].layer == 0 and view["/etc/hostname"].kind == "whiteout"


def test_overlay_options_with_escapes():
    stack = parse_overlay_options(r"rw,lowerdir=/a\:b:/c,upperdir=/u,workdir=/w,index=off")
    assert stack.lower_dirs == ["/a:b", "/c"] and stack.upper_dir == "/u"
    with pytest.raises(InvalidArgument):
        parse_overlay_options("rw,upperdir=/u")


def test_mountinfo_malformed_line_is_refused():
    with pytest.raises(ValueError, match="malformed"):
        parse_mountinfo("1 2 0:1 / /x rw\n")
    (m,) = parse_mountinfo(r"36 35 98:0 /mnt1 /mnt\040two rw,noatime master:1 - ext3 /dev/r rw")
    assert m.mount_point == "/mnt two" and m.fstype == "ext3"
