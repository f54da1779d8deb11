"""Lifecycle calls by a full ID the API server already knows skip the inspect, not the checks.

``dockerapi.known`` lets start, wait and remove name a container the server
created or inspected by its full ID without asking the host for an inspect
first. These tests hold what must not change with it: a container removed
behind the server's back answers 404 as before, auto-remove still happens, and
another user's container stays invisible to the same calls.
"""

from __future__ import annotations

import time

import docker
import pytest

from tests.web.api.test_tokens import _client, _token, users  # noqa: F401 (fixture)


def test_run_rm_by_full_id(dclient, made):
    """docker-py's ``run --rm``: create, start, wait, remove — all by the full ID."""
    api = dclient.api
    cid = api.create_container("busybox", ["sh", "-c", "exit 4"], name=made.uniq())["Id"]
    api.start(cid)
    assert api.wait(cid)["StatusCode"] == 4
    api.remove_container(cid)
    with pytest.raises(docker.errors.NotFound):
        api.inspect_container(cid)


def test_a_container_removed_behind_the_servers_back_is_404(dclient, made, engine):
    api = dclient.api
    cid = api.create_container("busybox", ["true"], name=made.uniq())["Id"]
    engine.containers.remove(cid, force=True)  # the host's engine, not the API
    for call in (lambda: api.start(cid), lambda: api.wait(cid),
                 lambda: api.remove_container(cid)):
        with pytest.raises(docker.errors.NotFound) as err:
            call()
        assert f"No such container: {cid}" in str(err.value)
    for method in (api.wait, api.remove_container):
        cid = api.create_container("busybox", ["true"], name=made.uniq())["Id"]
        engine.containers.remove(cid, force=True)  # each call the first after the create
        with pytest.raises(docker.errors.NotFound) as err:
            method(cid)
        assert f"No such container: {cid}" in str(err.value)


def test_auto_remove_still_removes(dclient, made):
    api = dclient.api
    cid = api.create_container("busybox", ["true"], name=made.uniq(),
                               host_config=api.create_host_config(auto_remove=True))["Id"]
    assert api.inspect_container(cid)["HostConfig"]["AutoRemove"] is True
    api.start(cid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            api.inspect_container(cid)
        except docker.errors.NotFound:
            return
        time.sleep(0.1)
    pytest.fail("the auto-remove container was not removed")


def test_another_users_container_by_full_id_stays_hidden(api_server, users, made):  # noqa: F811
    alice = _client(api_server, _token(api_server, "alice", users["alice"]))
    bob = _client(api_server, _token(api_server, "bob", users["bob"]))
    name = made.uniq()
    cid = alice.api.create_container("busybox", ["sleep", "60"], name=name)["Id"]
    try:
        for call in (lambda: bob.api.start(cid), lambda: bob.api.wait(cid),
                     lambda: bob.api.stop(cid), lambda: bob.api.remove_container(cid)):
            with pytest.raises(docker.errors.NotFound) as err:
                call()
            assert f"No such container: {name}" in str(err.value)
        assert alice.api.inspect_container(cid)["State"]["Status"] == "created"
        alice.api.start(cid)  # the owner still may
        alice.api.remove_container(cid, force=True)
    finally:
        alice.close()
        bob.close()


def test_wait_answers_a_stopped_container_at_once_and_streams_for_a_running_one(dclient, made):
    """The docker CLI waits for wait's headers before it starts a container: a running
    one gets them at once and its status when it stops; a stopped one, one plain answer."""
    api = dclient.api
    done = api.create_container("busybox", ["sh", "-c", "exit 3"], name=made.uniq())["Id"]
    api.start(done)
    assert api.wait(done)["StatusCode"] == 3
    resp = api._post(api._url("/containers/{0}/wait", done))
    assert resp.status_code == 200 and resp.headers.get("Content-Length")
    assert resp.json() == {"StatusCode": 3, "Error": None}
    running = api.create_container("busybox", ["sh", "-c", "sleep 1; exit 5"],
                                   name=made.uniq())["Id"]
    api.start(running)
    resp = api._post(api._url("/containers/{0}/wait", running), timeout=30)
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    assert resp.json() == {"StatusCode": 5, "Error": None}
