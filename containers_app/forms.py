"""The create-container form: what ``docker run`` takes, as fields a person can fill in.

Every field is hostile input: each is parsed here into the engine's
``ContainerSpec`` fields, and a mistake is reported on its own field, in words
that say what is wrong and how to write it ("8080:80/tcp").
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=.*$")
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?\s*$", re.IGNORECASE)
PORT_RE = re.compile(
    r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}):)?(?:(?P<host>\d{1,5}):)?(?P<cont>\d{1,5})"
    r"(?:/(?P<proto>tcp|udp))?$"
)
UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

RESTART_CHOICES = [
    ("no", _l("Never")),
    ("on-failure", _l("On failure")),
    ("always", _l("Always")),
    ("unless-stopped", _l("Unless stopped")),
]


def parse_size(text: str, field: str) -> int:
    match = SIZE_RE.match(text)
    if not match:
        raise ValidationError(
            _("%(field)s: “%(value)s” is not a size; write a number with k, m or g, e.g. 64m")
            % {"field": field, "value": text})
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def _lines(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


class ContainerForm(forms.Form):
    image = forms.CharField(label=_l("Image"), max_length=512,
                            help_text=_l("For example busybox:latest"))
    command = forms.CharField(label=_l("Command"), required=False, max_length=4096,
                              help_text=_l("Leave empty for the image's own command. "
                                           "Quote arguments as in a shell."))
    name = forms.CharField(label=_l("Name"), required=False, max_length=128)
    env = forms.CharField(label=_l("Environment"), required=False, widget=forms.Textarea(
        attrs={"rows": 3, "placeholder": "KEY=value"}), help_text=_l("One KEY=value per line"))
    ports = forms.CharField(label=_l("Published ports"), required=False, widget=forms.Textarea(
        attrs={"rows": 2, "placeholder": "8080:80/tcp"}),
        help_text=_l("One per line: host port:container port[/tcp|udp]"))
    volumes = forms.CharField(label=_l("Volumes"), required=False, widget=forms.Textarea(
        attrs={"rows": 2, "placeholder": "data:/var/data"}),
        help_text=_l("One per line: volume name:path in the container[:ro]"))
    network = forms.CharField(label=_l("Network"), required=False, initial="bridge",
                              max_length=255)
    memory = forms.CharField(label=_l("Memory limit"), required=False, max_length=32,
                             help_text=_l("e.g. 64m; empty for no limit"))
    cpus = forms.DecimalField(label=_l("CPUs"), required=False, min_value=0.01, max_value=1024,
                              decimal_places=2, help_text=_l("e.g. 0.5 for half a CPU"))
    pids_limit = forms.IntegerField(label=_l("Process limit"), required=False, min_value=1,
                                    max_value=4194304)
    restart_policy = forms.ChoiceField(label=_l("Restart policy"), choices=RESTART_CHOICES,
                                       initial="no")
    max_retries = forms.IntegerField(label=_l("Maximum retries"), required=False, min_value=0,
                                     max_value=1000)
    tty = forms.BooleanField(label=_l("Allocate a terminal (tty)"), required=False)
    start = forms.BooleanField(label=_l("Start it now"), required=False, initial=True)

    def __init__(self, *args: Any, allow_bind: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allow_bind = allow_bind

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if name and not NAME_RE.match(name):
            raise ValidationError(_("A name starts with a letter or digit and holds only "
                                    "letters, digits, “_”, “.” and “-”."))
        return name

    def clean_command(self) -> list[str] | None:
        text = self.cleaned_data["command"].strip()
        if not text:
            return None
        try:
            return shlex.split(text)
        except ValueError as exc:
            raise ValidationError(_("The command cannot be split into words: %(err)s")
                                  % {"err": exc}) from None

    def clean_env(self) -> list[str]:
        out = []
        for n, line in _lines(self.cleaned_data["env"]):
            if not ENV_RE.match(line):
                raise ValidationError(_("Line %(n)d: “%(line)s” is not KEY=value")
                                      % {"n": n, "line": line})
            out.append(line)
        return out

    def clean_ports(self) -> dict[str, list[dict]]:
        bindings: dict[str, list[dict]] = {}
        for n, line in _lines(self.cleaned_data["ports"]):
            m = PORT_RE.match(line)
            ok = m and all(0 < int(p) < 65536 for p in (m["host"], m["cont"]) if p)
            if not ok:
                raise ValidationError(
                    _("Line %(n)d: “%(line)s” is not a port; write host port:container port, "
                      "e.g. 8080:80/tcp") % {"n": n, "line": line})
            key = f"{m['cont']}/{m['proto'] or 'tcp'}"
            binding = {"HostIp": m["ip"] or "", "HostPort": m["host"] or ""}
            bindings.setdefault(key, []).append(binding)
        return bindings

    def clean_volumes(self) -> list[dict]:
        mounts = []
        for n, line in _lines(self.cleaned_data["volumes"]):
            parts = line.split(":")
            read_only = len(parts) == 3 and parts[2] == "ro"
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                raise ValidationError(_("Line %(n)d: “%(line)s” is not source:path[:ro]")
                                      % {"n": n, "line": line})
            source, target = parts[0], parts[1]
            if not target.startswith("/"):
                raise ValidationError(_("Line %(n)d: the path in the container must be absolute "
                                        "(start with /)") % {"n": n})
            if source.startswith("/"):
                if not self.allow_bind:
                    raise ValidationError(_("Line %(n)d: only an administrator may mount a "
                                            "directory of the host; use a named volume") % {"n": n})
                kind = "bind"
            elif NAME_RE.match(source):
                kind = "volume"
            else:
                raise ValidationError(_("Line %(n)d: “%(src)s” is not a volume name")
                                      % {"n": n, "src": source})
            mounts.append({"type": kind, "source": source, "target": target,
                           "read_only": read_only})
        return mounts

    def clean_memory(self) -> int:
        text = self.cleaned_data["memory"].strip()
        if not text:
            return 0
        value = parse_size(text, _("Memory limit"))
        if value < 6 * 1024 * 1024:
            raise ValidationError(_("The memory limit must be at least 6m (6 MiB)."))
        return value

    def clean(self) -> dict:
        data = super().clean()
        if data.get("max_retries") and data.get("restart_policy") != "on-failure":
            self.add_error("max_retries", _("Maximum retries only applies to “On failure”."))
        return data

    def spec(self) -> dict[str, Any]:
        """The ``ContainerSpec`` fields for the engine (as a dict, sent through the gateway)."""
        d = self.cleaned_data
        spec: dict[str, Any] = {"image": d["image"].strip()}
        if d["name"]:
            spec["name"] = d["name"]
        if d["command"]:
            spec["cmd"] = d["command"]
        if d["env"]:
            spec["env"] = d["env"]
        if d["ports"]:
            spec["port_bindings"] = d["ports"]
            spec["exposed_ports"] = {k: {} for k in d["ports"]}
        if d["volumes"]:
            spec["mounts"] = d["volumes"]
        if d["network"].strip():
            spec["network_mode"] = d["network"].strip()
        if d["memory"]:
            spec["memory"] = d["memory"]
        if d["cpus"]:
            spec["nano_cpus"] = int(d["cpus"] * 1_000_000_000)
        if d["pids_limit"]:
            spec["pids_limit"] = d["pids_limit"]
        policy = d["restart_policy"]
        if policy == "on-failure" and d.get("max_retries"):
            policy = f"on-failure:{d['max_retries']}"
        spec["restart_policy"] = policy
        if d["tty"]:
            spec["tty"] = True
            spec["open_stdin"] = True
        return spec
