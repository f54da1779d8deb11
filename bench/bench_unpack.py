"""Bench: unpack a ~200 MB layer of 20,000 files with estiba's safe applier, beside ``tar -x``.

Target (issue 3): within 1.5x of GNU tar on the same tarball. Prints figures;
it is not a test. Run as root (owners are restored, like a real layer):

    .venv/bin/python bench/bench_unpack.py [--files 20000] [--mb 200] [--gzip]
        [--baseline DIR]

``--baseline`` names another checkout (``git worktree add /tmp/base HEAD~1``)
whose unpacker runs in the same rounds, so a before/after comparison shares
the disk's mood with ``tar -x``.

TESTING.md warns that ext4 without a journal creates files ~15x slower for
about a minute after a big ``rm -rf``: every run here unpacks into a fresh
directory, nothing is deleted until all runs are done, and the runs of the
two tools alternate so that neither gets a quieter disk than the other.
"""

from __future__ import annotations

import argparse
import gzip
import io
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.images.unpack import unpack_blob


def make_layer(path: Path, files: int, total_mb: int, compress: bool) -> int:
    """A tarball shaped like an OS layer: nested dirs, mostly small files, some symlinks."""
    rng = random.Random(42)
    avg = total_mb * 1024 * 1024 // files
    text = (b"lorem ipsum dolor sit amet, consectetur adipiscing elit " * 64)
    raw = open(path, "wb")  # noqa: SIM115
    out = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) if compress else raw
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        dirs = []
        for d in range(files // 50):
            name = f"usr/share/pkg{d // 20}/d{d}"
            for prefix in (f"usr/share/pkg{d // 20}", name):
                if prefix not in dirs:
                    info = tarfile.TarInfo(prefix)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
                    tar.addfile(info)
                    dirs.append(prefix)
        for i in range(files):
            d = dirs[1 + 2 * ((i // 50) % (len(dirs) // 2))]
            info = tarfile.TarInfo(f"{d}/file{i}")
            info.mtime, info.uid, info.gid = 1_700_000_000, rng.choice((0, 0, 1000)), 0
            if i % 40 == 0:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, f"/usr/lib/target{i}", 0o777
                tar.addfile(info)
                continue
            size = max(1, int(rng.expovariate(1 / avg)))
            half = size // 2
            data = rng.randbytes(half) + (text * (1 + size // len(text)))[: size - half]
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    if compress:
        out.close()
    raw.close()
    return path.stat().st_size


def run_tar(layer: Path, dest: Path) -> float:
    dest.mkdir()
    t = time.perf_counter()
    subprocess.run(["tar", "-x", "--numeric-owner", "-f", str(layer), "-C", str(dest)],
                   check=True)
    return time.perf_counter() - t


def run_estiba(layer: Path, dest: Path) -> float:
    dest.mkdir()
    t = time.perf_counter()
    with open(layer, "rb") as fh:
        unpack_blob(io.BufferedReader(fh, 1 << 20), dest)
    return time.perf_counter() - t


_BASELINE = """
import io, sys, time
sys.path.insert(0, sys.argv[1])
from engine.images.unpack import unpack_blob
t = time.perf_counter()
with open(sys.argv[2], "rb") as fh:
    unpack_blob(io.BufferedReader(fh, 1 << 20), sys.argv[3])
print(time.perf_counter() - t)
"""


def run_baseline(checkout: str, layer: Path, dest: Path) -> float:
    """The same unpack with another checkout's code (timed inside, like run_estiba)."""
    dest.mkdir()
    out = subprocess.run([sys.executable, "-c", _BASELINE, checkout, str(layer), str(dest)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gzip", action="store_true", help="a gzip layer (tar -xzf vs ours)")
    ap.add_argument("--dir", default="/var/tmp", help="where to unpack (same fs as the store)")
    ap.add_argument("--baseline", help="another checkout whose unpacker runs beside")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="estiba-bench-unpack-", dir=args.dir))
    try:
        layer = work / ("layer.tar.gz" if args.gzip else "layer.tar")
        size = make_layer(layer, args.files, args.mb, args.gzip)
        subprocess.run(["sync"], check=True)
        print(f"layer: {size / 1e6:.1f} MB on disk, {args.files} entries "
              f"({'gzip' if args.gzip else 'plain tar'}), unpacking into {args.dir}")
        tools = [("tar -x", run_tar), ("estiba", run_estiba)]
        if args.baseline:
            tools.append(("baseline", lambda layer, dest: run_baseline(args.baseline, layer,
                                                                       dest)))
        times: dict[str, list[float]] = {name: [] for name, _fn in tools}
        for i in range(args.runs):
            # Rotate who goes first: a disk that is slowing down or recovering hurts all alike.
            order = tools[i % len(tools):] + tools[:i % len(tools)]
            for name, fn in order:
                times[name].append(fn(layer, work / f"{name.split()[0]}-{i}"))
                subprocess.run(["sync"], check=True)
        for name, values in times.items():
            print(f"{name:8s} median {statistics.median(values):6.2f} s   "
                  f"runs: {', '.join(f'{v:.2f}' for v in values)}")
        for name in times:
            if name != "tar -x":
                ratio = statistics.median(times[name]) / statistics.median(times["tar -x"])
                print(f"{name} / tar = {ratio:.2f}x (target: <= 1.5x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
