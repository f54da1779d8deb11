"""What the benches that start estiba's services share: ports, waiting, taking it all down.

A bench runs estiba in a private directory with its own ESTIBA_PREFIX; when it
ends, nothing it made may stay in the kernel or on disk: its processes, mounts,
the default bridge and nftables table its engine made, and runc's parent cgroups.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def wait_for(check, what: str, proc: subprocess.Popen | None = None, timeout: float = 60,
             log: Path | None = None) -> None:
    """Until ``check()`` is true; give up when ``proc`` exits or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}\n{tail(log) if log else ''}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{what} not ready in {timeout}s\n{tail(log) if log else ''}")


def start_redis_and_db(procs: list[subprocess.Popen], port: int, base: Path, env: dict):
    """A private redis-server on ``port`` (appended to ``procs``) and a migrated database;
    the Redis client."""
    import redis

    procs.append(subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(base)], stdout=subprocess.DEVNULL))
    client = redis.Redis(port=port)
    wait_for(client.ping, "redis", procs[-1])
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    return client


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Newest first: terminate, then kill what did not stop within 10 s."""
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def take_down(base: Path, prefix: str) -> None:
    """Remove the engine's kernel objects, mounts and files under ``base``."""
    from engine import Engine, EngineConfig

    with contextlib.suppress(Exception):
        Engine(config=EngineConfig(root=base / "root", run_dir=base / "run",
                                   prefix=prefix)).networks.remove_host_objects()
    subprocess.run(["sh", "-c", f"grep -o ' {base}[^ ]*' /proc/self/mountinfo | sort -r |"
                    " xargs -r -n1 umount -l"], check=False)
    shutil.rmtree(base, ignore_errors=True)
    remove_cgroup_parents(prefix)


def remove_cgroup_parents(prefix: str) -> None:
    """rmdir the (empty) parent cgroups runc made under ``/<prefix>`` in every hierarchy."""
    for cg in Path("/sys/fs/cgroup").glob(f"*/{prefix}"):
        for child in sorted(cg.glob("**/"), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()
