"""The Django app of the API: only the token model lives in the database."""

from django.apps import AppConfig


class DockerApiConfig(AppConfig):
    name = "dockerapi"
    verbose_name = "Docker-compatible API"
    default_auto_field = "django.db.models.BigAutoField"
