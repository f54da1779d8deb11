"""Ownership: who made each engine object.

The engine knows nothing of users (ARCHITECTURE.md, rule 2); the database
does. Each projected engine object (container, image, volume, network) has an
``owner`` — the user who made it through estiba — or none when it was made
outside estiba (then only admins act on it). ``OwnedObject`` is the shared
shape of those projection rows: which host, which engine id, who owns it, and
the engine's last JSON for it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class OwnedObject(models.Model):
    host = models.CharField(_("host"), max_length=253, db_index=True)
    engine_id = models.CharField(_("engine id"), max_length=255)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", verbose_name=_("owner"),
    )
    data = models.JSONField(_("engine data"), default=dict, blank=True)
    updated = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        abstract = True
