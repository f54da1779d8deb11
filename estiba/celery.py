"""The Celery app: one queue per host, a thread pool, JSON only.

Every change to an engine object is a task routed to ``host.<hostname>``, the
queue that host's worker (root, on that host) consumes. The worker runs a
thread pool (``-P threads``) because some tasks live long — a followed log, a
terminal session, a pull — and must not starve the short ones. Its start-up
also starts the event publisher and the reconcile loop (``estiba.worker``).

Run a worker::

    celery -A estiba worker -P threads -c 32 -Q host.$(hostname) -n estiba@$(hostname)
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "estiba.settings")

app = Celery("estiba")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["estiba"], related_name="tasks")


def host_queue(host: str) -> str:
    """The queue a host's worker consumes."""
    return f"host.{host}"


@worker_ready.connect
def _start_worker_threads(**_kwargs) -> None:
    from estiba.worker import start_background

    start_background()


@worker_shutdown.connect
def _stop_worker_threads(**_kwargs) -> None:
    from estiba.worker import stop_background

    stop_background()
