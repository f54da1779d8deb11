"""A real container made straight with runc, for the runtime-extras tests.

The stats/top/diff/exec modules only need what any OCI container has: an
init PID, cgroups, an overlay upper dir and a bundle. This helper makes one
without the container manager: busybox from the host's busybox-static as the
lower dir, an overlay root, a bundle from ``runc spec`` adjusted (no terminal,
``sleep 1000``, a fresh pid/net/... namespace set, memory and pids limits), and
``runc run -d``. Everything it makes is removed on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.images.busybox import write_rootfs_tar
from engine.runtime.oci import OCIRuntime, select_runtime

MEMORY_LIMIT = 64 * 1024 * 1024
PIDS_LIMIT = 50


@dataclass
class RuncContainer:
    id: str
    runtime: OCIRuntime
    bundle: Path
    rootfs: Path
    lower: Path
    upper: Path
    pid: int
    cgroups_path: str

    def sh(self, script: str) -> subprocess.CompletedProcess:
        """Run a shell script inside the container (plain runc exec) and wait for it."""
        argv = self.runtime.command("exec", self.id, "sh", "-c", script)
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def make_lower(base: Path) -> Path:
    """Unpack the busybox rootfs tarball into ``base/lower``."""
    lower = base / "lower"
    lower.mkdir(parents=True)
    with tempfile.TemporaryFile() as tmp:
        write_rootfs_tar(tmp)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            tar.extractall(lower, filter="tar", numeric_owner=True)
    (lower / "etc" / "motd").write_text("hello from the lower layer\n")
    (lower / "etc" / "doomed").write_text("to be deleted\n")
    return lower


@contextmanager
def runc_container(
    base: Path, lower: Path, args: list[str] | None = None
) -> Iterator[RuncContainer]:
    """Run ``sleep 1000`` (or ``args``) in a fresh container over ``lower``; remove it after."""
    cid = "estiba-x-" + uuid.uuid4().hex[:10]
    work = base / cid
    bundle, upper, ovl_work = work / "bundle", work / "upper", work / "work"
    rootfs = bundle / "rootfs"
    for d in (rootfs, upper, ovl_work):
        d.mkdir(parents=True)
    run_dir = work / "run"
    runtime = select_runtime("runc", run_dir)
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={lower},upperdir={upper},workdir={ovl_work}", str(rootfs)],
        check=True,
    )
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    config_file = bundle / "config.json"
    spec = json.loads(config_file.read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = args or ["sleep", "1000"]
    spec["process"]["cwd"] = "/"
    spec["root"]["readonly"] = False
    spec["hostname"] = "extras"
    cgroups_path = f"/estiba-x-tests/{cid}"
    spec["linux"]["cgroupsPath"] = cgroups_path
    spec["linux"]["namespaces"] = [
        {"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")
    ]
    spec["linux"]["resources"] = {
        "devices": [{"allow": False, "access": "rwm"}],
        "memory": {"limit": MEMORY_LIMIT},
        "pids": {"limit": PIDS_LIMIT},
    }
    config_file.write_text(json.dumps(spec))
    try:
        with open(work / "run.log", "w+") as log:
            # The container inherits these fds: a pipe here would never reach EOF.
            proc = subprocess.run(runtime.command("run", "-d", "--bundle", str(bundle), cid),
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=30)
            log.seek(0)
            assert proc.returncode == 0, log.read()
        state = runtime.state(cid)
        assert state and state["status"] == "running", state
        yield RuncContainer(cid, runtime, bundle, rootfs, lower, upper, int(state["pid"]),
                            cgroups_path)
    finally:
        subprocess.run(runtime.command("delete", "--force", cid), capture_output=True)
        subprocess.run(["umount", "-l", str(rootfs)], capture_output=True)
        for ctrl in os.listdir("/sys/fs/cgroup"):
            parent = Path("/sys/fs/cgroup") / ctrl / "estiba-x-tests"
            if parent.is_dir():
                try:
                    parent.rmdir()
                except OSError:
                    pass  # another test's container still lives there
        shutil.rmtree(work, ignore_errors=True)
