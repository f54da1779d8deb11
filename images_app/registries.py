"""Each user's registry logins: checked against the registry, then used for their pulls.

A login is verified where the pull will run — on the host's worker, with the
engine's registry client (``GET /v2/`` answering the auth challenge) — so a
wrong password is refused when it is entered, not at the next pull. The
password is kept sealed (:mod:`images_app.sealing`).
"""

from __future__ import annotations

from engine.errors import InvalidArgument, Unauthorized
from engine.images import reference as refs
from estiba import gateway
from images_app.models import RegistryLogin
from images_app.sealing import seal, unseal


def registry_of(image_ref: str) -> str:
    """The registry domain an image reference lives on (Docker's defaults applied)."""
    return refs.parse(image_ref).domain


def normalize(registry: str) -> str:
    """A registry as typed (``127.0.0.1:5000``, ``https://host/``) -> its domain."""
    registry = registry.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    if not registry or "/" in registry or " " in registry:
        raise InvalidArgument(f"{registry or '(empty)'!s} is not a registry address "
                              "such as 127.0.0.1:5000")
    return registry_of(f"{registry}/x")


def save_login(user, registry: str, username: str, password: str) -> RegistryLogin:
    """Check the credentials against the registry, then keep them for ``user``."""
    domain = normalize(registry)
    gateway.call("registry.check_login", domain, auth={"username": username, "password": password})
    row, _ = RegistryLogin.objects.update_or_create(
        user=user, registry=domain, defaults={"username": username, "password": seal(password)})
    return row


def credentials_for(user, image_ref: str) -> dict | None:
    """The user's saved login for the registry of ``image_ref``, as the engine's auth."""
    try:
        domain = registry_of(image_ref)
    except InvalidArgument:
        return None
    row = RegistryLogin.objects.filter(user=user, registry=domain).first()
    if row is None:
        return None
    password = unseal(row.password)
    if password is None:
        raise Unauthorized(f"the saved login for {domain} can no longer be read (the server's "
                           "secret key changed): save it again on the Registries page")
    return {"username": row.username, "password": password}
