"""The hosts page: each worker's heartbeat, versions, cgroup version, running containers."""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from containers_app.models import Container
from estiba import permissions
from hosts_app.models import Host


def host_list(request: HttpRequest) -> HttpResponse:
    visible = permissions.visible(request.user, Container.objects.all())
    counts = dict(visible.values("host").annotate(n=Count("id", filter=Q(state="running")))
                  .values_list("host", "n"))
    hosts = list(Host.objects.all())
    for h in hosts:
        h.running = counts.get(h.name, 0)
    return render(request, "hosts/list.html", {"hosts": hosts})
