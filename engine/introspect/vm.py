"""VM against container, measured: boot a real small VM with qemu.

A virtual machine emulates a whole computer: firmware, a guest kernel that
boots, then its first process. A container is a process on the host's kernel.
To show the difference as numbers measured on this host, this module boots a
Debian kernel with a busybox initramfs (made by ``scripts/vm/prepare.sh``)
under qemu and times the moment the guest's init writes its first line on the
serial console, then reads qemu's resident memory and the disk the VM needs.
KVM is used when it boots; where it does not (nested virtualisation often
fails) the same VM runs under TCG, software emulation, and says so.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from pathlib import Path

from engine.errors import NotFound, RuntimeFailure

VM_DIR = Path(os.environ.get("ESTIBA_VM_DIR", "/var/cache/estiba/vm"))
MARKER = b"ESTIBA-VM-INIT-UP"
QEMU = "qemu-system-x86_64"
GUEST_MEMORY_MB = 128


def vm_files(vm_dir: Path = VM_DIR) -> tuple[Path, Path]:
    kernel, initrd = Path(vm_dir) / "vmlinuz", Path(vm_dir) / "initramfs.cpio.gz"
    if not kernel.is_file() or not initrd.is_file():
        raise NotFound(f"no VM kernel/initramfs in {vm_dir}: run scripts/vm/prepare.sh first")
    return kernel, initrd


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _boot(kernel: Path, initrd: Path, accel: str, timeout: float) -> dict:
    argv = [
        QEMU,
        "-m",
        str(GUEST_MEMORY_MB),
        "-smp",
        "1",
        "-no-reboot",
        "-nodefaults",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        "console=ttyS0 quiet panic=-1",
    ]
    argv += ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg"]
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    console = b""
    result: dict = {"accel": accel, "booted": False}
    try:
        while time.monotonic() - start < timeout:
            ready, _, _ = select.select([proc.stdout], [], [], 0.05)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break  # qemu exited
                console += chunk
                if MARKER in console and not result["booted"]:
                    result["booted"] = True
                    result["boot_seconds"] = round(time.monotonic() - start, 3)
                    result["memory_kb"] = _rss_kb(proc.pid)
            elif proc.poll() is not None:
                break
            if result["booted"] and b" kB" in console.partition(b"MemFree:")[2]:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    text = console.decode(errors="replace")
    result["console"] = text[-2000:]
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            result["guest_memory_total_kb"] = int(line.split()[1])
    return result


def kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def boot_vm(vm_dir: Path = VM_DIR, timeout: float = 60.0, accel: str = "auto") -> dict:
    """Boot the lesson's VM once and measure it; KVM first when ``accel="auto"``."""
    if shutil.which(QEMU) is None:
        raise NotFound(f"{QEMU} is not installed (Debian package qemu-system-x86)")
    kernel, initrd = vm_files(Path(vm_dir))
    tried = []
    order = (["kvm"] if kvm_usable() else []) + ["tcg"] if accel == "auto" else [accel]
    for mode in order:
        # a KVM that cannot run a guest may hang rather than fail: give it less time
        result = _boot(kernel, initrd, mode, min(timeout, 15.0) if mode == "kvm" else timeout)
        if result["booted"]:
            result["label"] = "KVM" if mode == "kvm" else "TCG (software emulation)"
            result["fallback_from"] = tried
            result["disk_bytes"] = kernel.stat().st_size + initrd.stat().st_size
            result["guest_memory_mb"] = GUEST_MEMORY_MB
            kp = Path(vm_dir) / "kernel-package"
            result["kernel"] = kp.read_text().strip() if kp.exists() else kernel.name
            return result
        tried.append({"accel": mode, "console": result["console"][-300:]})
    raise RuntimeFailure(f"the lesson VM did not boot ({', '.join(order)}): {tried[-1]['console']}")


def measure_container(engine, image: str = "busybox:latest", timeout: float = 20.0) -> dict:
    """Start a container that prints a line; time to that line, its memory, its disk."""
    from engine.introspect.cgroups import figures
    from engine.runtime.containers import ContainerSpec

    img = engine.images.resolve(image)
    # no network, like the VM (qemu -nodefaults): the two start the same bare thing
    spec = ContainerSpec(
        image=image, cmd=["sh", "-c", "echo ESTIBA-CONTAINER-UP; sleep 2"], network_mode="none"
    )
    container = engine.containers.create(spec)
    try:
        start = time.monotonic()
        engine.containers.start(container.id)
        seen = None
        while time.monotonic() - start < timeout:
            data = b"".join(e.data for e in engine.containers.logs(container.id))
            if b"ESTIBA-CONTAINER-UP" in data:
                seen = time.monotonic() - start
                break
            time.sleep(0.002)
        if seen is None:
            raise RuntimeFailure(f"container {container.id[:12]} printed nothing in {timeout} s")
        pid = engine.containers.get(container.id).pid
        memory = None
        if pid:
            try:
                memory = figures(pid)["memory"].get("usage")
            except NotFound:
                pass
        return {
            "start_seconds": round(seen, 3),
            "memory_bytes": memory,
            "image_bytes": sum(layer.size for layer in img.layers),
            "runtime": getattr(engine.containers.runtime, "name", ""),
        }
    finally:
        engine.containers.remove(container.id, force=True)
