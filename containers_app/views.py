"""Container pages: thin views over the projection (lists) and the gateway (live truth)."""

from __future__ import annotations

import json
from html import escape
from urllib.parse import quote

from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l
from django.views.decorators.http import require_POST

from containers_app.forms import ContainerForm
from containers_app.models import Container, state_labels
from estiba import gateway, permissions
from estiba.projection import container_message, notify, upsert_container
from estiba.web import back, engine_errors, is_partial
from images_app.models import Image
from networks_app.models import Network

ACTIONS = {
    "start": _l("start"), "stop": _l("stop"), "restart": _l("restart"), "kill": _l("kill"),
    "pause": _l("pause"), "unpause": _l("unpause"), "remove": _l("remove"),
}
STATE_FILTERS = ["all", "running", "exited", "created", "paused"]


def _rows(request: HttpRequest):
    qs = permissions.visible(request.user, Container.objects.filter(host=gateway.default_host()))
    state = request.GET.get("state", "all")
    if state in STATE_FILTERS and state != "all":
        qs = qs.filter(state=state)
    if q := request.GET.get("q", "").strip():
        qs = qs.filter(Q(name__icontains=q) | Q(image__icontains=q) | Q(engine_id__startswith=q))
    return qs


#: The columns a row of the list shows (never ``data``, the engine's whole JSON).
ROW_FIELDS = ("engine_id", "name", "image", "command", "state", "status")


def _table(request: HttpRequest, labels: dict[str, str], is_admin: bool) -> list[SafeString]:
    """The list's rows, each one line of HTML (``<tr>…</tr>``), every value escaped.

    A list of 500 containers must render fast (issue 4): through the template engine
    each row cost a dozen variable lookups, a ``{% url %}``, a ``{% blocktrans %}`` and
    a filter. Here whatever does not change from row to row is done once per request
    (the detail URL around the id, the translated "Select …" and state labels, already
    escaped) and each row is one f-string over the selected columns. The markup is the
    one the live updates rely on (static/js/containers.js and the bench's observer):
    ``tr[data-id][data-state]``, ``[data-field=state]`` with class ``state s-<state>``,
    ``[data-field=status]``, and the ``ids`` checkboxes of the bulk form.
    """
    e = escape
    fields = ROW_FIELDS + (("owner__username",) if is_admin else ())
    before, after = (e(part) for part in
                     reverse("containers:detail", args=["ID"]).rsplit("ID", 1))
    select = _("Select %(name)s")
    shown_labels = {state: e(label) for state, label in labels.items()}
    rows = []
    for engine_id, name, image, command, state, status, *owner in (
            _rows(request).values_list(*fields)):
        cid, short, st = e(engine_id), e(engine_id[:12]), e(state)
        shown = name or engine_id[:12]
        if len(command) > 40:
            command = Truncator(command).chars(40)
        label = shown_labels.get(state) or st
        owner_cell = f"\n  <td>{e(owner[0] or '—')}</td>" if owner else ""
        rows.append(SafeString(
            f'\n<tr data-id="{cid}" data-state="{st}">\n'
            f'  <td><input type="checkbox" name="ids" value="{cid}" '
            f'aria-label="{e(select % {"name": shown})}"></td>\n'
            f'  <td><a href="{before}{e(quote(engine_id, safe=""))}{after}">{e(shown)}</a> '
            f'<code class="dim">{short}</code></td>\n'
            f'  <td><span class="state s-{st}" data-field="state">{label}</span></td>\n'
            f"  <td>{e(image)}</td>\n"
            f"  <td><code>{e(command)}</code></td>\n"
            f'  <td data-field="status">{e(status)}</td>{owner_cell}\n'
            "</tr>"))
    return rows


def container_list(request: HttpRequest) -> HttpResponse:
    is_admin = permissions.is_admin(request.user)
    labels = state_labels()
    context = {
        "rows": _table(request, labels, is_admin),
        "is_admin": is_admin,
    }
    if is_partial(request):
        return render(request, "containers/_rows.html", context)
    context.update({
        "state": request.GET.get("state", "all"),
        "q": request.GET.get("q", ""),
        "state_filters": STATE_FILTERS,
        "state_labels": labels,
    })
    return render(request, "containers/list.html", context)


def _run_action(user, row: Container, action: str) -> None:
    permissions.check_act(user, row, str(ACTIONS[action]))
    if action == "remove":
        gateway.call("containers.remove", row.engine_id, force=True, host=row.host)
    elif action == "stop":
        gateway.call(f"containers.{action}", row.engine_id, timeout=5, host=row.host)
    else:
        gateway.call(f"containers.{action}", row.engine_id, host=row.host)


@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """Start, stop, restart or remove the selected containers.

    Sent in place by containers.js (the rows then change through live events),
    it answers the messages as JSON; a plain form post gets them on the next page.
    """
    notes = _bulk(request.user, request.POST.get("action", ""), request.POST.getlist("ids"))
    if is_partial(request):
        return JsonResponse({"messages": [{"level": level, "text": str(text)}
                                          for level, text in notes]})
    for level, text in notes:
        messages.add_message(request, level, text)
    return back(request, "containers:list")


