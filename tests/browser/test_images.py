"""Pull an image from the local registry in the browser, watching each layer's progress bar."""

from __future__ import annotations

import io
import os
import tarfile
import uuid

import pytest

from tests.browser.conftest import login, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def pushed_image(engine, registry_server):
    """An image with a fresh random layer, in the registry only (not in the engine's store)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("a.bin", "b.bin"):
            data = os.urandom(3 * 1024 * 1024)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    yield from _in_registry_only(engine, buf.getvalue(),
                                 f"{registry_server.host}/classroom/pulltest")


def _in_registry_only(engine, layer: bytes, repo: str, auth=None):
    """Push a one-layer image to ``repo`` and drop it locally; remove any pulled copy after."""
    local = f"registry-only-src:{uuid.uuid4().hex[:6]}"
    engine.images.import_rootfs(layer, local)
    ref = f"{repo}:{uuid.uuid4().hex[:6]}"
    engine.registry.push(ref, source=local, auth=auth)
    engine.images.remove(local, force=True)
    yield ref
    try:
        engine.images.remove(ref, force=True)
    except Exception:
        pass


def test_pull_shows_live_layer_progress_and_owner(browser, dashboard, make_user, pushed_image):
    carol, dave = make_user("carol"), make_user("dave")
    ctx, page = login(browser, dashboard, carol)
    try:
        page.goto(f"{dashboard.url}/images/pull/")
        page.fill("#ref", pushed_image)
        page.click("#pull-form button[type=submit]")
        # A bar per layer appears while it downloads, then the pull completes.
        page.wait_for_selector(".layer progress")
        page.wait_for_selector("#pull-done:not([hidden])", timeout=60000)
        statuses = page.eval_on_selector_all(".layer", "ls => ls.map(l => l.dataset.status)")
        assert statuses and all(s in ("Pull complete", "Already exists") for s in statuses)
        full = page.eval_on_selector_all(".layer progress", "ps => ps.every(p => p.value >= p.max)")
        assert full
        shot(page, "10-pull-progress")
        page.goto(f"{dashboard.url}/images/")
        row = page.locator("tr", has_text=pushed_image.split("/", 1)[1].split(":")[0])
        assert "carol" in row.first.text_content()
        shot(page, "11-images-list")
        # The puller owns it: another user does not see it.
        ctx2, page2 = login(browser, dashboard, dave)
        page2.goto(f"{dashboard.url}/images/")
        assert "pulltest" not in page2.content()
        ctx2.close()
    finally:
        ctx.close()


def test_pull_of_a_missing_image_says_why(browser, dashboard, make_user, registry_server):
    ctx, page = login(browser, dashboard, make_user("erin"))
    try:
        page.goto(f"{dashboard.url}/images/pull/")
        page.fill("#ref", f"{registry_server.host}/no/such-image:1")
        page.click("#pull-form button[type=submit]")
        page.wait_for_selector("#pull-status.error")
        text = page.locator("#pull-status").text_content()
        assert "such-image" in text and "Traceback" not in text
        shot(page, "12-pull-error")
    finally:
        ctx.close()


@pytest.fixture
def private_image(engine, auth_registry_server):
    """An image in a registry that asks for a password (and not in the engine's store)."""
    from engine.registry.auth import Credentials

    creds = Credentials(auth_registry_server.user, auth_registry_server.password)
    yield from _in_registry_only(engine, _one_file_tar(),
                                 f"{auth_registry_server.host}/classroom/private", creds)


def _one_file_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = os.urandom(64 * 1024)
        info = tarfile.TarInfo("secret.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _pull(page, dashboard, ref: str) -> None:
    page.goto(f"{dashboard.url}/images/pull/")
    page.fill("#ref", ref)
    page.click("#pull-form button[type=submit]")


def test_registry_login_is_checked_kept_and_used_for_that_user_only(
        browser, dashboard, make_user, auth_registry_server, private_image):
    ctx, page = login(browser, dashboard, make_user("frank"))
    ctx2, page2 = login(browser, dashboard, make_user("gina"))
    try:
        page.goto(f"{dashboard.url}/images/registries/")
        page.fill("#id_registry", auth_registry_server.host)
        page.fill("#id_username", auth_registry_server.user)
        page.fill("#id_password", "wrong-password")
        page.click("#registry-login-form button")
        error = page.locator("#registry-login-form .err").text_content()
        assert auth_registry_server.host in error or "unauthorized" in error.lower(), error
        assert page.locator(f"tr[data-registry='{auth_registry_server.host}']").count() == 0
        page.fill("#id_username", auth_registry_server.user)
        page.fill("#id_password", auth_registry_server.password)
        page.click("#registry-login-form button")
        row = page.locator(f"tr[data-registry='{auth_registry_server.host}']")
        assert auth_registry_server.user in row.text_content()
        assert auth_registry_server.password not in page.content()
        shot(page, "13-registry-logins")

        _pull(page, dashboard, private_image)               # frank's login is used
        page.wait_for_selector("#pull-done:not([hidden])", timeout=60000)

        _pull(page2, dashboard, private_image)              # gina has none: refused, says why
        page2.wait_for_selector("#pull-status.error", timeout=60000)
        text = page2.locator("#pull-status").text_content()
        assert "private" in text and "Traceback" not in text, text

        page.goto(f"{dashboard.url}/images/registries/")     # logging out forgets it
        row.locator("button").click()
        assert page.locator(f"tr[data-registry='{auth_registry_server.host}']").count() == 0
    finally:
        ctx.close()
        ctx2.close()


def test_push_from_the_image_page_tags_and_shows_each_layer(browser, dashboard, make_user,
                                                            pushed_image, engine,
                                                            registry_server):
    """The owner pushes under a new name (tagged first) with a bar per layer; the registry
    has it; someone who may not see the image is told it does not exist."""
    import requests

    carol, dave = make_user("carol"), make_user("dave")
    ctx, page = login(browser, dashboard, carol)
    repo = f"classroom/pushed-{uuid.uuid4().hex[:6]}"
    target = f"{registry_server.host}/{repo}:1"
    try:
        page.goto(f"{dashboard.url}/images/pull/")
        page.fill("#ref", pushed_image)
        page.click("#pull-form button[type=submit]")
        page.wait_for_selector("#pull-done:not([hidden])", timeout=60000)
        image_id = engine.images.resolve(pushed_image).id
        page.goto(f"{dashboard.url}/images/{image_id}/")
        assert page.input_value("#target") == pushed_image  # already a registry's name
        page.fill("#target", target)
        page.click("#push-form button[type=submit]")
        page.wait_for_selector("#push-status.success", timeout=60000)
        assert target in page.text_content("#push-status")
        assert "sha256:" in page.text_content("#push-status")
        statuses = page.eval_on_selector_all("#push-layers .layer",
                                             "ls => ls.map(l => l.dataset.status)")
        assert statuses and all(s in ("Pushed", "Layer already exists", "Mounted from")
                                or s.startswith("Mounted from") for s in statuses), statuses
        shot(page, "12-push-progress")
        tags = requests.get(f"http://{registry_server.host}/v2/{repo}/tags/list", timeout=10)
        assert tags.json()["tags"] == ["1"]
        assert target in engine.images.resolve(image_id).repo_tags  # tagged first
        # dave may not see carol's image: his own socket hears that it does not exist
        ctx2, page2 = login(browser, dashboard, dave)
        said = page2.evaluate("""([image, target]) => new Promise((done) => {
            const ws = new WebSocket(`ws://${location.host}/ws/images/push/`);
            ws.onopen = () => ws.send(JSON.stringify({image, target}));
            ws.onmessage = (m) => { done(JSON.parse(m.data)); ws.close(); };
        })""", [image_id, f"{registry_server.host}/{repo}:stolen"])
        ctx2.close()
        assert "error" in said and "No such image" in said["error"], said
        tags = requests.get(f"http://{registry_server.host}/v2/{repo}/tags/list", timeout=10)
        assert tags.json()["tags"] == ["1"]
    finally:
        ctx.close()
        try:
            engine.images.remove(target)
        except Exception:
            pass
