"""Network pages: list, create, inspect, remove, and which containers are attached."""

from __future__ import annotations

import ipaddress
import json
import re

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from containers_app.models import Container
from estiba import gateway, permissions
from estiba.projection import drop, upsert_network
from estiba.web import engine_errors
from networks_app.models import Network

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")


def users_of(user, host: str, name: str) -> list[Container]:
    rows = permissions.visible(user, Container.objects.filter(host=host))
    return [c for c in rows
            if name in (((c.data or {}).get("NetworkSettings") or {}).get("Networks") or {})]


def network_list(request: HttpRequest) -> HttpResponse:
    networks = list(permissions.visible(
        request.user, Network.objects.filter(host=gateway.default_host())).select_related("owner"))
    for n in networks:
        n.users = users_of(request.user, n.host, n.name)
    return render(request, "networks/list.html", {"networks": networks})


@require_POST
@engine_errors("networks:list")
def create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()
    subnet = request.POST.get("subnet", "").strip()
    if not NAME_RE.match(name):
        messages.error(request, _("A network name starts with a letter or digit and holds only "
                                  "letters, digits, “_”, “.” and “-”."))
        return redirect("networks:list")
    kwargs = {}
    if subnet:
        try:
            kwargs["subnet"] = str(ipaddress.ip_network(subnet, strict=True))
        except ValueError:
            messages.error(request, _("“%(s)s” is not a subnet; write it as 10.20.0.0/24")
                           % {"s": subnet})
            return redirect("networks:list")
    data = gateway.call("networks.create", name, **kwargs)
    row = upsert_network(gateway.default_host(), data)
    permissions.record_owner(request.user, "network", row.engine_id)
    messages.success(request, _("Network %(name)s created.") % {"name": name})
    return redirect("networks:list")


@engine_errors("networks:list")
def detail(request: HttpRequest, ref: str) -> HttpResponse:
    row = permissions.get_visible(request.user, "network", ref)
    return render(request, "networks/detail.html", {
        "network": row, "users": users_of(request.user, row.host, row.name),
        "inspect_json": json.dumps(row.data, indent=2, sort_keys=True),
        "may_act": permissions.may_act(request.user, row),
    })


@require_POST
@engine_errors("networks:list")
def remove(request: HttpRequest, ref: str) -> HttpResponse:
    row = permissions.get_visible(request.user, "network", ref)
    permissions.check_act(request.user, row, _("remove"))
    gateway.call("networks.remove", row.engine_id)
    drop(Network, "network", row.host, row.engine_id)  # the list shows it gone at once
    messages.success(request, _("Network %(name)s removed.") % {"name": row})
    return redirect("networks:list")
