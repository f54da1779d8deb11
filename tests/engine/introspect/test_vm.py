"""A real small VM booted with qemu, measured (slow under TCG: ~3-10 s)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine.introspect.vm import VM_DIR, boot_vm

PREPARE = Path(__file__).resolve().parents[3] / "scripts" / "vm" / "prepare.sh"


@pytest.mark.slow
def test_the_vm_boots_and_is_measured():
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed")
    subprocess.run(["bash", str(PREPARE), str(VM_DIR)], check=True, capture_output=True)
    result = boot_vm(VM_DIR, timeout=90)
    assert result["booted"] and 0 < result["boot_seconds"] < 90
    assert result["label"] in ("KVM", "TCG (software emulation)")
    assert result["memory_kb"] > 10_000  # qemu holds the guest's RAM
    assert 0 < result["guest_memory_total_kb"] <= 128 * 1024
    assert result["disk_bytes"] > 1_000_000
    assert "ESTIBA-VM-INIT-UP" in result["console"]
