"""Bench: a Dockerfile build, cold and fully cached, with estiba beside buildah.

The Dockerfile has five RUN steps and a 10 MB COPY (see ``DOCKERFILE``). Both
builders start from the same busybox root filesystem (estiba's ``busybox``
image, imported into buildah's private storage as ``localhost/busybox``), run
RUN steps without network, and keep a layer cache (``buildah bud --layers``).
Per round, interleaved so both see the same machine:

* cold: a fresh engine root (estiba) / a fresh storage root (buildah);
* cached: the same build again, every step from the cache.

buildah is a Debian package installed here by the bench itself when missing
(``apt-get install buildah``); estiba never depends on it. Prints the median
and spread of each figure and the ratios. Targets: cached rebuild at least 2x
faster than buildah's, cold build no slower.

Usage (root): ``.venv/bin/python bench/bench_build.py [-n 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import Engine, EngineConfig
from engine.images.busybox import ensure_busybox

DOCKERFILE = """\
ARG BASE=busybox
FROM ${BASE}
RUN echo one > /one
RUN echo two > /two && ls / > /listing
COPY big.bin /data/big.bin
RUN wc -c /data/big.bin > /data/size
RUN sha256sum /data/big.bin > /data/sum
RUN echo five > /five
"""


def ensure_buildah() -> str:
    found = shutil.which("buildah")
    if found:
        return found
    print("installing buildah (Debian package) for the comparison ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-q", "buildah"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    found = shutil.which("buildah")
    if not found:
        raise SystemExit("buildah is not installed and could not be installed")
    return found


def make_context(base: Path) -> Path:
    ctx = base / "context"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "big.bin").write_bytes(os.urandom(10 * 1024 * 1024))
    return ctx


def busybox_rootfs_tar(engine: Engine, dest: Path) -> Path:
    """estiba's busybox image as one rootfs tarball (its layers, base first)."""
    image = engine.images.resolve("busybox:latest")
    out = dest / "busybox-rootfs.tar"
    with tarfile.open(out, "w") as tar:
        for layer_dir in image.layer_dirs():
            for entry in sorted(layer_dir.iterdir()):
                tar.add(entry, arcname=entry.name)
    return out


class Buildah:
    def __init__(self, exe: str, base: Path, rootfs_tar: Path) -> None:
        self.exe = exe
        self.base = base
        self.rootfs_tar = rootfs_tar
        self.root = self.runroot = base

    def _cmd(self, *args: str, capture: bool = False) -> str:
        cmd = [self.exe, "--root", str(self.root), "--runroot", str(self.runroot),
               "--storage-driver", "overlay", *args]
        res = subprocess.run(cmd, text=True,
                             stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        if res.returncode != 0:
            raise SystemExit(f"buildah {args[0]} failed: {res.stderr.strip()[-2000:]}")
        return res.stdout.strip() if capture else ""

    def fresh(self) -> None:
        self.cleanup()
        token = uuid.uuid4().hex[:8]
        self.root = self.base / f"storage-{token}"
        self.runroot = self.base / f"run-{token}"
        ctr = self._cmd("from", "scratch", capture=True)
        self._cmd("add", ctr, str(self.rootfs_tar), "/")
        self._cmd("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                  "/sbin:/bin", ctr)
        self._cmd("commit", ctr, "localhost/busybox:latest")
        self._cmd("rm", ctr)

    def build(self, ctx: Path) -> float:
        t0 = time.perf_counter()
        self._cmd("bud", "--layers", "--network", "none", "--isolation", "oci",
                  "--runtime", shutil.which("runc") or "runc",
                  "--build-arg", "BASE=localhost/busybox:latest", "-t", "bench-build:latest",
                  "-f", str(ctx / "Dockerfile"), str(ctx))
        return time.perf_counter() - t0

    def cleanup(self) -> None:
        if self.root != self.base and self.root.exists():
            subprocess.run([self.exe, "--root", str(self.root), "--runroot", str(self.runroot),
                            "--storage-driver", "overlay", "rm", "--all"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(["umount", "-l", str(self.root / "overlay")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.runroot, ignore_errors=True)


def estiba_engine(base: Path, busybox_src: Engine | None) -> Engine:
    token = uuid.uuid4().hex[:6]
    cfg = EngineConfig(root=base / f"estiba-{token}" / "root",
                       run_dir=base / f"estiba-{token}" / "run", prefix=f"eb{token[:4]}")
    engine = Engine(config=cfg)
    ensure_busybox(engine.images)
    return engine


def estiba_build(engine: Engine, ctx: Path) -> float:
    t0 = time.perf_counter()
    engine.builder.build(ctx, tags=["bench-build:latest"])
    return time.perf_counter() - t0


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    med = statistics.median(values)
    return (f"{name:<24} median {med * 1000:8.1f} ms   min {values[0] * 1000:8.1f}   "
            f"max {values[-1] * 1000:8.1f}   (n={len(values)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=3, help="rounds (cold + cached each)")
    ap.add_argument("--cached-repeats", type=int, default=3)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: both builders run real containers")
    exe = ensure_buildah()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    base = Path(tempfile.mkdtemp(prefix="estiba-bench-build-", dir="/var/tmp"))
    results: dict[str, list[float]] = {k: [] for k in
                                       ("estiba cold", "estiba cached", "buildah cold",
                                        "buildah cached")}
    engines: list[Engine] = []
    try:
        ctx = make_context(base)
        first = estiba_engine(base, None)
        engines.append(first)
        rootfs = busybox_rootfs_tar(first, base)
        buildah = Buildah(exe, base, rootfs)
        for rnd in range(opts.n):
            eng = estiba_engine(base, first)
            engines.append(eng)
            results["estiba cold"].append(estiba_build(eng, ctx))
            for _ in range(opts.cached_repeats):
                results["estiba cached"].append(estiba_build(eng, ctx))
            buildah.fresh()
            results["buildah cold"].append(buildah.build(ctx))
            for _ in range(opts.cached_repeats):
                results["buildah cached"].append(buildah.build(ctx))
            print(f"round {rnd + 1}/{opts.n}: estiba cold {results['estiba cold'][-1]:.2f}s, "
                  f"buildah cold {results['buildah cold'][-1]:.2f}s", flush=True)
        buildah.cleanup()
    finally:
        with open("/proc/self/mountinfo") as fh:
            points = [ln.split()[4] for ln in fh if ln.split()[4].startswith(str(base))]
        for point in sorted(points, reverse=True):
            subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nDockerfile: 5 RUN steps + a 10 MB COPY; {version}")
    for name, values in results.items():
        print(summary(name, values))
    med = {k: statistics.median(v) for k, v in results.items()}
    cached_ratio = med["buildah cached"] / med["estiba cached"]
    cold_ratio = med["buildah cold"] / med["estiba cold"]
    print(f"\ncached rebuild: estiba is {cached_ratio:.2f}x buildah's speed "
          f"(target >= 2x: {'met' if cached_ratio >= 2 else 'NOT met'})")
    print(f"cold build:     estiba is {cold_ratio:.2f}x buildah's speed "
          f"(target >= 1x: {'met' if cold_ratio >= 1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
