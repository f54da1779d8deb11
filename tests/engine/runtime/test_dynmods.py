"""``favordynmods``: the host's cgroup2 mount asks for fast cgroup moves, its other options kept."""

from __future__ import annotations

import ctypes

import pytest

from engine.runtime import dynmods

HYBRID = ("35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - "
          "cgroup2 cgroup2 rw,nsdelegate\n"
          "36 25 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n")
V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
V1 = "36 25 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"


def test_the_cgroup2_mount_is_found_on_either_layout():
    assert dynmods.cgroup2_mount(HYBRID) == ("/sys/fs/cgroup/unified", {"rw", "nsdelegate"})
    assert dynmods.cgroup2_mount(V2) == ("/sys/fs/cgroup",
                                         {"rw", "nsdelegate", "memory_recursiveprot"})
    assert dynmods.cgroup2_mount(V1) is None


_MOUNT_FLAGS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024,
                "nodiratime": 2048, "relatime": 1 << 21, "strictatime": 1 << 24}
MS_REMOUNT = 32


def _mount() -> tuple[str, set[str], set[str]]:
    """The cgroup2 mount point, its per-mount options and its superblock options."""
    with open("/proc/self/mountinfo") as fh:
        text = fh.read()
    found = dynmods.cgroup2_mount(text)
    assert found is not None
    line = next(ln for ln in text.splitlines() if f" {found[0]} " in ln and "cgroup2" in ln)
    return found[0], set(line.split()[5].split(",")), found[1]


def _without_favordynmods() -> None:
    """Remount the cgroup2 tree as it is, minus ``favordynmods`` (mount(8) cannot drop it)."""
    mountpoint, per_mount, options = _mount()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    flags = MS_REMOUNT | sum(_MOUNT_FLAGS.get(o, 0) for o in per_mount)
    data = ",".join(sorted(options - {"rw", "ro", "favordynmods"})).encode()
    assert libc.mount(None, mountpoint.encode(), None, flags, data) == 0, ctypes.get_errno()


def test_the_host_gets_favordynmods_and_keeps_its_other_options(monkeypatch):
    if "favordynmods" not in dynmods.FEATURES.read_text().split():
        pytest.skip("this kernel has no favordynmods")
    _without_favordynmods()
    _, per_mount, before = _mount()
    assert "favordynmods" not in before
    monkeypatch.setattr(dynmods, "_outcome", None)
    assert dynmods.favor_dynamic_changes()
    _, per_mount_after, after = _mount()
    assert after == before | {"favordynmods"} and per_mount_after == per_mount


def test_it_can_be_declined(monkeypatch):
    monkeypatch.setattr(dynmods, "_outcome", None)
    monkeypatch.setenv("ESTIBA_FAVOR_DYNMODS", "0")
    assert not dynmods.favor_dynamic_changes()
