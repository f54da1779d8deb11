"""The projection of the engine's containers, kept current by events and reconcile."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts_app.models import OwnedObject

STATES = ["created", "running", "paused", "restarting", "exited", "dead", "removing"]
#: What a state is called on a page (Docker's word in English). Translate them once per
#: request with ``state_labels()``, never once per row.
STATE_LABELS = {
    "created": _("created"), "running": _("running"), "paused": _("paused"),
    "restarting": _("restarting"), "exited": _("exited"), "dead": _("dead"),
    "removing": _("removing"), "removed": _("removed"),
}


def state_labels() -> dict[str, str]:
    """Each state's label in the request's language (an unknown state shows as itself)."""
    return {state: str(label) for state, label in STATE_LABELS.items()}


class Container(OwnedObject):
    name = models.CharField(_("name"), max_length=255, blank=True, db_index=True)
    image = models.CharField(_("image"), max_length=512, blank=True)
    command = models.TextField(_("command"), blank=True)
    state = models.CharField(_("state"), max_length=20, default="created", db_index=True)
    status = models.CharField(_("status"), max_length=255, blank=True)
    created = models.DateTimeField(_("created"), null=True, blank=True)

    class Meta:
        ordering = ["-created", "name"]
        unique_together = [("host", "engine_id")]
        verbose_name = _("container")
        verbose_name_plural = _("containers")

    def __str__(self) -> str:
        return self.name or self.engine_id[:12]

    @property
    def short_id(self) -> str:
        return self.engine_id[:12]

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused", "restarting")
