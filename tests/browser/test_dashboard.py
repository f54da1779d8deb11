"""The dashboard in a real browser: log in, run a container, watch it live, use its terminal.

A second user can neither see nor act on the first user's container, over HTTP
or over websockets.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.browser.conftest import login, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOOP = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.3; done"


def _container_id(page) -> str:
    return page.locator("#container").get_attribute("data-id")


def test_run_watch_terminal_stop_and_isolation(browser, dashboard, make_user, engine):
    alice = make_user("alice")
    bob = make_user("bob")
    ctx, page = login(browser, dashboard, alice)
    cid = None
    try:
        # Run a container from the form; its logs appear live on its page.
        page.click("text=Run a container")
        page.fill("input[name=image]", "busybox:latest")
        page.fill("input[name=command]", f"sh -c '{LOOP}'")
        page.fill("input[name=name]", "web-loop")
        page.fill("input[name=memory]", "64m")
        shot(page, "01-create-form")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/containers/[0-9a-f]{64}/$"))
        cid = _container_id(page)
        page.wait_for_selector("#state.s-running")
        page.wait_for_function("document.querySelector('#logs').textContent.includes('line 3')")
        first = page.locator("#logs").text_content()
        page.wait_for_function(
            "n => document.querySelectorAll('#logs .line').length > n",
            arg=len(re.findall("line", first)) + 2)
        shot(page, "02-live-logs")

        # The terminal: type `echo hi` and see `hi` on a line of its own.
        page.click("[data-tab=terminal]")
        page.wait_for_selector("#terminal[data-ready='1']")
        page.wait_for_function("document.querySelector('#terminal .xterm-rows').textContent"
                               ".includes('#')")
        page.keyboard.type("echo hi\n")
        page.wait_for_function(
            "Array.from(document.querySelectorAll('#terminal .xterm-rows > div'))"
            ".some(r => r.textContent.trim() === 'hi')")
        shot(page, "03-terminal")

        # The list shows it running; a second user sees nothing of it.
        ctx2, page2 = login(browser, dashboard, bob)
        assert cid not in page2.content()
        assert "web-loop" not in page2.locator("#containers").text_content()
        # Over HTTP: the detail page says it does not exist; an action is refused.
        page2.goto(f"{dashboard.url}/containers/{cid}/")
        assert page2.url.endswith("/containers/")
        assert "No such container" in page2.locator(".messages").text_content()
        csrf = page2.context.cookies()[0]["value"] if page2.context.cookies() else ""
        answer = page2.request.post(f"{dashboard.url}/containers/{cid}/action/stop/",
                                    headers={"HX-Request": "true", "X-CSRFToken": csrf},
                                    form={"csrfmiddlewaretoken": csrf})
        assert answer.status == 404, answer.text()
        # Over websockets: logs and terminal refuse; the event feed says nothing about it.
        refused = page2.evaluate("""cid => new Promise(resolve => {
            const ws = new WebSocket(`ws://${location.host}/ws/containers/${cid}/logs/`);
            const got = [];
            ws.onmessage = m => got.push(m.data);
            ws.onclose = e => resolve({code: e.code, got});
        })""", cid)
        assert refused["code"] == 4403
        assert "No such container" in json.loads(refused["got"][0])["error"]
        page2.evaluate("""() => { window.seen = [];
            const ws = new WebSocket(`ws://${location.host}/ws/events/`);
            ws.onmessage = m => window.seen.push(JSON.parse(m.data)); }""")
        page2.wait_for_timeout(300)

        # Alice stops it from her page: the state changes without a reload.
        page.click("[data-tab=logs]")
        page.evaluate("window.__noReload = true")
        page.click("#stop")
        page.wait_for_selector("#state.s-exited", timeout=20000)
        assert page.evaluate("window.__noReload") is True
        shot(page, "04-stopped-live")
        page.goto(f"{dashboard.url}/containers/")
        assert page.locator(f"tr[data-id='{cid}'] [data-field=state]").text_content() == "exited"

        # Bob's event feed heard nothing about Alice's container.
        seen = page2.evaluate("window.seen")
        assert not [e for e in seen if e.get("id") == cid], seen
        shot(page2, "05-second-user")
        ctx2.close()
    finally:
        ctx.close()
        if cid:
            try:
                engine.containers.remove(cid, force=True)
            except Exception:
                pass
