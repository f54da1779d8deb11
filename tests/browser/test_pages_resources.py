"""The volumes, networks and hosts pages in a real browser, on the data they show.

Create a volume and a network, see the container that uses each, have the
removal of one in use refused with the reason, then remove them. The hosts
page lists this host with its heartbeat, engine and runtime versions and its
cgroup version.
"""

from __future__ import annotations

import uuid

import pytest

from tests.browser.conftest import login, shot
from tests.browser.test_pages_containers import messages_shown, run_container

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _remove_container(page, server, cid: str) -> None:
    page.goto(f"{server.url}/containers/{cid}/")
    page.once("dialog", lambda d: d.accept())
    page.click("form.actions button.danger")
    page.wait_for_url(f"{server.url}/containers/")


def test_volume_create_used_by_refused_remove(browser, dashboard, make_user, engine,
                                              containers_made):
    tag = uuid.uuid4().hex[:6]
    vol = f"pages-vol-{tag}"
    ctx, page = login(browser, dashboard, make_user("rvol"))
    try:
        page.goto(f"{dashboard.url}/volumes/")
        page.fill("#vname", vol)
        page.click("form[action$='/volumes/new/'] button")
        assert f"Volume {vol} created." in messages_shown(page)
        row = page.locator(f"tr[data-id='{vol}']")
        assert row.locator("td").nth(4).text_content() == "rvol"
        assert row.locator("td").nth(3).text_content() == "—"          # nobody uses it yet

        cid = run_container(page, dashboard, containers_made, f"uses-{tag}",
                            volumes=f"{vol}:/data")
        page.goto(f"{dashboard.url}/volumes/")
        row = page.locator(f"tr[data-id='{vol}']")
        assert row.locator("td").nth(3).text_content() == f"uses-{tag}"
        mount = row.locator("td").nth(2).text_content()
        assert mount.startswith("/") and vol in mount, mount
        shot(page, "pages-volumes-used")
        row.locator("a").first.click()
        page.wait_for_url(f"**/volumes/{vol}/")
        assert page.locator("main ul li a").text_content() == f"uses-{tag}"

        # In use: refused, and the page says why.
        page.once("dialog", lambda d: d.accept())
        page.click("form[action$='/remove/'] button.danger")
        page.wait_for_load_state()
        refused = messages_shown(page)
        assert vol in refused and "in use" in refused, refused
        assert cid[:12] in refused or f"uses-{tag}" in refused, refused
        assert vol in {v.name for v in engine.volumes.list()}
        shot(page, "pages-volume-remove-refused")

        _remove_container(page, dashboard, cid)
        page.goto(f"{dashboard.url}/volumes/{vol}/")
        assert "No container." in page.locator("main ul").text_content()
        page.once("dialog", lambda d: d.accept())
        page.click("form[action$='/remove/'] button.danger")
        page.wait_for_url(f"{dashboard.url}/volumes/")
        assert f"Volume {vol} removed." in messages_shown(page)
        assert page.locator(f"tr[data-id='{vol}']").count() == 0
        assert vol not in {v.name for v in engine.volumes.list()}
        shot(page, "pages-volume-removed")
    finally:
        ctx.close()
        for cid in containers_made:
            try:
                engine.containers.remove(cid, force=True)
            except Exception:
                pass
        try:
            engine.volumes.remove(vol, force=True)
        except Exception:
            pass


