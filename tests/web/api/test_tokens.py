"""TCP access with per-user tokens, and the dashboard's ownership rules on the API."""

from __future__ import annotations

import subprocess
import sys

import docker
import pytest
import requests

from tests.web.api.conftest import REPO

USERS = """
from django.contrib.auth import get_user_model
U = get_user_model()
for name in ("alice", "bob"):
    if not U.objects.filter(username=name).exists():
        U.objects.create_user(name, password=name + "-pw-123")
"""


@pytest.fixture(scope="module")
def users(api_server):
    subprocess.run([sys.executable, "manage.py", "shell", "-c", USERS], cwd=REPO,
                   env=api_server.env, check=True, capture_output=True, timeout=60)
    return {"alice": "alice-pw-123", "bob": "bob-pw-123"}


def _token(api_server, user: str, password: str) -> str:
    r = requests.post(f"http://127.0.0.1:{api_server.tcp_port}/estiba/login",
                      json={"username": user, "password": password}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["Token"]


def _client(api_server, token: str) -> docker.DockerClient:
    client = docker.DockerClient(base_url=api_server.tcp_url, version="1.41", timeout=60)
    client.api.headers["Authorization"] = f"Bearer {token}"
    return client


def test_tcp_needs_a_token(api_server, users):
    base = f"http://127.0.0.1:{api_server.tcp_port}"
    assert requests.get(f"{base}/_ping", timeout=5).text == "OK"
    r = requests.get(f"{base}/v1.41/containers/json", timeout=5)
    assert r.status_code == 401 and "estiba login" in r.json()["message"]
    r = requests.get(f"{base}/containers/json", headers={"Authorization": "Bearer nope"},
                     timeout=5)
    assert r.status_code == 401
    r = requests.post(f"{base}/estiba/login", json={"username": "alice", "password": "bad"},
                      timeout=5)
    assert r.status_code == 401 and "alice" in r.json()["message"]


def test_users_see_only_their_containers(api_server, users, dclient, made):
    alice = _client(api_server, _token(api_server, "alice", users["alice"]))
    bob = _client(api_server, _token(api_server, "bob", users["bob"]))
    name = made.uniq()
    c = alice.containers.run("busybox", ["sleep", "60"], name=name, detach=True)
    assert name in [x.name for x in alice.containers.list()]
    assert name not in [x.name for x in bob.containers.list(all=True)]
    with pytest.raises(docker.errors.NotFound):
        bob.containers.get(name)
    with pytest.raises(docker.errors.NotFound):
        bob.api.stop(name)
    assert name in [x.name for x in dclient.containers.list()]  # root on the socket: admin
    assert alice.images.get("busybox")  # unowned images are shared
    c.remove(force=True)


def test_only_an_administrator_makes_the_server_fetch_a_url(api_server, users):
    """``docker import URL`` has the server fetch it: a user could aim it at loopback."""
    alice = _client(api_server, _token(api_server, "alice", users["alice"]))
    try:
        with pytest.raises(docker.errors.APIError) as err:
            alice.api.import_image_from_url("http://127.0.0.1:6379/", repository="stolen")
        assert err.value.response.status_code == 403
        assert "only an administrator may import from a URL" in str(err.value)
    finally:
        alice.close()


def test_a_users_build_may_not_add_from_this_hosts_urls(api_server, users):
    """``ADD <url>`` is fetched from the host's network: not to loopback for a user."""
    import io

    alice = _client(api_server, _token(api_server, "alice", users["alice"]))
    try:
        dockerfile = io.BytesIO(b"FROM busybox\nADD http://127.0.0.1:9/secret /secret\n")
        items = list(alice.api.build(fileobj=dockerfile, decode=True, rm=True))
        errors = [i.get("error", "") for i in items if "error" in i]
        assert errors and "only an administrator's build may fetch from there" in errors[-1]
    finally:
        alice.close()


def test_what_hands_out_the_host_is_for_administrators(api_server, users, dclient, made,
                                                       tmp_path):
    """Root runs the engine: a bind of /, --privileged, an added capability or the host's
    network would make any user root on the host, so a user's token is refused them."""
    alice = _client(api_server, _token(api_server, "alice", users["alice"]))
    bob = _client(api_server, _token(api_server, "bob", users["bob"]))
    vol = made.uniq("v")
    try:
        asks = [
            ({"volumes": {"/": {"bind": "/host", "mode": "rw"}}},
             "Only an administrator may mount a directory of the host (/)"),
            ({"privileged": True}, "Only an administrator may run a privileged container"),
            ({"cap_add": ["SYS_ADMIN"]}, "Only an administrator may add capabilities"),
            ({"network_mode": "host"}, "Only an administrator may give a container the host's"),
        ]
        for kwargs, says in asks:
            with pytest.raises(docker.errors.APIError) as err:
                alice.containers.create("busybox", ["true"], **kwargs)
            assert err.value.response.status_code == 403 and says in str(err.value), kwargs
        # a user's own volume is theirs alone; dropping capabilities is anyone's right
        alice.volumes.create(vol)
        with pytest.raises(docker.errors.APIError) as err:
            bob.containers.create("busybox", ["true"], volumes={vol: {"bind": "/d"}})
        assert err.value.response.status_code == 403 and vol in str(err.value)
        name = made.uniq()
        out = alice.containers.run("busybox", ["sh", "-c", "grep CapEff /proc/self/status"],
                                   name=name, cap_drop=["ALL"], volumes={vol: {"bind": "/d"}})
        assert out.split() == [b"CapEff:", b"0000000000000000"]
        # the socket's root is an administrator: it may do all of the above
        out = dclient.containers.run("busybox", ["ls", "/host/etc/hostname"], remove=True,
                                     volumes={"/": {"bind": "/host", "mode": "ro"}},
                                     cap_add=["NET_ADMIN"])
        assert out == b"/host/etc/hostname\n"
    finally:
        alice.close()
        bob.close()
