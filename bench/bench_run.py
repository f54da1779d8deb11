"""Bench: ``run --rm busybox true`` through estiba's Python API beside a plain ``runc run``.

What it measures, per iteration, interleaved so all see the same machine:

* estiba ``run --rm``: what the docker CLI sends for it — ``create`` with
  ``AutoRemove``, ``start``, ``wait`` until removed — of a busybox container
  running ``true`` (network mode "none"): spec writing, the overlay mount,
  the supervisor, the runtime, the exit record, the removal (the target);
* estiba ``create`` + ``start`` + ``wait`` + ``remove``, as docker-py's
  ``run(remove=True)`` does it from the client (a kept root, so its unmount
  flushes the upper dir's filesystem, which an AutoRemove root skips);
* runc: ``runc run`` of an equivalent bundle — the very ``config.json`` estiba
  wrote (same namespaces, seccomp filter, capabilities, mounts, cgroups) on a
  pre-mounted overlay root — which is the floor any engine stands on.

Prints median and spread (p10..p90, stdev) of each, the ratio and the median
overhead. Target: estiba's overhead over runc below 30 ms median.
Usage (root): ``.venv/bin/python bench/bench_run.py [-n 30] [--runtime runc|crun]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import Engine, EngineConfig
from engine.images.busybox import ensure_busybox
from engine.runtime import rootfs
from engine.runtime.containers import ContainerSpec


def run_engine(engine: Engine) -> float:
    """``docker run --rm``: the engine removes the container itself."""
    t0 = time.perf_counter()
    c = engine.containers.create(ContainerSpec(image="busybox:latest", cmd=["true"],
                                               network_mode="none", auto_remove=True))
    engine.containers.start(c.id)
    code = engine.containers.wait(c.id, condition="removed")
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"the engine's container exited with {code}")
    return elapsed


def run_engine_client_remove(engine: Engine) -> float:
    """create, start, wait, remove: the client removes the container."""
    t0 = time.perf_counter()
    c = engine.containers.create(ContainerSpec(image="busybox:latest", cmd=["true"],
                                               network_mode="none"))
    engine.containers.start(c.id)
    code = engine.containers.wait(c.id)
    engine.containers.remove(c.id)
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"the engine's container exited with {code}")
    return elapsed


def make_bundle(engine: Engine, base: Path) -> tuple[Path, dict]:
    """A bundle with the config.json estiba writes, on its own overlay root."""
    c = engine.containers.create(ContainerSpec(image="busybox:latest", cmd=["sleep", "5"],
                                               network_mode="none"))
    engine.containers.start(c.id)
    config = json.loads((c.bundle / "config.json").read_text())
    engine.containers.remove(c.id, force=True)
    bundle = base / "bundle"
    layers = [Path(p) for p in c.config["LayerDirs"]]
    rootfs.mount_overlay(layers, base / "upper", base / "work", bundle / "rootfs")
    config["process"]["args"] = ["true"]
    config["mounts"] = [m for m in config["mounts"] if m.get("type") != "bind"]
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle, config


def run_runtime(engine: Engine, bundle: Path, config: dict, prefix: str) -> float:
    rid = f"{prefix}-bench-{uuid.uuid4().hex[:12]}"
    config["linux"]["cgroupsPath"] = f"/{prefix}/{rid}"
    (bundle / "config.json").write_text(json.dumps(config))
    argv = engine.containers.runtime.command("run", "--bundle", str(bundle), rid)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"runtime run failed: {proc.stderr.decode()[-300:]}")
    return elapsed


def describe(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=10)
    return (f"{name:<22} median {statistics.median(ms):7.1f} ms   p10 {q[0]:7.1f}   "
            f"p90 {q[-1]:7.1f}   stdev {statistics.stdev(ms):6.1f}   (n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=30, help="iterations of each (default 30)")
    parser.add_argument("--runtime", choices=["runc", "crun"], default=None)
    args = parser.parse_args()
    base = Path("/var/tmp") / f"estiba-bench-{uuid.uuid4().hex[:6]}"
    prefix = f"eb{uuid.uuid4().hex[:4]}"
    config = EngineConfig(root=base / "root", run_dir=base / "run", prefix=prefix,
                          runtime=args.runtime)
    engine = Engine(config=config)
    try:
        ensure_busybox(engine.images)
        bundle, spec = make_bundle(engine, base / "plain")
        runtime = engine.containers.runtime
        print(f"runtime: {runtime.name} {runtime.version}; iterations: {args.n}")
        for _ in range(3):  # warm caches (page cache, seccomp conversion, the launcher)
            run_engine(engine)
            run_engine_client_remove(engine)
            run_runtime(engine, bundle, spec, prefix)
        ours, client, theirs = [], [], []
        for _ in range(args.n):
            ours.append(run_engine(engine))
            client.append(run_engine_client_remove(engine))
            theirs.append(run_runtime(engine, bundle, spec, prefix))
        print(describe("estiba run --rm true", ours))
        print(describe("estiba create..remove", client))
        print(describe(f"{runtime.name} run (same bundle)", theirs))
        m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
        print(f"ratio estiba/{runtime.name}: {m_ours / m_theirs:.2f}x   "
              f"overhead: {(m_ours - m_theirs) * 1000:.1f} ms median (target < 30 ms)")
        print(f"create..remove overhead: "
              f"{(statistics.median(client) - m_theirs) * 1000:.1f} ms median")
    finally:
        rootfs.unmount(base / "plain" / "bundle" / "rootfs")
        for path in rootfs.mounts_below(base):
            rootfs.unmount(Path(path))
        for cg in Path("/sys/fs/cgroup").glob(f"*/{prefix}"):
            for child in cg.iterdir():
                if child.is_dir():
                    child.rmdir()
            cg.rmdir()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