def test_network_create_used_by_refused_remove(browser, dashboard, make_user, engine,
                                               containers_made):
    tag = uuid.uuid4().hex[:6]
    net = f"pages-net-{tag}"
    subnet = f"10.{int(tag[:2], 16) % 200 + 30}.{int(tag[2:4], 16)}.0/24"
    ctx, page = login(browser, dashboard, make_user("rnet"))
    try:
        page.goto(f"{dashboard.url}/networks/")
        page.fill("#nname", net)
        page.fill("#nsubnet", subnet)
        page.click("form[action$='/networks/new/'] button")
        assert f"Network {net} created." in messages_shown(page)
        row = page.locator("tr", has_text=net)
        cells = row.locator("td")
        assert cells.nth(1).text_content() == "bridge"
        assert cells.nth(2).text_content() == subnet
        assert cells.nth(3).text_content() == "—" and cells.nth(4).text_content() == "rnet"

        cid = run_container(page, dashboard, containers_made, f"joins-{tag}", network=net)
        page.goto(f"{dashboard.url}/networks/")
        assert page.locator("tr", has_text=net).locator("td").nth(3).text_content() \
            == f"joins-{tag}"
        shot(page, "pages-networks-used")
        page.locator("tr", has_text=net).locator("a").first.click()
        page.wait_for_url("**/networks/*/")
        assert page.locator("main ul li a").text_content() == f"joins-{tag}"
        assert subnet in page.locator("main p").first.text_content()

        page.once("dialog", lambda d: d.accept())
        page.click("form[action$='/remove/'] button.danger")
        page.wait_for_load_state()
        refused = messages_shown(page)
        assert net in refused and ("in use" in refused or "endpoint" in refused), refused
        assert net in {n["Name"] for n in engine.networks.list()}
        shot(page, "pages-network-remove-refused")

        _remove_container(page, dashboard, cid)
        page.goto(f"{dashboard.url}/networks/")
        page.locator("tr", has_text=net).locator("a").first.click()
        page.wait_for_url("**/networks/*/")
        assert "No container." in page.locator("main ul").text_content()
        page.once("dialog", lambda d: d.accept())
        page.click("form[action$='/remove/'] button.danger")
        page.wait_for_url(f"{dashboard.url}/networks/")
        assert f"Network {net} removed." in messages_shown(page)
        assert page.locator("tr", has_text=net).count() == 0
        assert net not in {n["Name"] for n in engine.networks.list()}
        shot(page, "pages-network-removed")
    finally:
        ctx.close()
        for cid in containers_made:
            try:
                engine.containers.remove(cid, force=True)
            except Exception:
                pass
        try:
            engine.networks.remove(net)
        except Exception:
            pass


def test_hosts_lists_this_host(browser, dashboard, make_user, engine, web_worker,
                               containers_made):
    info = engine.info()
    ctx, page = login(browser, dashboard, make_user("rhost"))
    try:
        page.goto(f"{dashboard.url}/hosts/")
        assert page.locator("tr", has_text=web_worker).locator("td").last.text_content() == "0"
        run_container(page, dashboard, containers_made, f"hosted-{uuid.uuid4().hex[:6]}")
        page.goto(f"{dashboard.url}/hosts/")
        row = page.locator("tr", has_text=web_worker)
        assert row.count() == 1
        cells = [c.strip() for c in row.locator("td").all_text_contents()]
        assert cells[0] == web_worker
        assert cells[1] == "online"
        assert cells[2].endswith("ago"), cells[2]
        assert cells[3] == str(info["engine_version"]) and cells[3] != "—"
        assert cells[4] == f"{info['runtime']} {info['runtime_version']}", cells[4]
        assert cells[5] == info["kernel"]
        assert cells[6].startswith(f"v{info['cgroup_version']}"), cells[6]
        assert cells[7] == "1"                           # the one this user runs
        shot(page, "pages-hosts")
    finally:
        ctx.close()


def test_a_list_page_reloads_on_a_change_but_never_over_its_own_navigation(
        browser, dashboard, make_user):
    """The volume's own event can come while the form that made it waits for its answer:
    reloading then would abort that navigation and drop the answer (its message)."""
    ctx, page = login(browser, dashboard, make_user("reloads"))
    changed = ("document.dispatchEvent(new CustomEvent('estiba:event', "
               "{detail: {kind: 'volume', action: 'create'}}))")
    try:
        page.goto(f"{dashboard.url}/volumes/")
        page.evaluate("window.marker = 1")
        with page.expect_navigation():
            page.evaluate(changed)
        assert page.evaluate("window.marker") is None  # a fresh page
        page.evaluate("window.marker = 2; window.dispatchEvent(new Event('beforeunload'))")
        page.evaluate(changed)
        page.wait_for_timeout(700)
        assert page.evaluate("window.marker") == 2  # not reloaded: it is leaving already
    finally:
        ctx.close()
