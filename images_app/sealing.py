"""Registry passwords sealed at rest, so a copy of the database does not hand them out.

The worker needs the password itself on every pull (a registry's token service
asks for it), so it cannot be hashed like a login password: it is encrypted
with Fernet (AES-128 in CBC mode with an HMAC-SHA256, from ``cryptography``)
under a key derived from the server's ``SECRET_KEY`` by HKDF, for this purpose
alone. Whoever holds the secret key and the database can still read them, as
whoever holds ``~/.docker/config.json`` can read the docker CLI's; a database
dump alone cannot. A new secret key makes the saved logins unreadable: they
must be entered again, and the pull says so.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

PURPOSE = b"estiba: registry logins, v1"
#: Every Fernet token starts so (its version byte and a timestamp, in base64).
TOKEN_PREFIX = "gAAAAA"


@lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(
        secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str) -> str:
    return _fernet(settings.SECRET_KEY).encrypt(secret.encode()).decode()


def unseal(token: str) -> str | None:
    """The secret, or None when it was sealed under another secret key (or is not a token)."""
    try:
        return _fernet(settings.SECRET_KEY).decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        return None


def seal_plain_rows(model) -> int:
    """Seal the passwords of rows saved before they were sealed; returns how many."""
    count = 0
    for row in model.objects.exclude(password__startswith=TOKEN_PREFIX):
        row.password = seal(row.password)
        row.save(update_fields=["password"])
        count += 1
    return count
