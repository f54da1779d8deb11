from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ContainersConfig(AppConfig):
    name = "containers_app"
    verbose_name = _("Containers")
