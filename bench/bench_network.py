"""Bench: what a bridge network adds to ``run --rm busybox true``.

Per iteration, interleaved so both see the same machine: a busybox ``true``
container created, started, waited for and removed through estiba's Python API,
once with network mode "none" and once on the default "bridge" network (a new
network namespace, a veth pair into the bridge, an address, a default route,
hosts and resolv.conf files, and the teardown of all of it). The difference of
the medians is the network's cost; the time spent inside
``networks.setup``/``networks.teardown`` is shown too (the rest of the
difference is the runtime joining a prepared namespace instead of making one,
and the supervisor's teardown of the network at exit).

Target: under 25 ms median. Usage (root):
``.venv/bin/python bench/bench_network.py [-n 30] [--runtime runc|crun]``
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import remove_cgroup_parents

from engine import Engine, EngineConfig
from engine.images.busybox import ensure_busybox
from engine.runtime.containers import ContainerSpec


def run_once(engine: Engine, mode: str) -> float:
    t0 = time.perf_counter()
    c = engine.containers.create(
        ContainerSpec(image="busybox:latest", cmd=["true"], network_mode=mode)
    )
    engine.containers.start(c.id)
    code = engine.containers.wait(c.id)
    engine.containers.remove(c.id)
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"the container on network {mode!r} exited with {code}")
    return elapsed


def timed(obj, name: str, sink: list[float]) -> None:
    """Record the duration of every call of ``obj.name`` (the real method, unchanged)."""
    method = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - t0)

    setattr(obj, name, wrapper)


def describe(label: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p10 = ms[max(0, len(ms) // 10)]
    p90 = ms[min(len(ms) - 1, (len(ms) * 9) // 10)]
    return (
        f"{label:<28} median {statistics.median(ms):7.1f} ms   p10 {p10:6.1f}   "
        f"p90 {p90:6.1f}   n={len(ms)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=30, help="iterations of each mode")
    parser.add_argument("--runtime", default=None, help="runc or crun (default: the engine's)")
    args = parser.parse_args()

    token = uuid.uuid4().hex[:6]
    base = Path(f"/var/tmp/estiba-bench-net-{token}")
    engine = Engine(
        config=EngineConfig(
            root=base / "root", run_dir=base / "run", prefix=f"eb{token[:4]}", runtime=args.runtime
        )
    )
    ensure_busybox(engine.images)
    setups: list[float] = []
    teardowns: list[float] = []
    timed(engine.networks, "setup", setups)
    timed(engine.networks, "teardown", teardowns)
    none: list[float] = []
    bridge: list[float] = []
    try:
        run_once(engine, "bridge")  # warm up: the bridge and its rules are made once
        run_once(engine, "none")
        setups.clear()
        teardowns.clear()
        for _ in range(args.n):
            none.append(run_once(engine, "none"))
            bridge.append(run_once(engine, "bridge"))
    finally:
        engine.networks.remove_host_objects()
        remove_cgroup_parents(engine.config.prefix)
        shutil.rmtree(base, ignore_errors=True)

    runtime = engine.containers.runtime.name
    print(f"run --rm busybox true, {args.n} iterations each, runtime {runtime}")
    print(describe("network none", none))
    print(describe("network bridge", bridge))
    print(describe("  networks.setup", setups))
    print(describe("  networks.teardown", teardowns))
    cost = statistics.median(bridge) - statistics.median(none)
    print(f"bridge network's added cost (difference of medians): {cost * 1000:.1f} ms "
          f"(target < 25 ms: {'met' if cost < 0.025 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
