"""``make run``'s script, for real: every service up, an admin who logs in, Ctrl-C stops all.

scripts/run.sh runs here on private ports, a private state directory, socket,
database and host prefix, so it never meets another estiba on this machine.
Twice: the second run must find everything made and print no new password.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from engine import Engine, EngineConfig
from tests.fixtures.engine import TEST_BASE
from tests.fixtures.services import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def start(env: dict) -> tuple[subprocess.Popen, list[str]]:
    """run.sh in its own process group; its output up to the 'dashboard at' line."""
    proc = subprocess.Popen(["bash", "scripts/run.sh"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "dashboard at" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("run.sh did not come up:\n" + "\n".join(lines))


def interrupt(proc: subprocess.Popen, state: Path) -> str:
    """Ctrl-C: SIGINT to the group, as a terminal sends it; every process gone after."""
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and processes_of(state):
        time.sleep(0.2)
    assert not processes_of(state), processes_of(state)
    return rest


def processes_of(state: Path) -> list[str]:
    """Processes whose environment names the private state directory."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if f"ESTIBA_STATE={state}".encode() in environ and int(pid) != os.getpid():
            found.append(f"{pid}: {cmdline.decode(errors='replace')[:80]}")
    return found


def log_in(url: str, user: str, password: str) -> requests.Session:
    s = requests.Session()
    page = s.get(f"{url}/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    answer = s.post(f"{url}/login/", data={"username": user, "password": password,
                                            "csrfmiddlewaretoken": token},
                    headers={"Referer": f"{url}/login/"}, timeout=10)
    assert answer.ok and "/login/" not in answer.url, answer.url
    return s


def test_make_run_serves_everything_and_stops_on_ctrl_c():
    if os.geteuid() != 0:
        pytest.skip("run.sh runs as root")
    tag = uuid.uuid4().hex[:5]
    state = TEST_BASE / f"run-{tag}"
    http, api_tcp = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = dict(os.environ, ESTIBA_STATE=str(state), ESTIBA_RUN=str(state / "run"),
               ESTIBA_REDIS_PORT=str(free_port()), ESTIBA_REGISTRY_ADDR=f"127.0.0.1:{free_port()}",
               ESTIBA_HTTP=http, ESTIBA_API_TCP=api_tcp, ESTIBA_PREFIX=f"er{tag}",
               ESTIBA_HOSTNAME=f"run-{tag}", ESTIBA_SQLITE_PATH=str(state / "db.sqlite3"))
    env.pop("ESTIBA_ADMIN_PASSWORD", None)
    for key in ("ESTIBA_ROOT", "ESTIBA_RUN_DIR", "ESTIBA_STATE_DIR", "REDIS_URL",
                "ESTIBA_API_SOCKET", "ESTIBA_REGISTRY"):
        env.pop(key, None)
    socket_path = state / "run" / "estiba.sock"
    try:
        proc, lines = start(env)
        try:
            said = re.search(r"admin account 'admin' with password: (\S+)", "\n".join(lines))
            assert said, lines
            password = said[1]
            url = f"http://{http}"
            session = log_in(url, "admin", password)
            assert "busybox:latest" in session.get(f"{url}/images/", timeout=10).text
            assert session.get(f"{url}/", timeout=10).ok  # the containers page
            # The docker CLI, unchanged, over the root-only socket
            assert oct(socket_path.stat().st_mode & 0o777) == "0o660"
            docker = ["docker", "-H", f"unix://{socket_path}"]
            out = subprocess.run([*docker, "run", "--rm", "busybox", "echo", "hi"],
                                 capture_output=True, text=True, timeout=60)
            assert out.stdout.strip() == "hi", out.stderr
            assert requests.get(f"http://{api_tcp}/_ping", timeout=5).text == "OK"
        finally:
            interrupt(proc, state)
        assert not socket_path.exists() or not _answers(socket_path)

        # A second run makes nothing new: the admin exists, busybox exists.
        proc, lines = start(env)
        try:
            assert not any("password:" in line for line in lines), lines
            assert not any("made busybox" in line for line in lines), lines
            log_in(f"http://{http}", "admin", password)
        finally:
            interrupt(proc, state)
    finally:
        for p in processes_of(state):
            os.kill(int(p.split(":")[0]), signal.SIGKILL)
        engine = Engine(config=EngineConfig(root=state, run_dir=state / "run",
                                            prefix=f"er{tag}"))
        engine.networks.remove_host_objects()
        subprocess.run(["sh", "-c", f"grep -o ' {state}[^ ]*' /proc/self/mountinfo | sort -r"
                        " | xargs -r -n1 umount -l"], check=False)
        for parent in Path("/sys/fs/cgroup").glob(f"*/er{tag}*"):
            parent.rmdir()  # the engine's empty cgroup parents
        shutil.rmtree(state, ignore_errors=True)


def _answers(path: Path) -> bool:
    out = subprocess.run(["curl", "-s", "--max-time", "2", "--unix-socket", str(path),
                          "http://api/_ping"], capture_output=True, text=True)
    return out.stdout == "OK"