def _bulk(user, action: str, ids: list[str]) -> list[tuple[int, str]]:
    if action not in ("start", "stop", "restart", "remove"):
        return [(messages.ERROR, _("Choose an action: start, stop, restart or remove."))]
    if not ids:
        return [(messages.WARNING, _("Select at least one container."))]
    notes: list[tuple[int, str]] = []
    done = 0
    for ref in ids:
        try:
            row = permissions.get_visible(user, "container", ref)
            _run_action(user, row, action)
            done += 1
        except gateway.errors.EngineError as exc:
            notes.append((messages.ERROR, f"{ref[:12]}: {exc}"))
    if done:
        notes.append((messages.SUCCESS, _("%(action)s: %(n)d container(s).")
                      % {"action": str(ACTIONS[action]).capitalize(), "n": done}))
    return notes


@engine_errors("containers:list")
def create(request: HttpRequest) -> HttpResponse:
    is_admin = permissions.is_admin(request.user)
    form = ContainerForm(request.POST or None, allow_bind=is_admin,
                         initial={"image": request.GET.get("image", "busybox:latest")})
    if request.method == "POST" and form.is_valid():
        spec = form.spec()
        try:
            permissions.check_container_spec(request.user, spec)
        except (permissions.Refused, gateway.errors.NotFound) as exc:
            form.add_error(None, str(exc))
        else:
            try:
                created = gateway.call("containers.create", spec)
                container_id = created.get("Id") or created.get("ID")
                row = permissions.record_owner(request.user, "container", container_id)
                upsert_container(row.host, created, "create")
                notify(request.user.pk, container_message(row, "create"))
                if form.cleaned_data.get("start"):
                    gateway.call("containers.start", container_id)
                messages.success(request, _("Container %(name)s created.")
                                 % {"name": row.name or row.short_id})
                return redirect("containers:detail", ref=container_id)
            except gateway.errors.EngineError as exc:
                form.add_error(None, str(exc))
    images = permissions.visible(request.user, Image.objects.filter(host=gateway.default_host()))
    networks = permissions.visible(request.user,
                                   Network.objects.filter(host=gateway.default_host()))
    return render(request, "containers/create.html", {
        "form": form,
        "image_tags": sorted({t for i in images for t in (i.tags or [])}),
        # the host's network is for administrators (permissions.check_container_spec)
        "network_names": sorted({"bridge", "none"} | ({"host"} if is_admin else set())
                                | {n.name for n in networks}),
    })


@engine_errors("containers:list")
def detail(request: HttpRequest, ref: str) -> HttpResponse:
    row = permissions.get_visible(request.user, "container", ref)
    inspect = gateway.call("containers.get", row.engine_id, host=row.host)
    return render(request, "containers/detail.html", {
        "c": row,
        "inspect": inspect,
        "inspect_json": json.dumps(inspect, indent=2, sort_keys=True),
        "may_act": permissions.may_act(request.user, row),
        "tab": request.GET.get("tab", "logs"),
        "limits": _limits(inspect),
        "state_labels": state_labels(),
    })


def _limits(inspect: dict) -> dict:
    hc = inspect.get("HostConfig") or {}
    return {"memory": hc.get("Memory") or 0, "pids": hc.get("PidsLimit") or 0,
            "nano_cpus": hc.get("NanoCpus") or 0}


@require_POST
@engine_errors("containers:list")
def action(request: HttpRequest, ref: str, action: str) -> HttpResponse:
    if action not in ACTIONS:
        messages.error(request, _("Unknown action “%(a)s”.") % {"a": action})
        return redirect("containers:list")
    row = permissions.get_visible(request.user, "container", ref)
    _run_action(request.user, row, action)
    if is_partial(request):
        return HttpResponse(status=204)
    label = str(ACTIONS[action]).capitalize()
    messages.success(request, _("%(action)s: %(name)s") % {"action": label, "name": row})
    if action == "remove":
        return redirect("containers:list")
    return back(request, "containers:list")


@engine_errors("containers:list")
def logs_download(request: HttpRequest, ref: str) -> HttpResponse:
    row = permissions.get_visible(request.user, "container", ref)
    entries = gateway.stream("containers.logs", row.engine_id, host=row.host)  # what's there
    body = b"".join(e["data"] if isinstance(e["data"], bytes) else str(e["data"]).encode()
                    for e in entries)
    response = HttpResponse(body, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{row.name or row.short_id}.log"'
    return response


@engine_errors("containers:list")
def top(request: HttpRequest, ref: str) -> HttpResponse:
    row = permissions.get_visible(request.user, "container", ref)
    if not row.running:
        return render(request, "containers/_top.html", {"not_running": True})
    data = gateway.call("containers.top", row.engine_id, host=row.host)
    return render(request, "containers/_top.html", {"top": data})


@engine_errors("containers:list")
def changes(request: HttpRequest, ref: str) -> HttpResponse:
    row = permissions.get_visible(request.user, "container", ref)
    data = gateway.call("containers.changes", row.engine_id, host=row.host) or []
    kinds = {0: _("changed"), 1: _("added"), 2: _("deleted")}
    rows = [{"path": c["Path"], "kind": c["Kind"], "label": kinds.get(c["Kind"], "?")}
            for c in data]
    return render(request, "containers/_changes.html", {"changes": rows})
