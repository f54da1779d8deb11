"""URLs: the dashboard's pages, login, admin, language switch — and the other apps' spots."""

from __future__ import annotations

import importlib.util

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="containers:list", permanent=False), name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("containers/", include("containers_app.urls")),
    path("images/", include("images_app.urls")),
    path("volumes/", include("volumes_app.urls")),
    path("networks/", include("networks_app.urls")),
    path("hosts/", include("hosts_app.urls")),
]

# --- other apps plug in here when importable -------------------------------------------------
# lessons_app: its pages under /lessons/ (lessons_app/urls.py, app_name = "lessons").
if importlib.util.find_spec("lessons_app") and importlib.util.find_spec("lessons_app.urls"):
    urlpatterns.append(path("lessons/", include("lessons_app.urls")))
# dockerapi: the Docker-compatible REST API (/v1.41/..., /_ping, /estiba/...) at the root.
if importlib.util.find_spec("dockerapi") and importlib.util.find_spec("dockerapi.urls"):
    urlpatterns.append(path("", include("dockerapi.urls")))
