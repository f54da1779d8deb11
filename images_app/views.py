"""Image pages: list, detail with history, pull and build (live over websockets), tag, remove."""

from __future__ import annotations

import base64
import json
import re
import secrets

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l
from django.views.decorators.http import require_POST

from containers_app.models import Container
from engine import errors
from engine.images import reference
from estiba import bus, gateway, permissions
from estiba.projection import drop, upsert_image
from estiba.web import engine_errors
from images_app import registries as registry_logins
from images_app.models import Image

TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]{0,254}$")
MAX_CONTEXT = 64 * 1024 * 1024


def image_list(request: HttpRequest) -> HttpResponse:
    images = list(permissions.visible(
        request.user, Image.objects.filter(host=gateway.default_host())).select_related("owner"))
    used = {}
    for c in Container.objects.filter(host=gateway.default_host()).values("data", "image"):
        image_id = (c["data"] or {}).get("ImageID")
        if image_id:
            used[image_id] = used.get(image_id, 0) + 1
    for image in images:
        image.used_by = used.get(image.engine_id, 0)
    return render(request, "images/list.html", {"images": images,
                                                "registry": gateway.settings.ESTIBA_REGISTRY})


@engine_errors("images:list")
def detail(request: HttpRequest, ref: str) -> HttpResponse:
    row = permissions.get_visible(request.user, "image", ref)
    history = gateway.call("images.history", row.engine_id)
    users = permissions.visible(request.user, Container.objects.filter(host=row.host))
    users = [c for c in users if (c.data or {}).get("ImageID") == row.engine_id]
    return render(request, "images/detail.html", {
        "image": row, "history": history, "users": users,
        "inspect_json": json.dumps(row.data, indent=2, sort_keys=True),
        "may_act": permissions.may_act(request.user, row),
        "push_target": push_target(row.tags), "registry": gateway.settings.ESTIBA_REGISTRY,
    })


def push_target(tags: list[str]) -> str:
    """Where a push goes by default: the image's first name on a registry of its own, or
    its first name on the local registry (``busybox:latest`` -> ``127.0.0.1:5000/busybox``)."""
    local = gateway.settings.ESTIBA_REGISTRY
    for tag in tags:
        if reference.parse(tag).domain != reference.DEFAULT_DOMAIN:
            return tag
    if not tags:
        return ""
    short = reference.parse(tags[0])
    return f"{local}/{short.path.rsplit('/', 1)[-1]}:{short.tag or 'latest'}"


@require_POST
@engine_errors("images:list")
def tag(request: HttpRequest, ref: str) -> HttpResponse:
    row = permissions.get_visible(request.user, "image", ref)
    permissions.check_act(request.user, row, _("tag"))
    new = request.POST.get("tag", "").strip()
    if not TAG_RE.match(new):
        messages.error(request, _("“%(tag)s” is not a valid image reference, e.g. myapp:1.0")
                       % {"tag": new})
        return redirect("images:detail", ref=row.engine_id)
    gateway.call("images.tag", row.engine_id, new)
    project_now(row)
    messages.success(request, _("Tagged %(tag)s.") % {"tag": new})
    return redirect("images:detail", ref=row.engine_id)


def project_now(row: Image) -> None:
    """Read your own write: the image's row now, not when the worker's event arrives."""
    try:
        data = gateway.call("images.resolve", row.engine_id, host=row.host)
    except errors.ImageNotFound:
        drop(Image, "image", row.host, row.engine_id)
    else:
        upsert_image(row.host, data, row)


@require_POST
@engine_errors("images:list")
def remove(request: HttpRequest, ref: str) -> HttpResponse:
    row = permissions.get_visible(request.user, "image", ref)
    permissions.check_act(request.user, row, _("remove"))
    tag = request.POST.get("tag", "")
    if tag:  # docker rmi name:tag: only that name goes while others remain
        if tag not in row.tags:
            messages.error(request, _("%(tag)s is not a tag of this image.") % {"tag": tag})
            return redirect("images:detail", ref=row.engine_id)
        others_remain = len(row.tags) > 1
        gateway.call("images.remove", tag)
        project_now(row)
        messages.success(request, _("Untagged %(tag)s.") % {"tag": tag})
        return redirect("images:detail", ref=row.engine_id) if others_remain \
            else redirect("images:list")
    gateway.call("images.remove", row.engine_id, force=bool(request.POST.get("force")))
    project_now(row)
    messages.success(request, _("Image %(name)s removed.") % {"name": row})
    return redirect("images:list")


