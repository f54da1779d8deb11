"""Who may see and act on which engine object.

The rule of the multi-user panel: a user sees and acts on what they own; an
admin (staff or superuser) on everything. Objects nobody owns were made outside
estiba (or are the host's defaults): images and networks among them are
shared — anyone may *use* them (run from an image, attach to a network) — but
only admins change them. A refusal is a ``Refused`` error whose message says
why, shown to the person as it is.

The REST API and the CLI use the same functions, so an object hidden in the
browser is hidden from ``docker ps`` too.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.utils.translation import gettext as _

from engine import errors

#: kind -> "app_label.Model"
KINDS = {
    "container": "containers_app.Container",
    "image": "images_app.Image",
    "volume": "volumes_app.Volume",
    "network": "networks_app.Network",
}
#: Kinds whose unowned objects every user may see and use (not change).
SHARED_WHEN_UNOWNED = {"image", "network"}


class Refused(PermissionDenied, errors.Forbidden):
    """The user may not do this; the message says why (HTTP 403)."""

    status = 403

    def __init__(self, message: str) -> None:
        PermissionDenied.__init__(self, message)
        errors.Forbidden.__init__(self, message)


def model_for(kind: str) -> type[Model]:
    from django.apps import apps

    try:
        return apps.get_model(KINDS[kind])
    except KeyError:
        raise ValueError(f"unknown object kind {kind!r}") from None


def kind_of(obj: Model) -> str:
    label = f"{obj._meta.app_label}.{obj._meta.object_name}"
    for kind, model in KINDS.items():
        if model == label:
            return kind
    raise ValueError(f"{label} is not an engine object")


def is_admin(user: Any) -> bool:
    return bool(user and user.is_authenticated and (user.is_superuser or user.is_staff))


def visible(user: Any, queryset: QuerySet) -> QuerySet:
    """The part of ``queryset`` the user may see."""
    if is_admin(user):
        return queryset
    if not (user and user.is_authenticated):
        return queryset.none()
    kind = kind_of(queryset.model())
    if kind in SHARED_WHEN_UNOWNED:
        return queryset.filter(Q(owner=user) | Q(owner__isnull=True))
    return queryset.filter(owner=user)


def may_see(user: Any, obj: Model) -> bool:
    if is_admin(user):
        return True
    if not (user and user.is_authenticated):
        return False
    if obj.owner_id is None:
        return kind_of(obj) in SHARED_WHEN_UNOWNED
    return obj.owner_id == user.pk


def may_use(user: Any, obj: Model) -> bool:
    """Use without changing: run from an image, connect to a network, mount a volume."""
    return may_see(user, obj)


def may_act(user: Any, obj: Model) -> bool:
    """Change or remove the object."""
    if is_admin(user):
        return True
    return bool(user and user.is_authenticated and obj.owner_id == user.pk)


def check_act(user: Any, obj: Model, action: str = "") -> None:
    """Raise ``Refused`` (with the reason) unless the user may change ``obj``."""
    if may_act(user, obj):
        return
    kind = kind_of(obj)
    label = str(obj)
    if obj.owner_id is None:
        raise Refused(_("Only an administrator may %(action)s the %(kind)s %(name)s: "
                        "it belongs to no user.")
                      % {"action": action or _("change"), "kind": kind, "name": label})
    raise Refused(_("You may not %(action)s the %(kind)s %(name)s: it belongs to another user.")
                  % {"action": action or _("change"), "kind": kind, "name": label})


def get_visible(user: Any, kind: str, ref: str, host: str | None = None) -> Model:
    """The object ``ref`` (engine id, id prefix or name) if the user may see it.

    An object the user may not see is reported as not found, exactly like one
    that does not exist: its existence is not disclosed.
    """
    from estiba.gateway import default_host

    model = model_for(kind)
    qs = visible(user, model.objects.filter(host=host or default_host()))
    match = qs.filter(engine_id=ref).first()
    if match is None and hasattr(model, "name") and kind != "volume":
        match = qs.filter(name=ref).first()
    if match is None and kind == "image":
        wanted = {ref, ref + ":latest"} if ":" not in ref.rsplit("/", 1)[-1] else {ref}
        match = next((i for i in qs if wanted & set(i.tags or [])), None)
    if match is None and len(ref) >= 4:
        prefix = ref if kind != "image" or ref.startswith("sha256:") else "sha256:" + ref
        candidates = list(qs.filter(engine_id__startswith=prefix)[:2])
        if len(candidates) == 1:
            match = candidates[0]
    if match is None:
        raise errors.NotFound(_("No such %(kind)s: %(ref)s") % {"kind": kind, "ref": ref})
    return match


def record_owner(user: Any, kind: str, engine_id: str, host: str | None = None,
                 **fields: Any) -> Model:
    """Record that ``user`` made the object (called right after the engine made it).

    The projection row may not exist yet (its event can arrive later), so this
    creates it; events and reconcile then fill in the engine's data and never
    change the owner.
    """
    from estiba.gateway import default_host

    model = model_for(kind)
    obj, _created = model.objects.update_or_create(
        host=host or default_host(), engine_id=engine_id,
        defaults={"owner": user if user and user.is_authenticated else None, **fields},
    )
    return obj


def owner_id_of(kind: str, engine_id: str, host: str | None = None) -> int | None:
    from estiba.gateway import default_host

    row = model_for(kind).objects.filter(
        host=host or default_host(), engine_id=engine_id).values("owner_id").first()
    return row["owner_id"] if row else None


def visible_engine_ids(user: Any, kind: str, host: str | None = None) -> set[str] | None:
    """Engine ids the user may see on ``host``; ``None`` means all (an admin)."""
    from estiba.gateway import default_host

    if is_admin(user):
        return None
    qs = visible(user, model_for(kind).objects.filter(host=host or default_host()))
    return set(qs.values_list("engine_id", flat=True))


def check_container_spec(user: Any, spec: dict[str, Any], host: str | None = None) -> None:
    """Refuse what only an administrator may ask of a new container.

    The engine runs as root, so a container spec can hand out the host: a bind
    mount of ``/``, ``--privileged``, an added capability like ``SYS_ADMIN``, the
    host's network. Those are for administrators. Others may use only what they
    may see: an image, a volume, a network, or the container whose network they
    would share. The dashboard's form and the REST API both ask here.
    """
    if is_admin(user):
        return
    if spec.get("privileged"):
        raise Refused(_("Only an administrator may run a privileged container."))
    if spec.get("cap_add"):
        raise Refused(_("Only an administrator may add capabilities to a container "
                        "(%(caps)s); dropping them is allowed.")
                      % {"caps": ", ".join(spec["cap_add"])})
    image = spec.get("image") or ""
    if not may_use_image(user, image, host):
        raise Refused(_("You may not use the image %(ref)s: it belongs to another user.")
                      % {"ref": image})
    for mount in spec.get("mounts") or []:
        _check_mount(user, mount, host)
    mode = spec.get("network_mode") or "bridge"
    if mode == "host":
        raise Refused(_("Only an administrator may give a container the host's network."))
    if mode.startswith("container:"):
        get_visible(user, "container", mode.split(":", 1)[1], host)
    names = {mode, *(spec.get("networks") or {})} - {"bridge", "none", "default"}
    for name in sorted(n for n in names if not n.startswith("container:")):
        get_visible(user, "network", name, host)


def _check_mount(user: Any, mount: dict[str, Any], host: str | None) -> None:
    kind, source = mount.get("type"), mount.get("source") or ""
    if kind == "bind":
        raise Refused(_("Only an administrator may mount a directory of the host (%(path)s); "
                        "use a named volume.") % {"path": source})
    if kind == "volume" and source:
        from estiba.gateway import default_host

        row = model_for("volume").objects.filter(host=host or default_host(),
                                                 engine_id=source).first()
        if row is not None and not may_use(user, row):
            raise Refused(_("You may not use the volume %(name)s: it belongs to another user.")
                          % {"name": source})


def may_use_image(user: Any, ref: str, host: str | None = None) -> bool:
    """False only when the image exists on the host and belongs to someone else."""
    from estiba.gateway import default_host

    if is_admin(user):
        return True
    try:
        get_visible(user, "image", ref, host)
        return True
    except errors.NotFound:
        pass
    wanted = {ref, ref + ":latest"} if ":" not in ref.rsplit("/", 1)[-1] else {ref}
    model = model_for("image")
    for image in model.objects.filter(host=host or default_host()).exclude(owner=user):
        if wanted & set(image.tags or []) or image.engine_id in (ref, "sha256:" + ref):
            return image.owner_id is None
    return True
