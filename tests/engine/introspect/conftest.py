"""A container made by hand for the introspection tests.

Before (and besides) the engine's runtime, the kernel can make a container
directly: ``unshare`` new pid, mount, uts, ipc and net namespaces, an overlay
of two lower dirs and an upper dir mounted inside the new mount namespace,
``chroot`` into it and run a static busybox as PID 1. Everything it makes
dies with it: the mount namespace holds the overlay, the net namespace its
interfaces; the fixture kills it and removes its directories.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

BUSYBOX = "/usr/bin/busybox"


@dataclass
class HandmadeContainer:
    pid: int  # host PID of the container's PID 1
    unshare_pid: int
    base: Path
    lowers: list[Path]  # base first
    upper: Path
    work: Path

    def root(self, rel: str) -> Path:
        """A path seen through the container's root (writes go through the overlay)."""
        return Path(f"/proc/{self.pid}/root") / rel.lstrip("/")


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            out += [int(x) for x in fh.read().split()]
    return out


def _layers(base: Path) -> list[Path]:
    l0, l1 = base / "l0", base / "l1"
    for d in (l0 / "bin", l0 / "etc", l0 / "proc", l0 / "tmp", l1 / "etc", l1 / "app"):
        d.mkdir(parents=True)
    shutil.copy2(BUSYBOX, l0 / "bin" / "busybox")
    (l0 / "bin" / "sh").symlink_to("busybox")
    (l0 / "etc" / "hostname").write_text("base\n")
    (l0 / "etc" / "motd").write_text("from the base layer\n")
    (l0 / "etc" / "old.conf").write_text("removed by layer 1\n")
    (l1 / "etc" / "motd").write_text("from layer 1\n")
    (l1 / "app" / "run.sh").write_text("echo hi\n")
    os.mknod(l1 / "etc" / "old.conf", 0o600 | 0o020000, os.makedev(0, 0))  # whiteout
    return [l0, l1]


@pytest.fixture
def handmade_container():
    if os.geteuid() != 0:
        pytest.skip("needs root: makes namespaces and an overlay mount")
    if not os.path.exists(BUSYBOX):
        pytest.skip("needs a static busybox (Debian busybox-static)")
    base = Path(tempfile.mkdtemp(prefix="estiba-introspect-", dir="/var/tmp"))
    lowers = _layers(base)
    upper, work, merged = base / "upper", base / "work", base / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    lowerdir = ":".join(str(p) for p in reversed(lowers))
    script = (
        f"mount -t overlay overlay -o lowerdir={lowerdir},upperdir={upper},workdir={work} {merged}"
        f" && hostname lesson-box && exec chroot {merged} /bin/busybox sh -c"
        " 'busybox mount -t proc proc /proc; busybox sleep 600 & exec busybox sleep 600'"
    )
    proc = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount",
            "--propagation",
            "private",
            "--uts",
            "--ipc",
            "--net",
            "sh",
            "-c",
            script,
        ],
    )
    pid = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pid is None:
        kids = _children(proc.pid) if proc.poll() is None else []
        for kid in kids:
            try:
                with open(f"/proc/{kid}/cmdline", "rb") as fh:
                    ready = fh.read().startswith(b"busybox\0sleep")  # PID 1 exec'd its sleep
                if ready and _children(kid):
                    pid = kid
            except OSError:
                pass
        time.sleep(0.02)
    if pid is None:
        proc.kill()
        proc.wait()
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail("the handmade container did not start")
    yield HandmadeContainer(pid, proc.pid, base, lowers, upper, work)
    os.kill(pid, signal.SIGKILL)  # PID 1 dies: the kernel kills the whole namespace
    proc.wait(timeout=5)
    shutil.rmtree(base, ignore_errors=True)
