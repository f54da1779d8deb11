"""Basic auth against docker-registry with an htpasswd file; credentials never leak."""

from __future__ import annotations

import pytest

from engine import Engine
from engine.errors import Unauthorized
from engine.registry.auth import Credentials, parse_challenges


def test_anonymous_push_is_refused(engine: Engine, auth_registry_server) -> None:
    with pytest.raises(Unauthorized, match="authentication required"):
        engine.registry.push(f"{auth_registry_server.host}/private/bb:1", source="busybox")


def test_wrong_password_is_refused_and_not_repeated_in_the_message(
        engine: Engine, auth_registry_server) -> None:
    bad = Credentials(auth_registry_server.user, "not-the-password")
    with pytest.raises(Unauthorized) as info:
        engine.registry.push(f"{auth_registry_server.host}/private/bb:1", auth=bad,
                             source="busybox")
    assert "not-the-password" not in str(info.value)
    assert "teacher" in str(info.value)
    with pytest.raises(Unauthorized):
        engine.registry.login(auth_registry_server.host, bad)


def test_basic_auth_push_and_pull(engine: Engine, empty_engine: Engine,
                                  auth_registry_server) -> None:
    creds = Credentials(auth_registry_server.user, auth_registry_server.password)
    target = f"{auth_registry_server.host}/private/bb:1"
    digest = engine.registry.push(target, auth=creds, source="busybox")

    with pytest.raises(Unauthorized):
        empty_engine.registry.pull(target)
    assert not empty_engine.images.list()

    empty_engine.registry.login(auth_registry_server.host, creds)
    img = empty_engine.registry.pull(target)
    assert img.id == engine.images.resolve("busybox").id
    assert img.repo_digests == [f"{auth_registry_server.host}/private/bb@{digest}"]


def test_check_login_verifies_without_remembering(engine: Engine, empty_engine: Engine,
                                                auth_registry_server) -> None:
    """What a shared worker does for each dashboard user: nothing is kept for the next."""
    creds = Credentials(auth_registry_server.user, auth_registry_server.password)
    target = f"{auth_registry_server.host}/private/kept:1"
    engine.registry.push(target, auth=creds, source="busybox")
    with pytest.raises(Unauthorized):
        empty_engine.registry.check_login(auth_registry_server.host,
                                          Credentials(auth_registry_server.user, "wrong"))
    assert empty_engine.registry.check_login(auth_registry_server.host, creds) == \
        auth_registry_server.host
    with pytest.raises(Unauthorized):
        empty_engine.registry.pull(target)  # the next caller, without credentials
    assert empty_engine.registry.pull(target, auth=creds).repo_tags == [target]


def test_credentials_repr_hides_the_password() -> None:
    creds = Credentials("alice", "hunter2")
    assert "hunter2" not in repr(creds) and "hunter2" not in str(creds)


def test_bearer_challenge_parsing() -> None:
    [c] = parse_challenges('Bearer realm="https://auth.example/token",service="reg",'
                           'scope="repository:library/busybox:pull"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example/token", "service": "reg",
                        "scope": "repository:library/busybox:pull"}
    basic, bearer = parse_challenges('Basic realm="r", Bearer realm="https://t/x",service="s"')
    assert (basic.scheme, basic.realm, bearer.realm) == ("basic", "r", "https://t/x")
