"""The containers list (issue 4 made it fast): what it shows stays what it showed.

Real containers made through the worker (not started: state ``created``), owned by
two users; each user's list shows their own rows — link, checkbox, state label —
and none of the other's; an admin sees everyone's with the owner; a Spanish request
gets the state labels in Spanish, in the rows and in the labels the page's script
uses for live updates.
"""

from __future__ import annotations

import json
import re
import time
import uuid

from django.test import Client

from estiba import gateway
from tests.web.conftest import eventually


def _make(made: list[str], name: str) -> str:
    created = gateway.call("containers.create", {"image": "busybox:latest", "cmd": ["true"],
                                                 "name": name, "network_mode": "none"})
    made.append(created["Id"])
    return created["Id"]


def _own(engine_id: str, owner_pk: int) -> None:
    """Give the projection row to ``owner_pk``, once the worker's upserts have settled."""
    from containers_app.models import Container

    rows = Container.objects.filter(engine_id=engine_id)
    eventually(lambda: rows.filter(state="created").exists(), what=f"row of {engine_id[:12]}")

    def stuck() -> bool:
        rows.update(owner_id=owner_pk)
        time.sleep(0.3)
        return rows.filter(owner_id=owner_pk).exists()

    eventually(stuck, what="the owner kept")


def _client(pk: int) -> Client:
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(pk=pk))
    return client


def _rows(html: str) -> dict[str, str]:
    """engine id -> that row's HTML."""
    return dict(re.findall(r'<tr data-id="([0-9a-f]+)"[^>]*>(.*?)</tr>', html, re.S))


def _label(row_html: str) -> str:
    return re.search(r'data-field="state">([^<]*)<', row_html).group(1)


def test_the_list_shows_owned_containers_hides_others_and_speaks_spanish(
        orm, containers_made, make_user):
    tag = uuid.uuid4().hex[:6]
    *_, alice = make_user(f"alice-{tag}")
    *_, bob = make_user(f"bob-{tag}")
    *_, admin = make_user(f"admin-{tag}", admin=True)
    mine = [_make(containers_made, f"list-a{i}-{tag}") for i in range(2)]
    theirs = _make(containers_made, f"list-b0-{tag}")
    for cid in mine:
        _own(cid, alice)
    _own(theirs, bob)

    client = _client(alice)
    page = client.get("/containers/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert page.status_code == 200
    html = page.content.decode()
    rows = _rows(html)
    assert set(mine) <= set(rows), sorted(rows)
    assert theirs not in html and f"list-b0-{tag}" not in html
    for i, cid in enumerate(mine):
        row = rows[cid]
        assert f'href="/containers/{cid}/"' in row
        assert f'<input type="checkbox" name="ids" value="{cid}" ' \
               f'aria-label="Select list-a{i}-{tag}">' in row
        assert f">list-a{i}-{tag}</a>" in row and f'<code class="dim">{cid[:12]}</code>' in row
        assert 'class="state s-created"' in row and _label(row) == "created"
        assert "<code>true</code>" in row and "busybox:latest" in row
    assert json.loads(re.search(r'<script id="state-labels" type="application/json">(.*?)'
                                r"</script>", html).group(1))["exited"] == "exited"

    # The same rows for the live refresh (the partial), and the filters.
    partial = client.get("/containers/?partial=1").content.decode()
    assert set(mine) <= set(_rows(partial)) and theirs not in partial
    assert "<html" not in partial
    assert set(_rows(client.get(f"/containers/?q=list-a1-{tag}").content.decode())) \
        == {mine[1]}
    assert not set(mine) & set(_rows(client.get("/containers/?state=running")
                                     .content.decode()))

    # In Spanish: the state labels, in the rows and for the page's script.
    from django.utils import translation

    with translation.override("es"):
        creado = translation.gettext("created")
        select = translation.gettext("Select %(name)s")
    assert creado != "created" and select != "Select %(name)s"
    spanish = client.get("/containers/", HTTP_ACCEPT_LANGUAGE="es-ES,es;q=0.9").content.decode()
    assert '<html lang="es"' in spanish
    rows = _rows(spanish)
    assert all(_label(rows[cid]) == creado for cid in mine)
    assert select % {"name": f"list-a0-{tag}"} in rows[mine[0]]
    labels = json.loads(re.search(r'<script id="state-labels" type="application/json">(.*?)'
                                  r"</script>", spanish).group(1))
    assert labels["created"] == creado

    # Bob sees his own and none of Alice's; an admin sees both, with their owners.
    bobs = _rows(_client(bob).get("/containers/").content.decode())
    assert theirs in bobs and not set(mine) & set(bobs)
    everyone = _rows(_client(admin).get("/containers/").content.decode())
    assert set(mine) | {theirs} <= set(everyone)
    assert f"<td>alice-{tag}</td>" in everyone[mine[0]]
    assert f"<td>bob-{tag}</td>" in everyone[theirs]
