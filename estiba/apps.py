from django.apps import AppConfig


class EstibaConfig(AppConfig):
    """The project package is also an app: management commands and shared templates."""

    name = "estiba"
    verbose_name = "estiba"
