"""The estiba CLI runs against the same real API server the API tests use.

``estiba(*args, input=, check=, host=)`` runs the CLI in a subprocess with a
private HOME and XDG_CONFIG_HOME (so ``estiba login`` saves its token there);
``host=None`` talks to the socket through ESTIBA_HOST, ``host="tcp://..."``
passes ``-H`` instead, and ``host=""`` gives neither (the saved host is used).
"""

import os
import subprocess
import sys

import pytest

from tests.web.api.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    api_env,
    api_server,
    api_worker,
    dclient,
    made,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def estiba(api_server, tmp_path):  # noqa: F811  (the imported fixture)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": REPO,
           "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "COLUMNS": "100",
           "ESTIBA_HOST": api_server.base_url}

    def run(*args: str, input: str | None = None, check: bool = True, host: str | None = None):
        e = dict(env)
        if host is not None:
            e.pop("ESTIBA_HOST")
            args = ("-H", host, *args) if host else args
        proc = subprocess.run([sys.executable, "-m", "estiba_cli.main", *args], env=e,
                              input=input, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"estiba {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    run.env = env
    return run
