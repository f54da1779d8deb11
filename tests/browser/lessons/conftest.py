"""Headless Chromium on the lessons, against the dashboard's real stack.

The stack (SQLite, a Celery worker as root, daphne) is tests/web's; its
session fixtures are imported here. Chromium is Debian's, launched with the
flags TESTING.md lists and a fresh profile; screenshots go to
test-artifacts/lessons/.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.web.conftest import live_server, make_user, web_env, web_worker  # noqa: F401

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "lessons"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tempfile.mkdtemp(prefix="estiba-chromium-")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def teacher(make_user):  # noqa: F811
    """An admin (a teacher sees every container of the classroom host)."""
    return make_user("teacher", admin=True)


@pytest.fixture(scope="session")
def logged_in(browser, live_server, teacher):  # noqa: F811
    name, password, _pk = teacher
    page = browser.new_page()
    page.goto(live_server.url + "/login/")
    page.fill("#id_username", name)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.close()
    return live_server


@pytest.fixture
def page_in(browser, logged_in):
    """``page_in(lang)``: a new tab whose Django language cookie says ``lang``."""
    pages = []

    def make(lang: str):
        browser.add_cookies([{"name": "django_language", "value": lang,
                              "url": logged_in.url}])
        page = browser.new_page()
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class LessonContainer:
    id: str
    pid: int


@pytest.fixture(scope="module")
def lesson_container(web_env, web_worker):  # noqa: F811
    """A running busybox container with a memory limit, made by the worker, in the projection.

    Made through the gateway, as the dashboard does (and because pyroute2 must not
    share a thread with Playwright's event loop).
    """
    from containers_app.models import Container
    from engine.errors import NotFound
    from estiba import gateway

    spec = {"image": "busybox:latest", "cmd": ["sh", "-c", "sleep 900"], "hostname": "aula",
            "memory": 64 << 20}
    cid = gateway.call("containers.create", spec)["Id"]
    try:
        gateway.call("containers.start", cid)
        pid = gateway.call("containers.get", cid)["State"]["Pid"]
        def projected() -> bool:  # the worker's projection, read from the session's SQLite file
            with sqlite3.connect(web_env.env["ESTIBA_SQLITE_PATH"], timeout=10) as db:
                return bool(db.execute(
                    f"SELECT count(*) FROM {Container._meta.db_table}"
                    " WHERE engine_id = ? AND state = 'running'", (cid,)).fetchone()[0])

        deadline = time.monotonic() + 20
        while not projected():
            if time.monotonic() > deadline:
                pytest.fail("the worker's reconcile never showed the container")
            time.sleep(0.2)
        yield LessonContainer(cid, pid)
    finally:
        with contextlib.suppress(NotFound):
            gateway.call("containers.remove", cid, force=True)


def inside(pid: int, script: str) -> None:
    """Run the container's own shell in its namespaces and root (as an exec would)."""
    subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--",
                    "/bin/sh", "-c", script], check=True, timeout=10)


@pytest.fixture(autouse=True)
def _live_server_helper():
    """Override pytest-django's helper of the same name: it sees our ``live_server``
    (tests/web's daphne, not pytest-django's) and would set up a test database."""
    yield
