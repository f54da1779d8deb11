"""The OCI runtime's calls: crun on a v1/v2 hybrid host sees a v1-only host, the host does not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.runtime.oci import UNIFIED_CONTROLLERS


def test_the_runtime_is_started_where_the_v2_controllers_are_hidden(engine):
    runtime = engine.containers.runtime
    if not runtime.hide_unified:
        pytest.skip(f"{runtime.name} needs no hidden controllers on this host")
    host_view = Path(UNIFIED_CONTROLLERS).read_text()
    proc = runtime.popen(["cat", UNIFIED_CONTROLLERS], stdout=subprocess.PIPE, text=True)
    seen, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and seen == ""  # /dev/null over it: a plain v1 host
    assert Path(UNIFIED_CONTROLLERS).read_text() == host_view  # the host's view is untouched
    assert runtime.state("no-such-container") is None  # its other calls go the same way
