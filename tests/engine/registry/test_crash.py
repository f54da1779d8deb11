"""kill -9 in the middle of a pull leaves the store consistent; the next pull finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from engine import Engine
from tests.engine.registry.conftest import random_image

ROOT = Path(__file__).resolve().parents[3]

CHILD = textwrap.dedent("""
    import json, sys, time
    from engine import Engine, EngineConfig
    args = json.loads(sys.argv[1])
    eng = Engine(config=EngineConfig(root=args["root"], run_dir=args["run"], prefix=args["prefix"]))
    started = False
    def slow(line):
        global started
        detail = line.get("progressDetail") or {}
        # the 12 MB layer has bytes on disk: the parent kills us mid-download
        if line.get("status") == "Downloading" and detail.get("total", 0) > 1_000_000:
            if not started and detail.get("current", 0) > 0:
                started = True
                print("GO", flush=True)
            time.sleep(0.25)  # a slow network: the parent kills us mid-download
    eng.registry.pull(args["ref"], progress=slow)
    print("FINISHED", flush=True)
""")


def assert_consistent(store) -> None:
    """Every indexed image is whole; no layer dir is published without its metadata."""
    for entry in store.layers_dir.iterdir():
        if not entry.name.startswith("."):
            assert (entry / "meta.json").exists(), f"half-published layer {entry.name}"
    for img in store.list(all=True):
        assert store.blobs.has(img.manifest_digest) and store.blobs.has(img.id)
        for layer in img.layers:
            assert store.blobs.has(layer.digest) and layer.path.is_dir()


def test_kill_9_during_pull(engine: Engine, empty_engine: Engine, registry_server,
                            scratch: Path) -> None:
    img = random_image(engine, "estiba-test/crash:1", [100_000, 12_000_000], scratch)
    target = f"{registry_server.host}/estiba/crash:1"
    try:
        engine.registry.push(target, source=img.id)
        cfg = empty_engine.config
        args = {"root": str(cfg.root), "run": str(cfg.run_dir), "prefix": cfg.prefix,
                "ref": target}
        child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline()
            assert line.strip() == "GO", child.stderr.read()
            time.sleep(0.4)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(10)
        assert child.returncode == -signal.SIGKILL

        store = Engine(config=cfg).images  # a fresh opening cleans the dead writer's temp files
        assert not store.exists(target)
        assert_consistent(store)
        assert not [p for p in store.tmp.iterdir()]
        assert not [p for p in store.layers_dir.iterdir() if p.name.startswith(".")]
        partial = [p for p in store.incoming.iterdir() if p.stat().st_size > 0]
        assert partial, "the interrupted download should be kept to be resumed"
        kept = sorted(p.stat().st_size for p in partial)

        lines: list[dict] = []
        pulled = Engine(config=cfg).registry.pull(target, progress=lines.append)
        assert [la.diff_id for la in pulled.layers] == [la.diff_id for la in img.layers]
        big = img.layer_dirs()[-1] / "data1.bin"
        assert (pulled.layer_dirs()[-1] / "data1.bin").read_bytes() == big.read_bytes()
        resumed = [x for x in lines if x.get("status") == "Resuming download"]
        # each resumed layer starts where its kept bytes end (a Range request); a layer whose
        # bytes were all there is only verified
        currents = [x["progressDetail"]["current"] for x in resumed]
        assert currents and set(currents) <= set(kept)
        assert not list(store.incoming.iterdir())
        assert_consistent(store)
    finally:
        engine.images.remove(img.id, force=True)
