"""Headless Chromium on the lessons, against the dashboard's real stack.

The stack (SQLite, a Celery worker as root, daphne) and Chromium come from
tests/browser/conftest.py (tests/web's fixtures); this adds a logged-in
teacher, a running container and screenshots in test-artifacts/lessons/.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "lessons"


@pytest.fixture(scope="session")
def teacher(make_user):
    """An admin (a teacher sees every container of the classroom host)."""
    return make_user("teacher", admin=True)


@pytest.fixture(scope="session")
def lessons_context(browser):
    """One browser context (cookies shared by its tabs) for the lessons' tests."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


@pytest.fixture(scope="session")
def logged_in(lessons_context, dashboard, teacher):
    name, password, _pk = teacher
    page = lessons_context.new_page()
    page.goto(dashboard.url + "/login/")
    page.fill("#id_username", name)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.close()
    return dashboard


@pytest.fixture
def page_in(lessons_context, logged_in):
    """``page_in(lang)``: a new tab whose Django language cookie says ``lang``."""
    pages = []

    def make(lang: str):
        lessons_context.add_cookies([{"name": "django_language", "value": lang,
                                      "url": logged_in.url}])
        page = lessons_context.new_page()
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
def lesson_container(web_env, web_worker):
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



@dataclass
class LessonApi:
    socket: str

    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """The real docker CLI (client only) against this API server."""
        import os
        import tempfile

        with tempfile.TemporaryDirectory(prefix="docker-config-") as config:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": config,
                   "DOCKER_CONFIG": config, "DOCKER_BUILDKIT": "0"}
            proc = subprocess.run(["docker", "-H", f"unix://{self.socket}", *args], env=env,
                                  capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
        return proc


@pytest.fixture(scope="session")
def lesson_api(web_env, web_worker):
    """estiba's Docker API on a private socket, beside the dashboard: same database,
    Redis (so the same channel layer) and host queue, as in a real install."""
    import shutil
    import socket
    import sys

    from tests.fixtures.services import stop

    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    sock = str(web_env.workdir / "lesson-api.sock")
    log = web_env.workdir / "lesson-api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dockerapi.server", "--socket", sock,
                                 "--tcp", ""], cwd=REPO, env=web_env.env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the API server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(sock)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the API server is not listening:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        yield LessonApi(sock)
    finally:
        stop(proc)
