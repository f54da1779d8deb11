"""The projection of each host's images.

An image without owner (the base ``busybox:latest``, or one made outside
estiba) is shared: every user may run it, only admins may remove or tag it.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts_app.models import OwnedObject


class Image(OwnedObject):
    tags = models.JSONField(_("tags"), default=list, blank=True)
    size = models.BigIntegerField(_("size"), default=0)
    layers = models.IntegerField(_("layers"), default=0)
    created = models.DateTimeField(_("created"), null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        unique_together = [("host", "engine_id")]
        verbose_name = _("image")
        verbose_name_plural = _("images")

    def __str__(self) -> str:
        return self.tags[0] if self.tags else self.short_id

    @property
    def short_id(self) -> str:
        return self.engine_id.removeprefix("sha256:")[:12]
