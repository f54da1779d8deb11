"""Namespaces and PID mapping, read from a real container's /proc entries."""

from __future__ import annotations

import os

import pytest

from engine.errors import NotFound
from engine.introspect.namespaces import KINDS, compare_namespaces, namespace_inode
from engine.introspect.processes import nspid, process_tree
from engine.introspect.uts import hostnames


def test_isolated_namespaces_have_other_inodes(handmade_container):
    rows = {r.kind: r for r in compare_namespaces(handmade_container.pid)}
    assert set(rows) == set(KINDS)
    for kind in ("pid", "mnt", "uts", "ipc", "net"):
        assert rows[kind].isolated, kind
        assert rows[kind].container_inode != rows[kind].host_inode
    assert not rows["user"].isolated  # not unshared: the same inode as ours
    assert rows["user"].container_inode == namespace_inode(os.getpid(), "user")


def test_pid_1_maps_to_its_real_host_pid(handmade_container):
    assert nspid(handmade_container.pid) == (handmade_container.pid, 1)
    tree = process_tree(handmade_container.pid)
    by_cpid = {row.container_pid: row for row in tree}
    assert by_cpid[1].host_pid == handmade_container.pid
    assert by_cpid[1].container_ppid is None  # its parent is outside the container
    # the second sleep is PID 2 inside, a child of PID 1, with a host PID of its own
    others = [r for r in tree if r.container_pid != 1]
    assert others and others[0].container_ppid == 1
    assert others[0].host_pid != others[0].container_pid
    assert "sleep 600" in by_cpid[1].cmdline


def test_hostname_inside_and_out(handmade_container):
    names = hostnames(handmade_container.pid)
    assert names == {"inside": "lesson-box", "outside": os.uname().nodename}


def test_a_gone_process_is_a_clear_error():
    with pytest.raises(NotFound, match="no process"):
        compare_namespaces(2**22 + 17)
