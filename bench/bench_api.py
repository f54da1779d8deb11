"""Bench: the Docker-compatible API with docker-py as the client.

Two figures, each a median over many rounds, through the real path a client
takes — docker-py -> estiba's API server (UNIX socket) -> Celery task on the
host's worker -> engine, and back:

* ``ps``: ``containers.list(all=True)`` with 200 containers on the host
  (created, not started: 200 running shims would measure the machine's memory,
  not the API). Target: under 50 ms.
* ``run --rm busybox true``: create, start, wait, remove, the four calls of a
  ``run --rm`` through docker-py's API (the docker CLI sends create, wait and
  start, and the server removes), end to end. Target: under 60 ms.
  Beside it, in the same rounds, ``crun run`` of the engine's own bundle: the
  peer that says how fast the machine is at that moment.

The bench starts everything it needs in a private directory (redis-server,
a migrated SQLite database, a Celery worker and the API server; the engine root
has busybox imported) and removes it all at the end. ``--local`` measures the
API server with the engine in-process instead of through the worker, to show
what the gateway costs.

Usage (root): ``.venv/bin/python bench/bench_api.py [-n 30] [--local]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_run import make_bundle, run_runtime  # noqa: E402
from benchlib import free_port, start_redis_and_db, stop_all, take_down, wait_for  # noqa: E402

from engine import Engine, EngineConfig  # noqa: E402


def median_ms(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=10) if len(samples) >= 10 else [min(samples),
                                                                         max(samples)]
    return (f"median {statistics.median(samples) * 1000:6.1f} ms   "
            f"p10 {q[0] * 1000:6.1f}   p90 {q[-1] * 1000:6.1f}   (n={len(samples)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="rounds per figure")
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--local", action="store_true",
                        help="engine in the API process (no Celery) for comparison")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the engine runs real containers")
    import docker

    base = Path(tempfile.mkdtemp(prefix="estiba-bench-api-", dir="/var/tmp"))
    token = uuid.uuid4().hex[:4]
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="estiba.settings", PYTHONPATH=str(REPO),
               ESTIBA_ROOT=str(base / "root"), ESTIBA_RUN_DIR=str(base / "run"),
               ESTIBA_PREFIX=f"eb{token}", ESTIBA_HOSTNAME=f"bench-{token}",
               ESTIBA_SQLITE_PATH=str(base / "db.sqlite3"), ESTIBA_STATE_DIR=str(base),
               ESTIBA_API_SPOOL=str(base / "spool"))
    procs: list[subprocess.Popen] = []
    client = None
    try:
        from engine.images.busybox import ensure_busybox

        ensure_busybox(Engine(config=EngineConfig(
            root=base / "root", run_dir=base / "run", prefix=env["ESTIBA_PREFIX"])).images)
        port = free_port()
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        r = start_redis_and_db(procs, port, base, env)
        sock = str(base / "api.sock")
        server = [sys.executable, "-m", "dockerapi.server", "--socket", sock, "--tcp", ""]
        if args.local:
            server.append("--local")
        else:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "estiba", "worker", "-P", "threads",
                 "-c", "16", "-Q", f"host.{env['ESTIBA_HOSTNAME']}", "-n",
                 f"bench@{env['ESTIBA_HOSTNAME']}", "--without-gossip", "--without-mingle",
                 "-l", "error"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
            wait_for(lambda: r.exists(f"estiba:host:{env['ESTIBA_HOSTNAME']}:alive"),
                     "the worker", procs[-1])
        procs.append(subprocess.Popen(server, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_for(lambda: Path(sock).exists(), "the API server", procs[-1])
        client = docker.DockerClient(base_url=f"unix://{sock}", version="1.41", timeout=120)
        print(f"estiba API bench ({'local engine' if args.local else 'through the worker'}),"
              f" docker-py {docker.__version__}")

        # The peer of the same moment: `crun run` of the engine's own bundle, a round of
        # it after each round through the API (this machine's speed drifts by a third
        # over an hour, so figures measured apart do not compare).
        local = Engine(config=EngineConfig(root=base / "root", run_dir=base / "run",
                                           prefix=env["ESTIBA_PREFIX"]))
        bundle, bundle_spec = make_bundle(local, base / "plain")
        crun = []

        # run --rm busybox true: create, start, wait, remove (docker-py's calls).
        runs = []
        phases: dict[str, list[float]] = {"create": [], "start": [], "wait": [], "remove": []}
        for i in range(args.n + 3):
            t0 = time.perf_counter()
            c = client.api.create_container("busybox", ["true"])
            t1 = time.perf_counter()
            client.api.start(c["Id"])
            t2 = time.perf_counter()
            client.api.wait(c["Id"])
            t3 = time.perf_counter()
            client.api.remove_container(c["Id"])
            t4 = time.perf_counter()
            runtime_took = run_runtime(local, bundle, bundle_spec, env["ESTIBA_PREFIX"])
            if i >= 3:  # the first rounds warm caches and connections
                runs.append(t4 - t0)
                crun.append(runtime_took)
                for name, took in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    phases[name].append(took)
        print(f"run --rm busybox true   {median_ms(runs)}   target < 60 ms")
        print("  of which (medians): " + ", ".join(
            f"{name} {statistics.median(v) * 1000:.1f} ms" for name, v in phases.items()))
        print(f"{local.containers.runtime.name} run, same rounds  {median_ms(crun)}   "
              f"(the runtime alone: the machine's speed now; Docker's run takes ~230 ms)")

        # One call's floor: wait on a container that has exited (the worker answers at once).
        done = client.api.create_container("busybox", ["true"])
        client.api.start(done["Id"])
        client.api.wait(done["Id"])
        floor = []
        for i in range(args.n + 3):
            t0 = time.perf_counter()
            client.api.wait(done["Id"])
            if i >= 3:
                floor.append(time.perf_counter() - t0)
        client.api.remove_container(done["Id"])
        print(f"one call (wait, exited) {median_ms(floor)}")

        for i in range(args.containers):
            client.api.create_container("busybox", ["true"], name=f"bench-{i:03d}")
        ps = []
        for i in range(args.n + 3):
            t0 = time.perf_counter()
            listed = client.containers.list(all=True, sparse=True)
            if i >= 3:
                ps.append(time.perf_counter() - t0)
        assert len(listed) == args.containers, len(listed)
        print(f"ps -a ({args.containers} containers)  {median_ms(ps)}   target < 50 ms")
        for i in range(args.containers):
            client.api.remove_container(f"bench-{i:03d}", force=True)
    finally:
        if client is not None:
            client.close()
        stop_all(procs)
        take_down(base, env["ESTIBA_PREFIX"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
