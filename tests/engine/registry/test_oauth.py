"""The token spec's OAuth 2 flow: a refresh token (an "identity token") traded by POST.

Once docker holds an identity token for a registry it no longer sends the
password: it POSTs ``grant_type=refresh_token`` to the token service and gets an
access token for the scopes asked. The token service here is a real HTTP server
on loopback (tests/fixtures/services.py) in front of docker-registry.
"""

from __future__ import annotations

import pytest

from engine import Engine
from engine.errors import Unauthorized
from engine.registry.auth import Credentials


def test_push_and_pull_with_an_identity_token(engine: Engine, empty_engine: Engine,
                                              token_registry_server) -> None:
    reg = token_registry_server
    creds = Credentials(identity_token=reg.tokens.refresh_token)
    target = f"{reg.host}/private/oauth:1"
    start = len(reg.tokens.requests)
    digest = engine.registry.push(target, auth=creds, source="busybox")
    img = empty_engine.registry.pull(target, auth=creds)
    assert img.id == engine.images.resolve("busybox").id
    assert img.repo_digests == [f"{reg.host}/private/oauth@{digest}"]
    asked = reg.tokens.requests[start:]
    assert ("oauth:teacher", ["repository:private/oauth:pull,push"]) in asked
    assert ("oauth:teacher", ["repository:private/oauth:pull"]) in asked
    assert all(user == "oauth:teacher" for user, _ in asked)  # never the GET with a password


def test_a_revoked_identity_token_is_refused_without_showing_it(
        engine: Engine, empty_engine: Engine, token_registry_server) -> None:
    reg = token_registry_server
    engine.registry.push(f"{reg.host}/private/oauth:2", auth=Credentials(reg.user, reg.password),
                         source="busybox")
    stale = Credentials(identity_token="n0-longer-valid-token")
    with pytest.raises(Unauthorized, match="the token service refused") as info:
        empty_engine.registry.pull(f"{reg.host}/private/oauth:2", auth=stale)
    assert "n0-longer-valid" not in str(info.value) and "n0-longer-valid" not in repr(stale)
    assert not empty_engine.images.list()
