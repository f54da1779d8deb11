"""Volume pages: list, create, inspect, remove, and which containers use each."""

from __future__ import annotations

import json
import re

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from containers_app.models import Container
from estiba import gateway, permissions
from estiba.projection import drop, upsert_volume
from estiba.web import engine_errors
from volumes_app.models import Volume

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


def users_of(user, host: str, name: str) -> list[Container]:
    """Containers (that the user may see) mounting the volume ``name``."""
    rows = permissions.visible(user, Container.objects.filter(host=host))
    return [c for c in rows
            if any(m.get("Name") == name for m in (c.data or {}).get("Mounts") or [])]


def volume_list(request: HttpRequest) -> HttpResponse:
    volumes = list(permissions.visible(
        request.user, Volume.objects.filter(host=gateway.default_host())).select_related("owner"))
    for v in volumes:
        v.users = users_of(request.user, v.host, v.engine_id)
    return render(request, "volumes/list.html", {"volumes": volumes})


@require_POST
@engine_errors("volumes:list")
def create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()
    if not NAME_RE.match(name):
        messages.error(request, _("A volume name starts with a letter or digit and holds only "
                                  "letters, digits, “_”, “.” and “-”."))
        return redirect("volumes:list")
    data = gateway.call("volumes.create", name)
    row = upsert_volume(gateway.default_host(), data)
    permissions.record_owner(request.user, "volume", row.engine_id)
    messages.success(request, _("Volume %(name)s created.") % {"name": name})
    return redirect("volumes:list")


@engine_errors("volumes:list")
def detail(request: HttpRequest, ref: str) -> HttpResponse:
    row = permissions.get_visible(request.user, "volume", ref)
    return render(request, "volumes/detail.html", {
        "volume": row, "users": users_of(request.user, row.host, row.engine_id),
        "inspect_json": json.dumps(row.data, indent=2, sort_keys=True),
        "may_act": permissions.may_act(request.user, row),
    })


@require_POST
@engine_errors("volumes:list")
def remove(request: HttpRequest, ref: str) -> HttpResponse:
    row = permissions.get_visible(request.user, "volume", ref)
    permissions.check_act(request.user, row, _("remove"))
    gateway.call("volumes.remove", row.engine_id)
    drop(Volume, "volume", row.host, row.engine_id)  # the list shows it gone at once
    messages.success(request, _("Volume %(name)s removed.") % {"name": row})
    return redirect("volumes:list")