def pull(request: HttpRequest) -> HttpResponse:
    registry = gateway.settings.ESTIBA_REGISTRY
    return render(request, "images/pull.html", {
        "registry": registry, "ref": request.GET.get("ref", f"{registry}/")})


class BuildForm(forms.Form):
    context = forms.FileField(label=_l("Dockerfile or context archive (.tar, .tar.gz)"))
    tag = forms.CharField(label=_l("Tag"), max_length=255, required=False)
    dockerfile = forms.CharField(label=_l("Dockerfile path in the archive"), max_length=255,
                                 initial="Dockerfile")
    no_cache = forms.BooleanField(label=_l("Do not use the cache"), required=False)

    def clean_tag(self) -> str:
        value = self.cleaned_data["tag"].strip()
        if value and not TAG_RE.match(value):
            raise forms.ValidationError(_("“%(tag)s” is not a valid image reference, "
                                          "e.g. myapp:1.0") % {"tag": value})
        return value

    def clean_context(self):
        upload = self.cleaned_data["context"]
        if upload.size > MAX_CONTEXT:
            raise forms.ValidationError(_("The upload is larger than 64 MiB."))
        return upload


def _as_context(data: bytes, name: str, dockerfile: str) -> tuple[bytes, str]:
    """A lone Dockerfile becomes a one-file tar context; an archive is passed as it is."""
    import io
    import tarfile

    if data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar" or name.endswith((".tar", ".tgz",
                                                                            ".tar.gz")):
        return data, dockerfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), "Dockerfile"


def build(request: HttpRequest) -> HttpResponse:
    form = BuildForm(request.POST or None, request.FILES or None)
    token = None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["context"]
        context, dockerfile = _as_context(upload.read(), upload.name,
                                          form.cleaned_data["dockerfile"])
        token = secrets.token_urlsafe(16)
        bus.client().set(f"estiba:build:{token}", json.dumps({
            "user": request.user.pk, "context": base64.b64encode(context).decode(),
            "dockerfile": dockerfile, "no_cache": form.cleaned_data["no_cache"],
            "tags": [form.cleaned_data["tag"]] if form.cleaned_data["tag"] else [],
        }), ex=600)
    return render(request, "images/build.html", {"form": form, "token": token})


class RegistryLoginForm(forms.Form):
    registry = forms.CharField(label=_l("Registry"), max_length=255,
                               widget=forms.TextInput(attrs={"placeholder": "127.0.0.1:5000"}))
    username = forms.CharField(label=_l("User name"), max_length=255)
    password = forms.CharField(label=_l("Password"), max_length=1024,
                               widget=forms.PasswordInput(render_value=False))


def registries(request: HttpRequest) -> HttpResponse:
    """The user's registry logins: add one (checked against the registry), list, remove."""
    form = RegistryLoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            row = registry_logins.save_login(request.user, data["registry"], data["username"],
                                             data["password"])
        except errors.EngineError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Logged in to %(registry)s as %(user)s.")
                             % {"registry": row.registry, "user": row.username})
            return redirect("images:registries")
    logins = request.user.registry_logins.all()
    return render(request, "images/registries.html", {"form": form, "logins": logins})


@require_POST
def registry_logout(request: HttpRequest, pk: int) -> HttpResponse:
    """Forget one of the user's own logins (another user's is simply not found)."""
    deleted, _count = request.user.registry_logins.filter(pk=pk).delete()
    if deleted:
        messages.success(request, _("Logged out."))
    else:
        messages.error(request, _("No such registry login."))
    return redirect("images:registries")
