"""Registry authentication: anonymous, basic, and bearer tokens from a challenge.

A registry says how it wants to be spoken to in the ``WWW-Authenticate``
header of a 401 answer (the Docker Hub flow, RFC 6750 syntax):

* ``Basic realm="..."`` — send the user name and password on every request;
* ``Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"``
  — ask the *realm* for a short-lived token for that scope (with the
  credentials as basic auth, or anonymously), then send ``Authorization:
  Bearer <token>``.

Credentials are secrets: their ``repr`` hides the password and no message or
event built here ever contains it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or an identity token) for one registry."""

    username: str = ""
    password: str = field(default="", repr=False)
    #: An OAuth refresh token some registries hand out instead of a password.
    identity_token: str = field(default="", repr=False)

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token)

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"Credentials(username={self.username!r}, password=***)"


_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    scheme: str                      # "basic" or "bearer" (lowercase)
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header (possibly several challenges)."""
    out: list[Challenge] = []
    if not header:
        return out
    # Split on scheme names: a token followed by a space, at the start or after a comma.
    parts = re.split(r"(?:^|,)\s*(?=[A-Za-z][\w-]*\s+\w+\s*=)", header.strip())
    for part in parts:
        part = part.strip().strip(",")
        if not part:
            continue
        scheme, _, rest = part.partition(" ")
        params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
                  .replace('\\"', '"') for m in _PARAM_RE.finditer(rest)}
        out.append(Challenge(scheme.lower(), params))
    return out
