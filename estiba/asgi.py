"""The ASGI entry point daphne serves: HTTP (Django + static files) and websockets.

Websockets go through the session/auth middleware, so every consumer knows the
logged-in user; origins are checked against ALLOWED_HOSTS.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "estiba.settings")

from django.core.asgi import get_asgi_application

django_http = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from estiba.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter({
    # daphne serves static files itself: a classroom machine runs no separate web server.
    "http": ASGIStaticFilesHandler(django_http),
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})
