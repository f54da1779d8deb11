"""The projection of each host's named volumes (engine_id is the volume's name)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts_app.models import OwnedObject


class Volume(OwnedObject):
    driver = models.CharField(_("driver"), max_length=64, default="local")
    mountpoint = models.CharField(_("mount point"), max_length=1024, blank=True)
    created = models.DateTimeField(_("created"), null=True, blank=True)

    class Meta:
        ordering = ["engine_id"]
        unique_together = [("host", "engine_id")]
        verbose_name = _("volume")
        verbose_name_plural = _("volumes")

    def __str__(self) -> str:
        return self.engine_id

    @property
    def name(self) -> str:
        return self.engine_id
