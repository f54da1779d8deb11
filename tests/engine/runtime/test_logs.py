"""Container logs in the json-file shape: content, streams, since, tail, timestamps, follow."""

from __future__ import annotations

import json
import threading
import time

from engine.runtime.logs import JsonLogWriter, read_logs
from engine.runtime.store import parse_rfc3339, rfc3339


def test_logs_content_streams_tail_since_timestamps(engine, containers):
    c = containers(cmd=["sh", "-c", "echo one; echo two >&2; sleep 1.2; echo three; "
                                    "printf 'no newline'"], start=True)
    assert engine.containers.wait(c.id, timeout=20) == 0
    entries = list(engine.containers.logs(c.id))
    assert [(e.stream, e.data) for e in entries] == [
        ("stdout", b"one\n"), ("stderr", b"two\n"), ("stdout", b"three\n"),
        ("stdout", b"no newline")]
    assert [e.data for e in engine.containers.logs(c.id, stderr=False)] == [
        b"one\n", b"three\n", b"no newline"]
    assert [e.data for e in engine.containers.logs(c.id, tail=2)] == [b"three\n", b"no newline"]
    assert list(engine.containers.logs(c.id, tail=0)) == []
    since = (entries[1].time_nano + entries[2].time_nano) / 2 / 1e9
    assert [e.data for e in engine.containers.logs(c.id, since=since)] == [
        b"three\n", b"no newline"]
    assert [e.data for e in engine.containers.logs(c.id, until=since)] == [b"one\n", b"two\n"]
    stamped = entries[0].format(timestamps=True).decode()
    assert stamped.endswith(" one\n") and abs(parse_rfc3339(stamped.split()[0]) -
                                              entries[0].time_nano) == 0
    # the file itself is Docker's json-file format
    first = json.loads(c.log_path.read_text().splitlines()[0])
    assert set(first) == {"log", "stream", "time"} and first["log"] == "one\n"


def test_logs_follow_until_exit(engine, containers):
    c = containers(cmd=["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.2; done"],
                   start=True)
    got: list[bytes] = []
    reader = threading.Thread(
        target=lambda: got.extend(e.data for e in engine.containers.logs(c.id, follow=True)))
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "follow did not end when the container exited"
    assert got == [b"line 1\n", b"line 2\n", b"line 3\n"]


def test_rotation_keeps_recent_entries(tmp_path):
    log = tmp_path / "c-json.log"
    writer = JsonLogWriter(log, max_size=2048, max_files=3)
    for i in range(200):
        writer.write("stdout", f"entry {i:04d}\n".encode())
    writer.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    assert all(p.stat().st_size <= 2048 for p in tmp_path.iterdir())
    data = [e.data for e in read_logs(log)]
    assert data[-1] == b"entry 0199\n"
    numbers = [int(d.split()[1]) for d in data]
    assert numbers == sorted(numbers) and len(numbers) < 200  # oldest dropped, order kept


def test_follow_survives_rotation(tmp_path):
    log = tmp_path / "c-json.log"
    writer = JsonLogWriter(log, max_size=1024, max_files=2)
    done = threading.Event()
    got: list[bytes] = []

    def follow():
        for e in read_logs(log, follow=True, still_running=lambda: not done.is_set(), poll=0.01):
            got.append(e.data)

    t = threading.Thread(target=follow)
    t.start()
    for i in range(60):
        writer.write("stdout", f"n{i:03d}\n".encode())
        if i % 10 == 0:
            time.sleep(0.05)
    writer.close()
    time.sleep(0.2)
    done.set()
    t.join(timeout=10)
    assert got[-1] == b"n059\n"
    assert len(got) == len(set(got))


def test_timestamps_roundtrip():
    ns = 1_700_000_000_123_456_789
    assert rfc3339(ns) == "2023-11-14T22:13:20.123456789Z"
    assert parse_rfc3339(rfc3339(ns)) == ns
