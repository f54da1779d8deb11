"""Bearer tokens (the Docker Hub flow) against docker-registry's ``auth: token``.

The token service is a real HTTP server on loopback (tests/fixtures/services.py)
signing RS256 JWTs that docker-registry verifies against its certificate.
"""

from __future__ import annotations

import time

import pytest

from engine import Engine
from engine.errors import ImageNotFound, RegistryError, Unauthorized
from engine.registry.auth import Credentials


def _creds(reg) -> Credentials:
    return Credentials(reg.user, reg.password)


def test_bearer_push_then_pull_with_credentials(engine: Engine, empty_engine: Engine,
                                                token_registry_server) -> None:
    reg = token_registry_server
    target = f"{reg.host}/private/bearer:1"
    start = len(reg.tokens.requests)
    lines: list[dict] = []
    digest = engine.registry.push(target, auth=_creds(reg), source="busybox",
                                  progress=lines.append)
    asked = reg.tokens.requests[start:]
    assert ("teacher", ["repository:private/bearer:pull,push"]) in asked
    assert all(user == "teacher" for user, _ in asked)

    img = empty_engine.registry.pull(target, auth=_creds(reg))
    assert img.id == engine.images.resolve("busybox").id
    assert img.repo_digests == [f"{reg.host}/private/bearer@{digest}"]
    assert ("teacher", ["repository:private/bearer:pull"]) in reg.tokens.requests[start:]

    assert empty_engine.registry.check_login(reg.host, _creds(reg)) == reg.host


def test_anonymous_is_refused_with_a_clear_unauthorized(engine: Engine, empty_engine: Engine,
                                                        token_registry_server) -> None:
    reg = token_registry_server
    target = f"{reg.host}/private/anon:1"
    engine.registry.push(target, auth=_creds(reg), source="busybox")
    start = len(reg.tokens.requests)
    with pytest.raises(Unauthorized, match="authentication required") as info:
        empty_engine.registry.pull(target)
    assert "repository:private/anon:pull" in str(info.value)
    assert (None, ["repository:private/anon:pull"]) in reg.tokens.requests[start:]
    assert not empty_engine.images.list()
    with pytest.raises(Unauthorized, match="authentication required"):
        engine.registry.push(f"{reg.host}/private/anon:2", source="busybox")


def test_the_password_never_appears_in_errors_or_progress(engine: Engine, empty_engine: Engine,
                                                          token_registry_server) -> None:
    reg = token_registry_server
    wrong = Credentials(reg.user, "wr0ng-pa55word")
    seen: list[str] = []
    for call in (lambda: engine.registry.push(f"{reg.host}/private/pw:1", auth=wrong,
                                              source="busybox", progress=seen.append),
                 lambda: empty_engine.registry.pull(f"{reg.host}/private/pw:1", auth=wrong,
                                                    progress=seen.append),
                 lambda: empty_engine.registry.check_login(reg.host, wrong)):
        with pytest.raises(Unauthorized, match="token service refused user 'teacher'") as info:
            call()
        seen.append(str(info.value))
        seen.append(repr(info.value))
    # The right password, with an error of another kind: still not in the message.
    with pytest.raises(ImageNotFound) as info:
        empty_engine.registry.pull(f"{reg.host}/private/pw:missing", auth=_creds(reg),
                                   progress=seen.append)
    seen.append(str(info.value))
    text = "\n".join(map(str, seen))
    assert "wr0ng-pa55word" not in text and reg.password not in text
    assert "teacher" in text


