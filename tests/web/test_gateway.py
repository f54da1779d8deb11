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


def test_a_host_without_worker_fails_at_once(web_worker):
    with pytest.raises(gateway.HostUnavailable, match="no running estiba worker"):
        gateway.call("images.list", host="no-such-host")


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
