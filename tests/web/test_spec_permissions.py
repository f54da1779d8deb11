"""What a container spec may ask for, by who asks: the rule the dashboard and the API share."""

from __future__ import annotations

import re
import uuid

import pytest


@pytest.fixture
def people(orm):
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    tag = uuid.uuid4().hex[:8]
    made = [users.create(username=f"spec-{tag}"), users.create(username=f"other-{tag}"),
            users.create(username=f"admin-{tag}", is_staff=True)]
    yield made
    for user in made:
        user.delete()


def test_only_an_administrator_may_hand_out_the_host(people):
    from estiba import permissions
    from volumes_app.models import Volume

    user, other, admin = people
    base = {"image": "busybox:latest"}
    refused = {
        "bind": ({"mounts": [{"type": "bind", "source": "/", "target": "/host"}]},
                 "mount a directory of the host (/)"),
        "privileged": ({"privileged": True}, "run a privileged container"),
        "cap_add": ({"cap_add": ["SYS_ADMIN"]}, "add capabilities to a container (SYS_ADMIN)"),
        "host network": ({"network_mode": "host"}, "the host's network"),
    }
    for extra, says in refused.values():
        with pytest.raises(permissions.Refused, match=re.escape(says)):
            permissions.check_container_spec(user, {**base, **extra})
        permissions.check_container_spec(admin, {**base, **extra})  # an administrator may
    # allowed to anyone: drop capabilities, the default networks, an unknown new volume
    permissions.check_container_spec(user, {**base, "cap_drop": ["ALL"], "network_mode": "none",
                                            "mounts": [{"type": "volume", "source": "fresh",
                                                        "target": "/d"}]})
    from estiba.gateway import default_host
    from hosts_app.models import Host

    host = Host.objects.get_or_create(name=default_host())[0]
    vol = Volume.objects.create(host=host, engine_id=f"theirs-{uuid.uuid4().hex[:6]}",
                                owner=other)
    try:
        with pytest.raises(permissions.Refused, match=re.escape(f"the volume {vol.engine_id}")):
            permissions.check_container_spec(user, {**base, "mounts": [
                {"type": "volume", "source": vol.engine_id, "target": "/d"}]})
        permissions.check_container_spec(other, {**base, "mounts": [
            {"type": "volume", "source": vol.engine_id, "target": "/d"}]})
    finally:
        vol.delete()

