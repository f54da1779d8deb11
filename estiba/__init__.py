"""estiba's Django project package: settings, URLs, ASGI, the Celery app and the gateway.

The Celery app is imported here so that ``@shared_task`` in the apps binds to it.
"""

from estiba.celery import app as celery_app

__all__ = ["celery_app"]
