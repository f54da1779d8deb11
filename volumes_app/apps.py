from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class VolumesConfig(AppConfig):
    name = "volumes_app"
    verbose_name = _("Volumes")
