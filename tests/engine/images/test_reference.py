"""Reference parsing follows the distribution grammar and Docker's defaults."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgument
from engine.images.reference import parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "full", "familiar"), [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/debian:bookworm", "docker.io/library/debian:bookworm",
     "debian:bookworm"),
    ("127.0.0.1:5000/x/y:z", "127.0.0.1:5000/x/y:z", "127.0.0.1:5000/x/y:z"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("quay.io/a/b_c-d.e:v1.2-3", "quay.io/a/b_c-d.e:v1.2-3", "quay.io/a/b_c-d.e:v1.2-3"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
    (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
])
def test_normalization(text: str, full: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


def test_parts() -> None:
    ref = parse("127.0.0.1:5000/team/app:v2")
    assert (ref.domain, ref.path, ref.tag, ref.registry) == (
        "127.0.0.1:5000", "team/app", "v2", "127.0.0.1:5000")
    assert parse("busybox").registry == "registry-1.docker.io"
    assert parse("busybox").tagged == "docker.io/library/busybox:latest"


@pytest.mark.parametrize("bad", [
    "", "Busybox", "busy box", "a//b", "-a", "a:", ":tag", "a:-tag", "a@sha256:abc",
    "a@sha256:" + "AB" * 32, "a:" + "t" * 129, "x/" * 200 + "y", "a/b/", "a..b",
])
def test_invalid_references_are_refused_with_a_message(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        parse(bad)


def test_uppercase_says_lowercase() -> None:
    with pytest.raises(InvalidArgument, match="lowercase"):
        parse("MyApp:1")
