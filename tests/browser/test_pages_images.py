"""The build page and an image's page in a real browser, on the data they show.

Upload a two-step Dockerfile and watch each step's output arrive, then the new
image; its page shows its history; tag it, then remove it.
"""

from __future__ import annotations

import uuid

import pytest

from tests.browser.conftest import login, shot
from tests.browser.test_pages_containers import messages_shown

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def submit_build(page, dashboard, dockerfile: bytes, name: str, no_cache: bool = False) -> None:
    """Upload a lone Dockerfile on the build page, tagged ``name``, and start the build."""
    page.goto(f"{dashboard.url}/images/build/")
    page.set_input_files("#id_context", files=[{
        "name": "Dockerfile", "mimeType": "text/plain", "buffer": dockerfile}])
    page.fill("#id_tag", name)
    if no_cache:
        page.check("#id_no_cache")
    page.click("form.grid-form button.primary")


def test_build_history_tag_remove(browser, dashboard, make_user, engine):
    tag = uuid.uuid4().hex[:6]
    name = f"pages-built-{tag}:1"
    marker = f"built-marker-{tag}"
    dockerfile = (f"FROM busybox:latest\n"
                  f"RUN echo {marker} && echo {marker} > /built.txt && sleep 1\n").encode()
    ctx, page = login(browser, dashboard, make_user("ibuild"))
    try:
        submit_build(page, dashboard, dockerfile, name, no_cache=True)
        page.wait_for_selector("#build-log")
        # Each step's output, live: step 1/2, step 2/2 and what the RUN printed.
        page.wait_for_function("m => document.querySelector('#build-log').textContent.includes(m)",
                               arg=marker, timeout=60000)
        assert page.locator("#build-state").text_content().strip() == "Building…"
        page.wait_for_selector("#build-state.msg.success", timeout=60000)
        log = page.locator("#build-log").text_content()
        assert "1/2" in log and "2/2" in log, log
        assert "FROM busybox:latest" in log and f"RUN echo {marker}" in log, log
        built = engine.images.resolve(name)
        short = page.locator("#build-state").text_content().strip()
        assert short and built.id.startswith(short), (short, built.id)
        shot(page, "pages-build-output")

        # The new image is listed, the builder's.
        listing = ctx.new_page()
        listing.goto(f"{dashboard.url}/images/")
        row = listing.locator(f"tr[data-id='{built.id}']")
        assert name in row.text_content() and "ibuild" in row.text_content()
        shot(listing, "pages-build-image-listed")
        listing.close()

        # Its page, linked from the build's result: the history, newest first, down to busybox's.
        page.click("#build-state a#build-image")
        page.wait_for_url(f"**/images/{built.id}/")
        history = page.eval_on_selector_all(
            "table.list tbody tr td:first-child", "ts => ts.map(t => t.textContent)")
        assert len(history) >= 2, history
        assert marker in history[0], history
        assert "Layers: 2" in page.locator("main p").first.text_content()
        shot(page, "pages-image-history")

        # Tag it: both names show.
        page.fill("#tag", f"pages-retag-{tag}:2")
        page.click("form[action$='/tag/'] button")
        assert f"Tagged pages-retag-{tag}:2." in messages_shown(page)
        tags = page.locator("main p").first.text_content()
        assert name in tags and f"pages-retag-{tag}:2" in tags, tags
        assert engine.images.resolve(f"pages-retag-{tag}:2").id == built.id
        shot(page, "pages-image-tagged")

        # Remove it: with two tags the engine asks for force, and the page says so.
        page.once("dialog", lambda d: d.accept())
        page.click("form[action$='/remove/'] button.danger")
        page.wait_for_load_state()
        refused = messages_shown(page)
        assert "referenced in 2 repositories" in refused and "forced" in refused, refused
        assert engine.images.resolve(name).id == built.id
        shot(page, "pages-image-remove-refused")
        # Untag one name: the image stays under the other.
        retag = f"pages-retag-{tag}:2"
        page.goto(f"{dashboard.url}/images/{built.id}/")
        page.locator("#image-tags li", has_text=retag).locator("button").click()
        page.wait_for_load_state()
        assert f"Untagged {retag}." in messages_shown(page) or retag in messages_shown(page)
        assert [t for t in engine.images.resolve(name).repo_tags if retag in t] == []
        # Tag it again, then remove with the force switch: both names go.
        page.fill("#tag", retag)
        page.click("form[action$='/tag/'] button")
        page.wait_for_load_state()
        page.check("#remove-image input[name=force]")
        page.once("dialog", lambda d: d.accept())
        page.click("#remove-image button.danger")
        page.wait_for_url(f"{dashboard.url}/images/")
        page.goto(f"{dashboard.url}/images/")
        assert page.locator(f"tr[data-id='{built.id}']").count() == 0
        assert not [i for i in engine.images.list() if i.id == built.id]
        shot(page, "pages-image-removed")
    finally:
        ctx.close()
        for ref in (name, f"pages-retag-{tag}:2"):
            try:
                engine.images.remove(ref, force=True)
            except Exception:
                pass


def test_build_with_a_failing_step_says_which(browser, dashboard, make_user, engine):
    tag = uuid.uuid4().hex[:6]
    name = f"pages-broken-{tag}:1"
    dockerfile = (f"FROM busybox:latest\nRUN echo before-{tag} && exit 3\n"
                  f"RUN echo never-{tag}\n").encode()
    ctx, page = login(browser, dashboard, make_user("ibroken"))
    try:
        submit_build(page, dashboard, dockerfile, name)
        page.wait_for_selector("#build-state.msg.error", timeout=60000)
        error = page.locator("#build-state").text_content()
        assert "3" in error and "Traceback" not in error, error
        assert "exit 3" in error or "returned a non-zero code" in error, error
        log = page.locator("#build-log").text_content()
        assert f"before-{tag}" in log and f"never-{tag}" not in log.replace(
            f"RUN echo never-{tag}", ""), log
        assert page.locator("#build-image").count() == 0
        shot(page, "pages-build-failed")
        assert not [i for i in engine.images.list() if name in (i.repo_tags or [])]
    finally:
        ctx.close()
