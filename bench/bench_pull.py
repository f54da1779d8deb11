"""Bench: pull a ~50 MB, 4-layer image from a local registry, beside ``skopeo copy``.

Target (issue 3): an estiba pull into an EMPTY store (download, verify, unpack
every layer) at least as fast as ``skopeo copy docker://... oci:DIR`` of the
same image (download and verify only), in the same run. Prints figures; it is
not a test. Run as root from the repository:

    .venv/bin/python bench/bench_pull.py [--mb 50] [--runs 3]

It starts its own Debian ``docker-registry`` on a free loopback port, builds
the image with estiba (random and text files, so layers compress like real
ones), pushes it, then alternates the two tools into fresh directories.
Nothing is deleted between runs (TESTING.md: ext4 slows down after deletes).
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import Engine, EngineConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = work / "registry.yml"
    config.write_text("version: 0.1\nlog: {level: error}\n"
                      f"storage: {{filesystem: {{rootdirectory: {work / 'registry'}}}}}\n"
                      f"http: {{addr: 127.0.0.1:{port}}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("docker-registry did not start")


def build_image(engine: Engine, reference: str, total_mb: int, layers: int, work: Path):
    rng = random.Random(7)
    text = b"the quick brown fox jumps over the lazy dog; " * 100
    per_layer = total_mb * 1024 * 1024 // layers
    img = None
    for n in range(layers):
        upper = work / f"upper{n}"
        upper.mkdir()
        written = 0
        i = 0
        while written < per_layer:
            size = min(per_layer - written, rng.randint(1024, 256 * 1024))
            rand = int(size * 0.8)  # mostly incompressible, like binaries and archives
            data = rng.randbytes(rand) + (text * (1 + size // len(text)))[: size - rand]
            d = upper / f"dir{i % 16}"
            d.mkdir(exist_ok=True)
            (d / f"f{n}-{i}").write_bytes(data)
            written += size
            i += 1
        img = engine.images.commit(img, upper, reference=reference, config={"Cmd": ["sh"]},
                                   created_by=f"layer {n}")
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp")
    args = ap.parse_args()
    if not shutil.which("skopeo") or not shutil.which("docker-registry"):
        raise SystemExit("needs skopeo and docker-registry (apt-get install skopeo "
                         "docker-registry)")
    work = Path(tempfile.mkdtemp(prefix="estiba-bench-pull-", dir=args.dir))
    proc = None
    try:
        proc, host = start_registry(work)
        src = Engine(config=EngineConfig(root=work / "src", run_dir=work / "run",
                                         prefix="etbench"))
        img = build_image(src, "bench/pull:1", args.mb, args.layers, work)
        target = f"{host}/bench/pull:1"
        src.registry.push(target, source=img.id)
        blobs = sum(layer.blob_size for layer in img.layers)
        print(f"image: {len(img.layers)} layers, {blobs / 1e6:.1f} MB of compressed blobs, "
              f"{img.size / 1e6:.1f} MB unpacked; registry {host}")
        times: dict[str, list[float]] = {"estiba pull": [], "skopeo copy": []}
        for i in range(args.runs):
            def estiba(i: int = i) -> None:
                eng = Engine(config=EngineConfig(root=work / f"estiba{i}", run_dir=work / "run",
                                                 prefix="etbench"))
                eng.registry.pull(target)

            def skopeo(i: int = i) -> None:
                subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                f"docker://{target}", f"oci:{work / f'skopeo{i}'}:x"],
                               check=True, capture_output=True)

            order = [("estiba pull", estiba), ("skopeo copy", skopeo)]
            if i % 2:
                order.reverse()
            for name, fn in order:
                subprocess.run(["sync"], check=True)
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        for name, values in times.items():
            print(f"{name:12s} median {statistics.median(values):6.2f} s   "
                  f"runs: {', '.join(f'{v:.2f}' for v in values)}")
        ratio = statistics.median(times["estiba pull"]) / statistics.median(times["skopeo copy"])
        print(f"estiba / skopeo = {ratio:.2f}x (target: <= 1.0x; estiba also unpacks)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
