"""API tokens: ``estiba login`` trades a password for one; TCP callers send it.

Only a hash of the token is stored, so a leaked database does not leak access.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    key_hash = models.CharField(max_length=64, unique=True)
    label = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.label or self.key_hash[:8]})"

    @classmethod
    def issue(cls, user, label: str = "") -> str:
        """Make a new token for ``user`` and return it (shown once, stored hashed)."""
        import secrets

        from dockerapi.policy import token_hash

        token = "est_" + secrets.token_urlsafe(32)
        cls.objects.create(user=user, key_hash=token_hash(token), label=label[:100])
        return token
