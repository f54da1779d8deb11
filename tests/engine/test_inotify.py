"""inotify descriptors are borrowed from a pool: reused, drained, never shared with a fork."""

from __future__ import annotations

import os
import select

from engine import inotify
from engine.runtime.store import StateWatch


def test_a_returned_descriptor_is_reused_with_no_watch_and_no_stale_event(tmp_path):
    with inotify.borrow() as fd:
        wd = inotify.add_watch(fd, tmp_path, inotify.IN_CREATE)
        (tmp_path / "a").write_text("x")
        assert select.select([fd], [], [], 2)[0]  # the event is there, unread
        inotify.rm_watch(fd, wd)
    with inotify.borrow() as again:
        assert again == fd
        (tmp_path / "b").write_text("x")  # no watch any more: no event
        assert not select.select([again], [], [], 0.1)[0]


def test_concurrent_borrowers_get_their_own_descriptor():
    with inotify.borrow() as one, inotify.borrow() as two:
        assert one >= 0 and two >= 0 and one != two


def test_a_forked_child_does_not_take_the_parents_idle_descriptors():
    with inotify.borrow() as fd:
        pass
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        with inotify.borrow() as mine:
            os.write(w, str(mine).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert int(os.read(r, 64)) != fd
    os.close(r)


def test_state_watch_wakes_on_a_rename_into_the_directory(tmp_path):
    with StateWatch(tmp_path) as watch:
        (tmp_path / ".state.tmp").write_text("{}")
        os.replace(tmp_path / ".state.tmp", tmp_path / "state.json")
        ready, _, _ = select.select([watch.fd], [], [], 2)
        assert ready
