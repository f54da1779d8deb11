"""``estiba login`` then work over TCP with the saved token; ``estiba logs -f`` follows.

The same real API server as the other CLI tests (a UNIX socket for root and a
TCP port that wants a token); the user is made in the session's database.
"""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import time

import pytest

from tests.cli.conftest import REPO

USER = """
from django.contrib.auth import get_user_model
U = get_user_model()
u, _ = U.objects.get_or_create(username="carol")
u.set_password("carol-pw-123")
u.save()
"""


@pytest.fixture(scope="module")
def carol(api_server):
    subprocess.run([sys.executable, "manage.py", "shell", "-c", USER], cwd=REPO,
                   env=api_server.env, check=True, capture_output=True, timeout=60)
    return "carol", "carol-pw-123"


def test_login_then_use_tcp_with_the_token(estiba, api_server, carol, made, dclient):
    tcp = api_server.tcp_url
    user, password = carol
    # No token yet: TCP refuses, in one line that says what to do.
    proc = estiba("ps", host=tcp, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "estiba login" in proc.stderr
    # A wrong password saves nothing.
    proc = estiba("-H", tcp, "login", "-u", user, "--password-stdin", input="wrong\n",
                  host="", check=False)
    assert proc.returncode == 1 and "carol" in proc.stderr
    cfg = os.path.join(estiba.env["XDG_CONFIG_HOME"], "estiba", "config.json")
    assert not os.path.exists(cfg)

    out = estiba("-H", tcp, "login", "-u", user, "--password-stdin", input=password + "\n",
                 host="").stdout
    assert out.startswith("Login Succeeded")
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o600
    with open(cfg) as fh:
        saved = json.load(fh)
    assert saved["host"] == tcp and saved["token"] and saved["token"] not in out

    # From now on, no -H and no ESTIBA_HOST: the saved host and token are used.
    assert "CONTAINER ID" in estiba("ps", host="").stdout
    who = estiba("-H", tcp, "version", "--format", "json", host="")
    assert json.loads(who.stdout)["Server"]["ApiVersion"] == "1.41"
    name = made.uniq()
    cid = estiba("run", "-d", "--name", name, "busybox", "sh", "-c", "echo over-tcp; sleep 60",
                 host="").stdout.strip()
    assert len(cid) == 64
    deadline = time.monotonic() + 10
    while (logs := estiba("logs", name, host="").stdout) != "over-tcp\n":
        assert time.monotonic() < deadline, logs
        time.sleep(0.1)
    rows = json.loads(estiba("ps", "--format", "json", host="").stdout)
    assert cid in [r["Id"] for r in rows]
    assert dclient.api.inspect_container(cid)["Id"] == cid  # root on the socket sees it too
    assert estiba("rm", "-f", name, host="").stdout.strip() == name
    # A bad saved token: one line, non-zero.
    saved["token"] = "not-a-token"
    with open(cfg, "w") as fh:
        json.dump(saved, fh)
    proc = estiba("ps", host="", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1


def _read_until(proc: subprocess.Popen, text: bytes, timeout: float = 15) -> bytes:
    out = b""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    while text not in out:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{text!r} not seen; got {out!r}")
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"{text!r} not seen before EOF: {out!r}")
            out += chunk
    return out


def test_logs_follow_streams_a_line_written_later(estiba, made, dclient):
    name = made.uniq()
    estiba("run", "-d", "--name", name, "busybox", "sh", "-c",
           "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second; "
           "while [ ! -e /tmp/end ]; do sleep 0.05; done; echo last")
    proc = subprocess.Popen([sys.executable, "-m", "estiba_cli.main", "logs", "-f", name],
                            env=estiba.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = _read_until(proc, b"first\n")
        time.sleep(0.5)
        assert proc.poll() is None, "logs -f ended before the container did"
        assert b"second" not in out
        started = time.monotonic()
        dclient.containers.get(name).exec_run(["touch", "/tmp/go"])
        out += _read_until(proc, b"second\n")
        assert time.monotonic() - started < 5
        assert proc.poll() is None
        dclient.containers.get(name).exec_run(["touch", "/tmp/end"])
        out += _read_until(proc, b"last\n")
        # The container ends: so does logs -f, with everything it printed, in order.
        assert proc.wait(timeout=15) == 0
        out += proc.stdout.read()
        assert out == b"first\nsecond\nlast\n"
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
