from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LessonsConfig(AppConfig):
    name = "lessons_app"
    verbose_name = _("Lessons")

    def ready(self) -> None:
        # Registers the "lessons.call" / "lessons.stream" Celery tasks in every
        # process that sets Django up, the host's worker included.
        from lessons_app import tasks  # noqa: F401
