"""The projection of each host's networks (bridges estiba made, plus host and none)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts_app.models import OwnedObject


class Network(OwnedObject):
    name = models.CharField(_("name"), max_length=255, db_index=True)
    driver = models.CharField(_("driver"), max_length=64, default="bridge")
    subnet = models.CharField(_("subnet"), max_length=64, blank=True)

    class Meta:
        ordering = ["name"]
        unique_together = [("host", "engine_id")]
        verbose_name = _("network")
        verbose_name_plural = _("networks")

    def __str__(self) -> str:
        return self.name
