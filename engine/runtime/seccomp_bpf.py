"""Seccomp filters compiled once: an OCI ``linux.seccomp`` profile becomes classic BPF.

The kernel takes a seccomp filter as a classic BPF program that it runs on
every system call (``seccomp(SECCOMP_SET_MODE_FILTER)``). An OCI spec instead
carries a *profile*: a default action plus rules by syscall name and argument.
Someone must turn the one into the other; libseccomp does it (resolving names
to numbers for each architecture, building a decision tree). For Docker's
profile of some 350 syscalls over three x86 ABIs that takes about 25 ms — and
crun 1.8 does it on every container start, half the cost of ``crun run``.

The profile is the same for every container, so estiba compiles it once, with
the same libseccomp and the very translation crun uses (``seccomp.c``:
actions, ``errnoRet``, architectures, one rule per argument when an argument
index repeats), and hands crun the program through its
``run.oci.seccomp_bpf_data`` annotation. crun then loads it as it would its own
(newer crun keeps the same kind of cache in its state directory). The
``linux.seccomp`` section stays in ``config.json``: it is what the lessons show
and what ``inspect`` tells. Compiled programs are kept by a hash of the profile,
libseccomp's version and the kernel, so a kernel or library upgrade compiles
afresh.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import hashlib
import json
import os
import platform
import threading
from pathlib import Path
from typing import Any

from engine.errors import RuntimeFailure

#: The annotation crun (0.19 and newer) reads instead of its own compilation.
CRUN_BPF_ANNOTATION = "run.oci.seccomp_bpf_data"

_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_WITH_ERRNO = {"SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000}
_OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
              "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_EPERM = 1
_NR_SCMP_ERROR = -1


class _ArgCmp(ctypes.Structure):
    """libseccomp's ``struct scmp_arg_cmp``."""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib: ctypes.CDLL | None = None
_memo: dict[str, str] = {}
_lock = threading.Lock()


def _libseccomp() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise RuntimeFailure(f"libseccomp is not installed: {exc}") from exc
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_version.restype = ctypes.POINTER(_Version)
        _lib = lib
    return _lib


def _action(name: str, errno_ret: int) -> int:
    if name in _WITH_ERRNO:
        return _WITH_ERRNO[name] | (errno_ret & 0xFFFF)
    try:
        return _ACTIONS[name]
    except KeyError:
        raise RuntimeFailure(f"seccomp profile: unknown action {name!r}") from None


def compilable(profile: dict[str, Any]) -> bool:
    """Whether a profile can be handed over as plain BPF (no listener, no notify action)."""
    if profile.get("listenerPath") or profile.get("defaultAction") == "SCMP_ACT_NOTIFY":
        return False
    return all(rule.get("action") != "SCMP_ACT_NOTIFY" for rule in profile.get("syscalls") or [])


def compile_profile(profile: dict[str, Any]) -> bytes:
    """The BPF program (``struct sock_filter`` array) crun would build from ``profile``."""
    lib = _libseccomp()
    default = _action(profile.get("defaultAction") or "", int(profile.get("defaultErrnoRet",
                                                                           _EPERM)))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise RuntimeFailure("seccomp_init failed")
    try:
        for arch in profile.get("architectures") or []:
            token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
            if token == 0:
                raise RuntimeFailure(f"seccomp profile: unknown architecture {arch!r}")
            ret = lib.seccomp_arch_add(ctx, token)
            if ret < 0 and ret != -17:  # -EEXIST: the native one is there already
                raise RuntimeFailure(f"seccomp_arch_add {arch}: {os.strerror(-ret)}")
        for rule in profile.get("syscalls") or []:
            action = _action(rule.get("action") or "", int(rule.get("errnoRet", _EPERM)))
            if action == default:
                continue
            for name in rule.get("names") or []:
                number = lib.seccomp_syscall_resolve_name(name.encode())
                if number == _NR_SCMP_ERROR:
                    continue  # a syscall this libseccomp does not know, as crun ignores it
                for group in _arg_groups(rule.get("args") or []):
                    array = (_ArgCmp * max(len(group), 1))(*group)
                    ret = lib.seccomp_rule_add_array(ctx, action, number, len(group), array)
                    if ret < 0:
                        raise RuntimeFailure(f"seccomp rule for {name}: {os.strerror(-ret)}")
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            ret = lib.seccomp_export_bpf(ctx, fd)
            if ret < 0:
                raise RuntimeFailure(f"seccomp_export_bpf: {os.strerror(-ret)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


def _arg_groups(args: list[dict[str, Any]]) -> list[list[_ArgCmp]]:
    """Argument comparisons as rules: one rule, or one per comparison when an index repeats.

    libseccomp ANDs the comparisons of one rule and refuses two on the same
    argument, so (as crun and runc do) repeated indexes become separate rules,
    which OR.
    """
    cmps = []
    for arg in args[:6]:
        index = int(arg.get("index", 0))
        if not 0 <= index < 6:
            raise RuntimeFailure(f"seccomp profile: argument index {index} out of range")
        try:
            op = _OPERATORS[arg.get("op", "")]
        except KeyError:
            raise RuntimeFailure(f"seccomp profile: unknown operator {arg.get('op')!r}") from None
        cmps.append(_ArgCmp(index, op, int(arg.get("value", 0)), int(arg.get("valueTwo", 0))))
    if not cmps:
        return [[]]
    indexes = [c.arg for c in cmps]
    if len(set(indexes)) == len(indexes):
        return [cmps]
    return [[c] for c in cmps]


def _key(profile: dict[str, Any]) -> str:
    lib = _libseccomp()
    v = lib.seccomp_version().contents
    uname = platform.uname()
    text = json.dumps([profile, [v.major, v.minor, v.micro], uname.release, uname.version,
                       uname.machine], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def bpf_base64(profile: dict[str, Any], cache_dir: Path) -> str:
    """The compiled ``profile`` in base64, from memory, the disk cache, or compiled now."""
    key = _key(profile)
    cached = _memo.get(key)
    if cached is not None:
        return cached
    with _lock:
        if key in _memo:
            return _memo[key]
        path = Path(cache_dir) / f"{key}.bpf"
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        if not data or len(data) % 8:  # absent, or not a BPF program: compile afresh
            data = compile_profile(profile)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        _memo[key] = base64.b64encode(data).decode()
        return _memo[key]
