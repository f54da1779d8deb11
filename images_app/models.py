"""The projection of each host's images.

An image without owner (the base ``busybox:latest``, or one made outside
estiba) is shared: every user may run it, only admins may remove or tag it.
"""

from __future__ import annotations

from django.conf import settings
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


class RegistryLogin(models.Model):
    """A user's credentials for one registry, used for that user's pulls only.

    Like the docker CLI's ``~/.docker/config.json``, the password is kept so it
    can be sent on each pull; it is never shown again, never logged, never used
    for anyone else, and stored sealed (:mod:`images_app.sealing`).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="registry_logins", verbose_name=_("user"))
    registry = models.CharField(_("registry"), max_length=255)
    username = models.CharField(_("user name"), max_length=255)
    password = models.CharField(_("password"), max_length=2048)  # sealed: longer than typed
    updated = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["registry"]
        unique_together = [("user", "registry")]
        verbose_name = _("registry login")
        verbose_name_plural = _("registry logins")

    def __str__(self) -> str:
        return f"{self.username}@{self.registry}"
