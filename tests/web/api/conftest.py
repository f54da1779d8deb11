"""A real estiba API for clients nobody here wrote: docker-py and the docker CLI.

Once per session: a SQLite database (migrated), a real Celery worker for a
private host name on the session's engine root, and the API server on a
private UNIX socket and a free TCP port — all subprocesses, all stopped and
removed at the end. Tests name what they make with ``uniq()`` and the
``cleanup`` fixture force-removes it even when the test fails.
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
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.services import free_port, stop

REPO = Path(__file__).resolve().parents[3]
PY = sys.executable


@dataclass
class ApiServer:
    socket: str
    tcp_port: int
    env: dict
    workdir: Path

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.tcp_port}"


def _wait_for(check, what: str, proc: subprocess.Popen | None = None, timeout: float = 60,
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
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} not ready in {timeout}s:\n{tail}")


@pytest.fixture(scope="session")
def api_env(engine, engine_config, redis_server, registry_server) -> Iterator[dict]:
    """Environment shared by the worker and the server (and the engine fixture's root)."""
    workdir = Path(tempfile.mkdtemp(prefix="estiba-api-"))
    host = f"apitest-{uuid.uuid4().hex[:6]}"
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
        "ESTIBA_API_SPOOL": str(workdir / "spool"),
        "ESTIBA_REGISTRY": registry_server.host,
        "PYTHONPATH": str(REPO),
    })
    (workdir / "state").mkdir()
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env,
                   check=True, capture_output=True, timeout=120)
    try:
        yield env
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def api_worker(api_env) -> Iterator[str]:
    """A real Celery worker consuming this session's host queue."""
    import redis

    host = api_env["ESTIBA_HOSTNAME"]
    log = Path(api_env["ESTIBA_STATE_DIR"]) / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", "celery", "-A", "estiba", "worker", "-P", "threads", "-c", "16",
             "-Q", f"host.{host}", "-n", f"estiba@{host}", "--without-gossip",
             "--without-mingle", "-l", "warning"],
            cwd=REPO, env=api_env, stdout=out, stderr=subprocess.STDOUT)
    r = redis.Redis.from_url(api_env["REDIS_URL"])
    try:
        _wait_for(lambda: r.exists(f"estiba:host:{host}:alive"), "the Celery worker", proc,
                  log=log)
        yield host
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def api_server(api_env, api_worker) -> Iterator[ApiServer]:
    workdir = Path(api_env["ESTIBA_STATE_DIR"])
    sock = str(workdir / "api.sock")
    port = free_port()
    log = workdir / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", "dockerapi.server", "--socket", sock, "--tcp", f"127.0.0.1:{port}"],
            cwd=REPO, env=api_env, stdout=out, stderr=subprocess.STDOUT)

    def ready() -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(sock)
            return True

    try:
        _wait_for(ready, "the API server", proc, log=log)
        yield ApiServer(sock, port, api_env, workdir)
    finally:
        stop(proc)


@pytest.fixture
def dclient(api_server):
    import docker

    client = docker.DockerClient(base_url=api_server.base_url, version="auto", timeout=120)
    yield client
    client.close()


@dataclass
class Made:
    """What a test made, removed at its end whatever happened."""

    client: object
    containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def uniq(self, kind: str = "c") -> str:
        name = f"t{kind}-{uuid.uuid4().hex[:8]}"
        {"c": self.containers, "i": self.images, "v": self.volumes,
         "n": self.networks}[kind].append(name)
        return name


@pytest.fixture
def made(dclient) -> Iterator[Made]:
    import docker

    m = Made(dclient)
    yield m
    api = dclient.api
    for name in m.containers:
        try:
            api.remove_container(name, force=True, v=True)
        except docker.errors.NotFound:
            pass
    for name in m.networks:
        try:
            api.remove_network(name)
        except docker.errors.NotFound:
            pass
    for name in m.volumes:
        try:
            api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass
    for name in m.images:
        try:
            api.remove_image(name, force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def docker_cli(api_server, tmp_path):
    """Run the real docker CLI (client only) against the test server."""
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "DOCKER_CONFIG": str(config), "DOCKER_BUILDKIT": "0",
           "DOCKER_HOST": f"unix://{api_server.socket}"}

    def run(*args: str, input: str | None = None, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["docker", *args], env=env, input=input, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    run.env = env
    return run