def test_a_token_is_reused_within_its_lifetime(engine: Engine, empty_engine: Engine,
                                               token_registry_server) -> None:
    reg = token_registry_server
    target = f"{reg.host}/private/reuse:1"
    engine.registry.push(target, auth=_creds(reg), source="busybox")
    pull_scope = ("teacher", ["repository:private/reuse:pull"])

    start = len(reg.tokens.requests)
    empty_engine.registry.pull(target, auth=_creds(reg))   # manifest, config, layer: 1 token
    empty_engine.registry.pull(target, auth=_creds(reg))   # manifest again: same token
    assert reg.tokens.requests[start:] == [pull_scope]

    # A token the service says lives 2 s is not sent after that: a fresh one is asked for.
    reg.tokens.lifetime = 2
    pull_scope = ("teacher", ["repository:private/short-lived:pull"])
    try:
        other = f"{reg.host}/private/short-lived:1"
        engine.registry.push(other, auth=_creds(reg), source="busybox")
        empty_engine.registry.pull(other, auth=_creds(reg))
        count = reg.tokens.requests.count(pull_scope)
        empty_engine.registry.pull(other, auth=_creds(reg))
        assert reg.tokens.requests.count(pull_scope) == count     # still alive: reused
        time.sleep(2.1)
        empty_engine.registry.pull(other, auth=_creds(reg))
        assert reg.tokens.requests.count(pull_scope) == count + 1
    finally:
        reg.tokens.lifetime = 300


def test_plain_http_token_realm_is_refused_for_a_secure_registry() -> None:
    from engine.registry.auth import Challenge
    from engine.registry.transport import RegistrySession

    s = RegistrySession("registry.example", insecure=False,
                        credentials=Credentials("u", "p4ss"))
    with pytest.raises(RegistryError, match="plain-HTTP token service") as info:
        s._fetch_token(Challenge("bearer", {"realm": "http://auth.example/token"}),
                       "repository:x:pull", "pull")
    assert "p4ss" not in str(info.value)


def test_an_upload_refused_for_want_of_a_token_is_sent_again_whole(
        token_registry_server) -> None:
    """The first PUT carries no token (401); the body is rewound and sent whole again."""
    import hashlib
    import io
    import os
    from urllib.parse import urlencode

    from engine.registry.push import _UploadBody
    from engine.registry.transport import RegistrySession

    reg = token_registry_server
    scope = "repository:private/rewind:pull,push"
    first = RegistrySession(reg.host, insecure=True, credentials=_creds(reg))
    r = first.request("POST", "/v2/private/rewind/blobs/uploads/", scope=scope,
                      what="upload start", ok=(202,), headers={"Content-Length": "0"})
    r.close()
    data = os.urandom(100_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    location = r.headers["Location"] + "&" + urlencode({"digest": digest})

    second = RegistrySession(reg.host, insecure=True, credentials=_creds(reg))
    sent: list[int] = []
    r = second.request("PUT", location, scope=scope, what="upload", ok=(201,),
                       data=_UploadBody(io.BytesIO(data), len(data), sent.append),
                       headers={"Content-Type": "application/octet-stream",
                                "Content-Length": str(len(data))})
    r.close()
    assert r.headers["Docker-Content-Digest"] == digest
    # Sent twice from the start: refused (no token yet), then whole with the token.
    assert sent.count(len(data)) == 2 and sent[-1] == len(data)
    assert sent.index(len(data)) < len(sent) - 1 and sent[sent.index(len(data)) + 1] < len(data)
    r = first.request("GET", f"/v2/private/rewind/blobs/{digest}", scope=scope, what="get")
    assert r.content == data


def test_cross_repository_mount_asks_one_token_for_both_scopes(
        engine: Engine, token_registry_server, scratch) -> None:
    from tests.engine.registry.conftest import random_image

    reg = token_registry_server
    img = random_image(engine, "estiba-test/mount:1", [50_000], scratch)
    try:
        engine.registry.push(f"{reg.host}/private/mount-a:1", auth=_creds(reg), source=img.id)
        start = len(reg.tokens.requests)
        lines: list[dict] = []
        engine.registry.push(f"{reg.host}/private/mount-b:1", auth=_creds(reg), source=img.id,
                             progress=lines.append)
        assert "Mounted from private/mount-a" in [line.get("status") for line in lines]
        assert ("teacher", ["repository:private/mount-b:pull,push",
                            "repository:private/mount-a:pull"]) in reg.tokens.requests[start:]
    finally:
        engine.images.remove(img.id, force=True)
