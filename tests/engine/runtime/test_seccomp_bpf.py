"""The seccomp filter compiled once: the same program crun builds, used by crun, cached."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from engine import Engine
from engine.errors import RuntimeFailure
from engine.runtime import seccomp_bpf
from engine.runtime.containers import ContainerSpec
from engine.runtime.oci import select_runtime
from engine.runtime.spec import seccomp_profile

pytestmark = pytest.mark.skipif(shutil.which("crun") is None, reason="crun is not installed")


@pytest.fixture
def profile(engine) -> dict:
    return seccomp_profile(str(engine.config.seccomp_profile))


def _crun_compiles(engine, profile: dict, tmp_path: Path) -> bytes:
    """The program crun itself makes of ``profile`` (``create`` leaves it in its state dir)."""
    runtime = select_runtime("crun", tmp_path / "run")
    lowest = engine.images.resolve("busybox:latest").layer_dirs()[0]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "rootfs").symlink_to(lowest)
    rid = f"{engine.config.prefix}-bpf-{uuid.uuid4().hex[:8]}"
    spec = {"ociVersion": "1.0.2",
            "process": {"args": ["/bin/busybox", "true"], "cwd": "/",
                        "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs", "readonly": True}, "mounts": [],
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}],
                      "cgroupsPath": f"/{engine.config.prefix}/{rid}",
                      "seccomp": profile}}
    (bundle / "config.json").write_text(json.dumps(spec))
    errors = tmp_path / "stderr"
    with errors.open("wb") as err:  # not a pipe: the created process would hold it open
        proc = subprocess.run(runtime.command("create", "--bundle", str(bundle), rid),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=err, timeout=30)
    try:
        assert proc.returncode == 0, errors.read_text()
        return (runtime.state_root / rid / "seccomp.bpf").read_bytes()
    finally:
        runtime.delete(rid)


def test_the_program_is_the_one_crun_builds(engine, profile, tmp_path):
    """Byte for byte: same libseccomp, same translation of actions, arches and arguments."""
    ours = seccomp_bpf.compile_profile(profile)
    assert ours and len(ours) % 8 == 0
    assert ours == _crun_compiles(engine, profile, tmp_path)


def test_repeated_argument_indexes_become_separate_rules(engine, tmp_path):
    """Two comparisons on one argument OR as two rules, as in crun (libseccomp refuses one)."""
    rule = {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
            "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_EQ"},
                     {"index": 0, "value": 0xFF, "valueTwo": 5, "op": "SCMP_CMP_MASKED_EQ"}]}
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [rule, {"names": ["no_such_syscall", "acct"],
                                   "action": "SCMP_ACT_ERRNO"},
                            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}
    assert seccomp_bpf.compile_profile(profile) == _crun_compiles(engine, profile, tmp_path)


def test_bad_profiles_are_refused_by_name():
    base = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [], "syscalls": []}
    with pytest.raises(RuntimeFailure, match="unknown action 'SCMP_ACT_MAYBE'"):
        seccomp_bpf.compile_profile({**base, "defaultAction": "SCMP_ACT_MAYBE"})
    with pytest.raises(RuntimeFailure, match="unknown architecture 'SCMP_ARCH_VAX'"):
        seccomp_bpf.compile_profile({**base, "architectures": ["SCMP_ARCH_VAX"]})
    bad_op = {"names": ["read"], "action": "SCMP_ACT_ERRNO",
              "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}
    with pytest.raises(RuntimeFailure, match="unknown operator 'SCMP_CMP_ABOUT'"):
        seccomp_bpf.compile_profile({**base, "syscalls": [bad_op]})
    assert not seccomp_bpf.compilable({**base, "syscalls": [{"names": ["read"],
                                                           "action": "SCMP_ACT_NOTIFY"}]})


def test_the_cache_survives_and_heals(profile, tmp_path, monkeypatch):
    """A second process reads the file; a damaged file is compiled afresh, not trusted."""
    monkeypatch.setattr(seccomp_bpf, "_memo", {})  # not what an earlier test left in memory
    first = seccomp_bpf.bpf_base64(profile, tmp_path)
    [cached] = list(tmp_path.glob("*.bpf"))
    assert base64.b64decode(first) == cached.read_bytes()
    monkeypatch.setattr(seccomp_bpf, "_memo", {})
    monkeypatch.setattr(seccomp_bpf, "compile_profile", lambda p: pytest.fail("recompiled"))
    assert seccomp_bpf.bpf_base64(profile, tmp_path) == first
    monkeypatch.undo()
    monkeypatch.setattr(seccomp_bpf, "_memo", {})
    cached.write_bytes(b"garbage")  # 7 bytes: no BPF program
    assert seccomp_bpf.bpf_base64(profile, tmp_path) == first
    assert cached.read_bytes() == base64.b64decode(first)


def test_crun_containers_carry_the_compiled_filter(engine, engine_config, profile):
    """The spec hands crun the program; the container runs under that very filter."""
    eng = Engine(config=replace(engine_config, runtime="crun"))
    c = eng.containers.create(ContainerSpec(image="busybox:latest", network_mode="none",
                                            cmd=["sh", "-c", "grep Seccomp: /proc/self/status"]))
    try:
        eng.containers.start(c.id)
        spec = json.loads((c.bundle / "config.json").read_text())
        program = spec["annotations"][seccomp_bpf.CRUN_BPF_ANNOTATION]
        assert base64.b64decode(program) == seccomp_bpf.compile_profile(profile)
        assert spec["linux"]["seccomp"] == profile  # still there for inspect and the lessons
        assert eng.containers.wait(c.id, timeout=20) == 0
        assert b"".join(e.data for e in eng.containers.logs(c.id)) == b"Seccomp:\t2\n"
    finally:
        eng.containers.remove(c.id, force=True)
