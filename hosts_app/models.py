"""A host: a Linux machine whose worker runs the engine, seen through its heartbeat."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Host(models.Model):
    name = models.CharField(_("name"), max_length=253, unique=True)
    last_seen = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    info = models.JSONField(_("engine facts"), default=dict, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("host")
        verbose_name_plural = _("hosts")

    def __str__(self) -> str:
        return self.name

    @property
    def online(self) -> bool:
        if self.last_seen is None:
            return False
        limit = timedelta(seconds=settings.ESTIBA_HEARTBEAT_TIMEOUT)
        return timezone.now() - self.last_seen < limit

    @property
    def seconds_since_seen(self) -> int | None:
        """Whole seconds since the last heartbeat (heartbeats come every few seconds)."""
        if self.last_seen is None:
            return None
        return max(0, int((timezone.now() - self.last_seen).total_seconds()))
