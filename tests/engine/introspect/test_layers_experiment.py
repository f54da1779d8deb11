"""The dive-like layer report, the with/without experiment, and the real VM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.introspect.experiment import run_experiment
from engine.introspect.layers import analyze_layers, layer_providing


@pytest.fixture
def three_layers(tmp_path: Path) -> list[Path]:
    l0, l1, l2 = (tmp_path / n for n in ("l0", "l1", "l2"))
    (l0 / "etc").mkdir(parents=True)
    (l0 / "etc" / "big").write_bytes(b"x" * 1000)
    (l0 / "etc" / "conf").write_bytes(b"a" * 100)
    (l1 / "etc").mkdir(parents=True)
    (l1 / "etc" / "conf").write_bytes(b"b" * 150)  # changed
    (l1 / "app").mkdir()
    (l1 / "app" / "main").write_bytes(b"m" * 10)  # added
    (l2 / "etc").mkdir(parents=True)
    os.mknod(l2 / "etc" / "big", 0o600 | 0o020000, os.makedev(0, 0))  # removed
    return [l0, l1, l2]


def test_added_changed_removed_and_wasted_space(three_layers):
    history = [
        {"created_by": "ADD rootfs /"},
        {"created_by": "ENV A=1", "empty_layer": True},
        {"created_by": "COPY . /app"},
        {"created_by": "RUN rm /etc/big"},
    ]
    report = analyze_layers(three_layers, history)
    layers = report["layers"]
    assert [x["created_by"] for x in layers] == ["ADD rootfs /", "COPY . /app", "RUN rm /etc/big"]
    status = {(x["index"], e["path"]): e["status"] for x in layers for e in x["entries"]}
    assert status[(0, "/etc/big")] == "added"
    assert status[(1, "/etc/conf")] == "changed"
    assert status[(1, "/app/main")] == "added"
    assert status[(2, "/etc/big")] == "removed"
    assert (1, "/etc") not in status  # a directory that only carries changes is no change
    assert report["total_bytes"] == 1000 + 100 + 150 + 10
    assert report["visible_bytes"] == 150 + 10
    assert report["wasted_bytes"] == 1100
    assert report["efficiency"] == round(160 / 1260, 4)
    assert {w["path"] for w in report["wasted_paths"]} == {"/etc/big", "/etc/conf"}
    assert layer_providing(three_layers, "/etc/conf") == 1
    assert layer_providing(three_layers, "/etc/big") is None


def test_a_missing_layer_dir_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidArgument, match="layer 0"):
        analyze_layers([tmp_path / "nope"])


def test_with_and_without_a_uts_namespace():
    result = run_experiment("hostname")
    assert result["without"]["output"].strip() == os.uname().nodename
    assert result["with"]["output"].strip() == "estiba-lesson"
    assert os.uname().nodename != "estiba-lesson"  # the host never saw it


def test_with_and_without_a_pid_namespace():
    result = run_experiment("ps")
    inside = result["with"]["output"].splitlines()[1:]
    assert [line.split()[0] for line in inside] == ["1"]
    assert len(result["without"]["output"].splitlines()) > 3


def test_only_listed_experiments_run():
    with pytest.raises(InvalidArgument, match="no experiment named"):
        run_experiment("rm -rf /")
