"""The dashboard for real: a migrated database, a Celery worker as root, daphne.

Once per session: a SQLite file, a real Celery worker (thread pool) consuming a
private host queue on the session's engine root (``engine`` fixture: busybox
imported), and daphne on a free port — all subprocesses on the session's Redis,
stopped and removed at the end. The test process itself points Django's
settings at the same Redis, host and database, so ``estiba.gateway`` and the
ORM in a test talk to the same worker and rows as the browser does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.services import free_port, stop

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def wait_for(check, what: str, proc: subprocess.Popen | None = None, timeout: float = 60,
             log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} not ready in {timeout}s:\n{tail}")


@dataclass
class WebEnv:
    env: dict
    workdir: Path
    host: str

    def manage(self, *args: str, input: str | None = None) -> str:
        out = subprocess.run([PY, "manage.py", *args], cwd=REPO, env=self.env, input=input,
                             capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stderr[-3000:]}")
        return out.stdout


@pytest.fixture(scope="session")
def web_env(engine, engine_config, redis_server, registry_server) -> Iterator[WebEnv]:
    """Environment for the worker, daphne and this process; a migrated SQLite file."""
    workdir = Path(tempfile.mkdtemp(prefix="estiba-web-"))
    host = f"webtest-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "estiba.settings",
        "REDIS_URL": redis_server.url,
        "ESTIBA_ROOT": str(engine_config.root),
        "ESTIBA_RUN_DIR": str(engine_config.run_dir),
        "ESTIBA_PREFIX": engine_config.prefix,
        "ESTIBA_HOSTNAME": host,
        "ESTIBA_SQLITE_PATH": str(workdir / "db.sqlite3"),
        "ESTIBA_STATE_DIR": str(workdir / "state"),
        "ESTIBA_SECRET_KEY": "web-tests-" + uuid.uuid4().hex,
        "ESTIBA_REGISTRY": registry_server.host,
        "ESTIBA_RECONCILE_INTERVAL": "1",
        "PYTHONPATH": str(REPO),
    })
    (workdir / "state").mkdir()
    web = WebEnv(env, workdir, host)
    web.manage("migrate", "--noinput", "-v", "0")
    _point_this_process_at(web)
    try:
        yield web
    finally:
        if os.environ.get("ESTIBA_KEEP_TEST_LOGS"):  # to read daphne.log and worker.log after
            print(f"\nweb test logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _point_this_process_at(web: WebEnv) -> None:
    """Settings of the test process: same Redis, host and database as the subprocesses."""
    from django.conf import settings
    from django.db import connections

    from estiba.celery import app
    from estiba.settings import channel_layers

    url = web.env["REDIS_URL"]
    settings.REDIS_URL = url
    settings.ESTIBA_HOSTNAME = web.host
    settings.ESTIBA_REGISTRY = web.env["ESTIBA_REGISTRY"]
    settings.CHANNEL_LAYERS = channel_layers(url)
    app.conf.update(broker_url=url, result_backend=url)
    connections["default"].settings_dict["NAME"] = web.env["ESTIBA_SQLITE_PATH"]


@pytest.fixture(scope="session")
def web_worker(web_env: WebEnv) -> Iterator[str]:
    """A real Celery worker, as root, consuming this session's host queue."""
    import redis

    log = web_env.workdir / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", "celery", "-A", "estiba", "worker", "-P", "threads", "-c", "24",
             "-Q", f"host.{web_env.host}", "-n", f"estiba@{web_env.host}", "--without-gossip",
             "--without-mingle", "-l", "warning"],
            cwd=REPO, env=web_env.env, stdout=out, stderr=subprocess.STDOUT)
    r = redis.Redis.from_url(web_env.env["REDIS_URL"])
    try:
        wait_for(lambda: r.exists(f"estiba:host:{web_env.host}:alive"), "the Celery worker",
                 proc, log=log)
        yield web_env.host
    finally:
        stop(proc)


@dataclass
class LiveServer:
    url: str
    web: WebEnv


@pytest.fixture(scope="session")
def dashboard(web_env: WebEnv, web_worker: str) -> Iterator[LiveServer]:
    """daphne serving the dashboard on a free loopback port."""
    port = free_port()
    log = web_env.workdir / "daphne.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "estiba.asgi:application"],
            cwd=REPO, env=web_env.env, stdout=out, stderr=subprocess.STDOUT)

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True

    try:
        wait_for(ready, "daphne", proc, log=log)
        yield LiveServer(f"http://127.0.0.1:{port}", web_env)
    finally:
        stop(proc)


CREATE_USER = """
from django.contrib.auth import get_user_model
U = get_user_model()
u, _ = U.objects.get_or_create(username={name!r})
u.is_staff = u.is_superuser = {admin!r}
u.set_password({password!r})
u.save()
print(u.pk)
"""


@pytest.fixture(scope="session")
def make_user(web_env: WebEnv):
    """Create (or reset) a user in the session's database; returns (name, password, pk)."""

    def make(name: str, admin: bool = False) -> tuple[str, str, int]:
        password = "pw-" + uuid.uuid4().hex[:10]
        out = web_env.manage("shell", "-c",
                             CREATE_USER.format(name=name, admin=admin, password=password))
        return name, password, int(out.strip().splitlines()[-1])

    return make


@pytest.fixture
def orm(web_env: WebEnv, django_db_blocker):
    """The ORM on the session's database (shared with the worker and daphne, committed)."""
    from django.db import connections

    connections["default"].settings_dict["NAME"] = web_env.env["ESTIBA_SQLITE_PATH"]
    with django_db_blocker.unblock():
        yield
        connections["default"].close()


@pytest.fixture
def containers_made(web_worker, engine) -> Iterator[list[str]]:
    """Container ids a test made; force-removed at its end whatever happened."""
    made: list[str] = []
    yield made
    for cid in made:
        try:
            engine.containers.remove(cid, force=True)
        except Exception:
            pass


def eventually(check, timeout: float = 10, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")
