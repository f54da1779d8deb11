"""The gateway against a real Redis and a real Celery worker (as root) on a real engine."""

from __future__ import annotations

import pytest

from engine import errors
from estiba import gateway
from estiba.ops import OperationRefused


def test_call_returns_the_engines_answer_as_json(web_worker, engine):
    image = gateway.call("images.resolve", "busybox:latest")
    assert image["Id"] == engine.images.resolve("busybox:latest").id
    assert "busybox:latest" in image["RepoTags"]
    listed = gateway.call("images.list")
    assert any("busybox:latest" in i["RepoTags"] for i in listed)


def test_engine_errors_come_back_as_the_same_class_and_message(web_worker, engine):
    with pytest.raises(errors.ImageNotFound) as remote:
        gateway.call("images.resolve", "no-such-image:1")
    with pytest.raises(errors.ImageNotFound) as local:
        engine.images.resolve("no-such-image:1")
    assert str(remote.value) == str(local.value)


def test_only_whitelisted_operations_run(web_worker):
    for op in ("images._save", "containers.__init__", "os.system", "config.root"):
        with pytest.raises(OperationRefused, match="not one the worker runs"):
            gateway.call(op)


def test_a_host_without_worker_fails_at_once_and_nothing_waits_in_its_queue(web_worker):
    """A task queued for a host that is down would run whenever its worker came back."""
    from estiba import bus

    for attempt in (lambda: gateway.call("images.list", host="no-such-host"),
                    lambda: gateway.stream("events.follow", 0, host="no-such-host"),
                    lambda: gateway.session("containers.exec", "x", host="no-such-host")):
        with pytest.raises(gateway.HostUnavailable, match="no running estiba worker"):
            attempt()
    assert bus.client().llen("host.no-such-host") == 0


def test_stream_of_events_from_the_worker(web_worker, engine):
    stream = gateway.stream("events.follow", engine.events.end_offset())
    engine.images.tag("busybox:latest", "gateway-stream-test:1")
    try:
        for item in stream:
            if item["event"]["action"] == "tag":
                assert item["docker"]["Type"] == "image"
                break
    finally:
        stream.close()
        engine.images.remove("gateway-stream-test:1")


def test_calls_leave_no_reply_behind(web_worker):
    from estiba import bus

    # an answer to a call that gave up earlier in the session may still wait out its TTL
    before = set(bus.client().scan_iter("estiba:reply:*"))
    for _ in range(5):
        gateway.call("images.list")
    assert set(bus.client().scan_iter("estiba:reply:*")) <= before


def test_a_host_that_beats_but_does_not_answer_times_out(web_worker):
    from estiba import bus

    r = bus.client()
    r.set(bus.heartbeat_key("ghost-host"), 1, ex=30)
    try:
        with pytest.raises(gateway.HostUnavailable, match=r"did not finish images\.list"):
            gateway.call("images.list", host="ghost-host", timeout=0.5)
    finally:
        r.delete(bus.heartbeat_key("ghost-host"), "host.ghost-host")


def test_json_both_ways_keeps_bytes_and_engine_types():
    import enum
    import json
    from datetime import UTC, datetime
    from pathlib import Path

    from estiba import ops

    class Colour(enum.Enum):
        RED = "red"

    value = {"b": b"\x00\xff", "t": (1, 2.5, None, True), "p": Path("/x"), "c": Colour.RED,
             "d": datetime(2026, 1, 2, tzinfo=UTC), 3: [{"nested": b"n"}], "s": {"a"}}
    data = ops.to_json(value)
    assert data == {"b": {"__bytes__": "AP8="}, "t": [1, 2.5, None, True], "p": "/x",
                    "c": "red", "d": "2026-01-02T00:00:00+00:00",
                    "3": [{"nested": {"__bytes__": "bg=="}}], "s": ["a"]}
    raw = json.dumps(data).encode()
    assert ops.loads(raw) == ops.from_json(data)
    assert ops.loads(raw)["b"] == b"\x00\xff" and ops.loads(raw)["3"][0]["nested"] == b"n"
    plain = json.dumps({"ok": [{"Id": "x", "Labels": {"a": "b"}}]})
    assert ops.loads(plain) == ops.loads(plain.encode()) == json.loads(plain)


def test_a_queued_task_is_celerys_own_message_without_its_arguments_in_the_headers(web_worker):
    """What ``_send`` pushes decodes as Celery would, and a login's secret stays in the body."""
    import base64
    import json

    from estiba import bus, tasks

    r = bus.client()
    queue = "host.gateway-shape"
    r.set(bus.heartbeat_key("gateway-shape"), 1, ex=30)  # a host nobody serves, alive
    try:
        gateway._send("estiba.call", ["registry.login", ["s3cret-pass"], {}, "reply"],
                      "gateway-shape")
        message = json.loads(r.lpop(queue))
    finally:
        r.delete(queue, bus.heartbeat_key("gateway-shape"))
    headers, props = message["headers"], message["properties"]
    assert headers["task"] == tasks.call.name
    assert headers["id"] == headers["root_id"] == props["correlation_id"]
    assert props["delivery_info"] == {"exchange": "", "routing_key": queue}
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert args == ["registry.login", ["s3cret-pass"], {}, "reply"] and kwargs == {}
    assert "s3cret" not in json.dumps(headers)


@pytest.mark.slow
def test_a_call_may_wait_longer_than_redis_clients_default_socket_timeout(web_worker):
    """redis-py 8 cuts any read after 5 s by default: a ``docker wait`` on a container
    that runs 6 s must still get its exit code, not a Redis timeout."""
    cid = gateway.call("containers.create", {"image": "busybox:latest",
                                             "cmd": ["sh", "-c", "sleep 6; exit 3"],
                                             "network_mode": "none"})["Id"]
    try:
        gateway.call("containers.start", cid)
        assert gateway.call("containers.wait", cid, timeout=60) == 3
    finally:
        gateway.call("containers.remove", cid, force=True)


def test_the_async_call_answers_and_fails_as_the_blocking_one(web_worker, engine):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def both() -> tuple:
        image = await gateway.acall("images.resolve", "busybox:latest")
        with pytest.raises(errors.ImageNotFound) as missing:
            await gateway.acall("images.resolve", "no-such-image:1")
        with pytest.raises(gateway.HostUnavailable, match="no running estiba worker"):
            await gateway.acall("images.list", host="no-such-host")
        return image, str(missing.value)

    # a loop in a thread of its own: the browser tests leave one marked running here
    with ThreadPoolExecutor(1) as pool:
        image, missing = pool.submit(asyncio.run, both()).result()
    assert image["Id"] == engine.images.resolve("busybox:latest").id
    with pytest.raises(errors.ImageNotFound) as local:
        engine.images.resolve("no-such-image:1")
    assert missing == str(local.value)
