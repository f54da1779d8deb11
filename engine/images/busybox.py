"""The base image ``busybox:latest``, made from the host's busybox-static.

estiba must work on a machine with no internet, so its first image comes from
Debian's ``busybox-static`` package: one statically linked binary plus a link
for each applet (``busybox --list-full``), and the few files every image
expects (``/etc/passwd``, ``/etc/group``, ``/tmp``...). The result is an
ordinary one-layer image, imported through the same path as any rootfs tarball.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path
from typing import IO

BUSYBOX = Path("/bin/busybox")
REFERENCE = "busybox:latest"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "nobody:x:65534:65534:nobody:/home:/bin/false\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n"

IMAGE_CONFIG = {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "Cmd": ["sh"],
}


def applets(busybox: Path = BUSYBOX) -> list[str]:
    """Every applet path the binary knows, e.g. ``bin/sh``, ``usr/bin/awk``."""
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    return sorted({line.strip().lstrip("/") for line in out.stdout.splitlines() if line.strip()})


def write_rootfs_tar(dest: IO[bytes], busybox: Path = BUSYBOX) -> None:
    """Write the busybox root filesystem as an uncompressed tar stream to ``dest``."""
    now = int(time.time())

    def add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
        tar.addfile(info)

    def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, now
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=dest, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "home", "var",
                  "var/log", "dev", "proc", "sys", "run"):
            add_dir(tar, d, 0o700 if d == "root" else 0o755)
        add_dir(tar, "tmp", 0o1777)
        add_dir(tar, "var/tmp", 0o1777)
        binary = busybox.read_bytes()
        add_file(tar, "bin/busybox", binary, 0o755)
        for path in applets(busybox):
            if path == "bin/busybox":
                continue
            info = tarfile.TarInfo(path)
            info.type, info.linkname = tarfile.SYMTYPE, "/bin/busybox"
            info.mode, info.mtime = 0o777, now
            tar.addfile(info)
        add_file(tar, "etc/passwd", PASSWD.encode())
        add_file(tar, "etc/group", GROUP.encode())
        add_file(tar, "etc/hostname", b"busybox\n")
        add_file(tar, "etc/hosts", b"127.0.0.1\tlocalhost\n::1\tlocalhost\n")
        add_file(tar, "etc/resolv.conf", b"")


def ensure_busybox(store, reference: str = REFERENCE):
    """Return the busybox image, importing it from the host binary when missing."""
    from engine.errors import NotFound

    try:
        return store.resolve(reference)
    except NotFound:
        pass
    buf = io.BytesIO()
    write_rootfs_tar(buf)
    buf.seek(0)
    return store.import_rootfs(
        buf, reference, config=IMAGE_CONFIG, comment="busybox from the host's busybox-static"
    )
