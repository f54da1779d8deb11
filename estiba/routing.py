"""Websocket URLs: the event feed and each app's live views."""

from __future__ import annotations

import importlib.util

from django.urls import path

from containers_app import consumers as containers
from estiba import consumers
from images_app import consumers as images

websocket_urlpatterns = [
    path("ws/events/", consumers.EventsConsumer.as_asgi()),
    path("ws/containers/<str:ref>/logs/", containers.LogsConsumer.as_asgi()),
    path("ws/containers/<str:ref>/stats/", containers.StatsConsumer.as_asgi()),
    path("ws/containers/<str:ref>/terminal/", containers.TerminalConsumer.as_asgi()),
    path("ws/images/pull/", images.PullConsumer.as_asgi()),
    path("ws/images/push/", images.PushConsumer.as_asgi()),
    path("ws/images/build/<str:token>/", images.BuildConsumer.as_asgi()),
]

# --- other apps add their websockets here (lessons_app: lessons_app/routing.py) ----------
for _module in ("lessons_app.routing",):
    if importlib.util.find_spec(_module.split(".")[0]) and importlib.util.find_spec(_module):
        websocket_urlpatterns += importlib.import_module(_module).websocket_urlpatterns
