"""Image references: ``[registry/]path[:tag][@digest]``, as Docker spells them.

The grammar is the one of the distribution project (``reference/regexp.go``):
a name is slash-separated lowercase components, optionally preceded by a
domain; a tag is ``[\\w][\\w.-]{0,127}``; a digest is ``algorithm:hex``.
Docker adds defaults that every user relies on: a name without a domain lives
on ``docker.io``, a one-component name on Docker Hub lives under ``library/``,
and a reference without tag or digest means ``:latest``. So ``busybox`` is
``docker.io/library/busybox:latest``, while ``127.0.0.1:5000/x`` is its own
registry (the first component is a domain when it holds a ``.`` or a ``:`` or
is ``localhost``). The store keys its index by the fully qualified form and
shows people the short ("familiar") form, like ``docker images`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = ("index.docker.io", "registry-1.docker.io")
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

COMPONENT_RE = re.compile(rf"^{_COMPONENT}$")
DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
TAG_RE = re.compile(rf"^{_TAG}$")
DIGEST_RE = re.compile(rf"^{_DIGEST}$")
SHA256_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    """A parsed, normalized reference. ``tag`` is None only when a digest is given."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Fully qualified repository name: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The short name people type: ``busybox``, ``user/app``, ``127.0.0.1:5000/x``."""
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            return path[len(OFFICIAL_PREFIX):] if path.startswith(OFFICIAL_PREFIX) else path
        return self.name

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else ""
        )

    def familiar(self) -> str:
        """``busybox:latest`` rather than ``docker.io/library/busybox:latest``."""
        return self.familiar_name + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else ""
        )

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    @property
    def tagged(self) -> str:
        """``name:tag`` (the key of the store's index); ``latest`` when no tag was given."""
        return f"{self.name}:{self.tag or DEFAULT_TAG}"

    @property
    def registry(self) -> str:
        """The host:port to talk to (Docker Hub's API lives on registry-1.docker.io)."""
        return "registry-1.docker.io" if self.domain == DEFAULT_DOMAIN else self.domain


def split_domain(name: str) -> tuple[str, str]:
    """Split ``name`` into (domain, path) with Docker's defaults applied."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalize a reference; raise InvalidArgument saying what is wrong.

    With ``default_tag`` a reference with neither tag nor digest gets ``latest``.
    """
    if not isinstance(text, str) or not text:
        raise InvalidArgument("invalid reference format: empty image reference")
    original = text
    digest = None
    if "@" in text:
        text, _, digest = text.partition("@")
        if not DIGEST_RE.match(digest):
            raise InvalidArgument(f"invalid reference format: bad digest in {original!r}")
        if digest.startswith("sha256:") and not SHA256_RE.match(digest):
            raise InvalidArgument(
                f"invalid reference format: sha256 digest must be 64 lowercase hex in {original!r}"
            )
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1:]
        if not TAG_RE.match(tag):
            raise InvalidArgument(f"invalid reference format: bad tag {tag!r} in {original!r}")
    if not text:
        raise InvalidArgument(f"invalid reference format: no repository name in {original!r}")
    if len(text) > NAME_TOTAL_MAX:
        raise InvalidArgument(
            f"invalid reference format: repository name longer than {NAME_TOTAL_MAX} characters"
        )
    domain, path = split_domain(text)
    explicit = domain != DEFAULT_DOMAIN or text.startswith(DEFAULT_DOMAIN + "/")
    if explicit and not DOMAIN_RE.match(domain):
        raise InvalidArgument(f"invalid reference format: bad registry {domain!r}")
    for component in path.split("/"):
        if not COMPONENT_RE.match(component):
            if component.lower() != component and COMPONENT_RE.match(component.lower()):
                raise InvalidArgument(
                    f"invalid reference format: repository name must be lowercase: {original!r}"
                )
            raise InvalidArgument(
                f"invalid reference format: bad name component {component!r} in {original!r}"
            )
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def is_reference(text: str) -> bool:
    try:
        parse(text)
        return True
    except InvalidArgument:
        return False


def familiar(text: str) -> str:
    """The short form of a fully qualified reference string (for display)."""
    return parse(text, default_tag=False).familiar()
