"""Lesson pages: thin views; the figures come from the host's worker (lessons_app.ops)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from containers_app.models import Container
from engine import errors
from estiba import gateway, permissions
from images_app.models import Image
from lessons_app import remote
from lessons_app.content import BY_SLUG, LESSONS
from lessons_app.samples import SAMPLE_DOCKERFILES

#: Which operation fills each lesson's page, and with what it is called.
PAGE_OPS = {"layers": "layers", "union": "overlay", "namespaces": "namespaces",
            "cgroups": "cgroups"}


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "lessons/index.html", {"lessons": LESSONS})


def _running_containers(request: HttpRequest):
    rows = permissions.visible(request.user, Container.objects.filter(host=gateway.default_host()))
    return rows.filter(state="running").order_by("name")


def _images(request: HttpRequest):
    return permissions.visible(request.user, Image.objects.filter(host=gateway.default_host()))


def lesson(request: HttpRequest, slug: str) -> HttpResponse:
    info = BY_SLUG.get(slug)
    if info is None:
        raise Http404(slug)
    context: dict = {"lesson": info, "lessons": LESSONS, "error": None, "data": None,
                     "teacher": request.GET.get("teacher") == "1"}
    ref = request.GET.get(info.needs, "").strip() if info.needs else ""
    try:
        if info.needs == "container":
            context["choices"] = _running_containers(request)
            if not ref and context["choices"]:
                ref = context["choices"][0].engine_id
            if ref:
                row = permissions.get_visible(request.user, "container", ref)
                context["row"] = row
                context["data"] = remote.call(PAGE_OPS[slug], row.engine_id, host=row.host)
        elif info.needs == "image":
            context["choices"] = _images(request)
            if not ref and context["choices"]:
                ref = context["choices"][0].engine_id
            if ref:
                row = permissions.get_visible(request.user, "image", ref)
                context["row"] = row
                context["data"] = remote.call("layers", row.engine_id, host=row.host)
        elif slug == "vm":
            context["data"] = {"host": remote.call("host_facts")}
        elif slug == "build":
            context["samples"] = SAMPLE_DOCKERFILES
    except errors.EngineError as exc:
        context["error"] = str(exc)
    context["ref"] = ref
    return render(request, f"lessons/{slug}.html", context)


def _json_error(exc: errors.EngineError) -> JsonResponse:
    status = exc.status if exc.status >= 400 else 409
    return JsonResponse({"error": str(exc)}, status=status)


@require_POST
def experiment(request: HttpRequest) -> JsonResponse:
    try:
        return JsonResponse(remote.call("experiment", request.POST.get("name", "")))
    except errors.EngineError as exc:
        return _json_error(exc)


@require_POST
def measure(request: HttpRequest, what: str) -> JsonResponse:
    """Boot the VM, or start a container, and report the figures measured."""
    try:
        if what == "vm":
            return JsonResponse(remote.call("boot_vm", timeout=120))
        if what == "container":
            return JsonResponse(remote.call("start_container", timeout=60))
    except errors.EngineError as exc:
        return _json_error(exc)
    raise Http404(what)


@require_POST
def memory_hog(request: HttpRequest, ref: str) -> JsonResponse:
    try:
        row = permissions.get_visible(request.user, "container", ref)
        permissions.check_act(request.user, row, "start a memory hog in")
        return JsonResponse(remote.call("memory_hog", row.engine_id, host=row.host))
    except errors.EngineError as exc:
        return _json_error(exc)


def layer_of(request: HttpRequest, ref: str) -> JsonResponse:
    try:
        row = permissions.get_visible(request.user, "image", ref)
        return JsonResponse(remote.call("layer_of", row.engine_id, request.GET.get("path", ""),
                                        host=row.host))
    except errors.EngineError as exc:
        return _json_error(exc)
