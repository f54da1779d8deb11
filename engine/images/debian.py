"""A ``debian:bookworm`` image made from Debian's own packages, for demos.

A distribution's base image is nothing more than its smallest installable
system packed as one layer. ``mmdebstrap --variant=minbase`` resolves the
packages Debian marks ``Essential: yes`` plus ``apt``, downloads them from the
host's own apt mirror, unpacks and configures them, cleans the apt lists and
caches, and writes the whole root filesystem as one tar stream. That tarball
is imported through the same path as any rootfs tarball (and as the official
``debian`` images are made: one layer, ``CMD ["bash"]``).

The tarball is written to a temporary file first and imported only when
mmdebstrap succeeded, so a failed or interrupted build never leaves half an
image in the store.

``python -m engine.images.debian [--push REGISTRY/debian:bookworm]`` builds it
into the engine's root and optionally pushes it to a registry.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from engine.errors import EngineError, RuntimeFailure

SUITE = "bookworm"
IMAGE_CONFIG = {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "Cmd": ["bash"],
}


def build_debian(store, suite: str = SUITE, reference: str | None = None,
                 mirror: str | None = None, tmp_dir: Path | None = None):
    """Build ``debian:<suite>`` with mmdebstrap and import it; return the image."""
    if shutil.which("mmdebstrap") is None:
        raise RuntimeFailure("mmdebstrap is not installed (apt-get install mmdebstrap)")
    reference = reference or f"debian:{suite}"
    with tempfile.TemporaryDirectory(prefix="estiba-debian-", dir=tmp_dir) as work:
        tarball = Path(work) / "rootfs.tar"
        cmd = ["mmdebstrap", "--variant=minbase", "--quiet", suite, str(tarball)]
        if mirror:
            cmd.append(mirror)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeFailure(f"mmdebstrap {suite} failed (exit {done.returncode}): {last}")
        return store.import_rootfs(tarball, reference, config=IMAGE_CONFIG,
                                   comment=f"Debian {suite} (minbase) built by mmdebstrap")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build debian:bookworm from Debian's packages")
    parser.add_argument("--suite", default=SUITE)
    parser.add_argument("--root", help="the engine's root (default: ESTIBA_ROOT)")
    parser.add_argument("--mirror", help="an apt mirror URL (default: the host's sources)")
    parser.add_argument("--push", metavar="REFERENCE",
                        help="also push it, e.g. 127.0.0.1:5000/library/debian:bookworm")
    args = parser.parse_args(argv)
    from engine import Engine

    engine = Engine(args.root)
    try:
        image = build_debian(engine.images, args.suite, mirror=args.mirror)
        print(f"debian:{args.suite} {image.id[7:19]}")
        if args.push:
            digest = engine.registry.push(args.push, source=f"debian:{args.suite}")
            print(f"pushed {args.push}@{digest}")
    except EngineError as exc:
        print(f"estiba: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
