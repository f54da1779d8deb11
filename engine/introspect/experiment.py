"""The experiment: the same command with and without a namespace.

``unshare(1)`` starts a program in new namespaces of the kinds asked for.
Running ``hostname``, ``ps`` or ``ip link`` once as is and once under
``unshare`` shows what a namespace changes: a new UTS namespace may take a
host name the host never sees, a new PID namespace starts counting at 1, a new
network namespace holds nothing but a down ``lo``. Only the experiments listed
here can run (the name comes from a browser: no free-form commands).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from engine.errors import InvalidArgument


@dataclass(frozen=True)
class Experiment:
    name: str
    namespace: str
    without: tuple[str, ...]
    with_ns: tuple[str, ...]


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "hostname",
            "uts",
            ("hostname",),
            ("unshare", "--uts", "sh", "-c", "hostname estiba-lesson && hostname"),
        ),
        Experiment(
            "ps",
            "pid",
            ("ps", "-eo", "pid,comm"),
            ("unshare", "--pid", "--fork", "--mount-proc", "ps", "-eo", "pid,comm"),
        ),
        Experiment(
            "ip-link", "net", ("ip", "-br", "link"), ("unshare", "--net", "ip", "-br", "link")
        ),
        Experiment(
            "ipcs",
            "ipc",
            ("ipcs", "-q"),
            ("unshare", "--ipc", "ipcs", "-q"),
        ),
        Experiment(
            "mounts",
            "mnt",
            ("sh", "-c", "wc -l < /proc/self/mountinfo"),
            (
                "unshare",
                "--mount",
                "sh",
                "-c",
                "mount -t tmpfs lesson /mnt && wc -l < /proc/self/mountinfo",
            ),
        ),
        Experiment("id", "user", ("id",), ("unshare", "--user", "id")),
    )
}

MAX_LINES = 60


def _run(argv: tuple[str, ...]) -> dict:
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        output, code = proc.stdout + proc.stderr, proc.returncode
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        output, code = str(exc), -1
    lines = output.splitlines()
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... ({len(lines) - MAX_LINES} more lines)"]
    return {
        "command": " ".join(argv),
        "output": "\n".join(lines),
        "exit_code": code,
        "seconds": round(time.monotonic() - start, 4),
    }


def run_experiment(name: str) -> dict:
    """Both runs of experiment ``name``: ``{"without": {...}, "with": {...}}``."""
    exp = EXPERIMENTS.get(name)
    if exp is None:
        raise InvalidArgument(
            f"no experiment named {name!r}; choose one of {', '.join(sorted(EXPERIMENTS))}"
        )
    return {
        "name": exp.name,
        "namespace": exp.namespace,
        "without": _run(exp.without),
        "with": _run(exp.with_ns),
    }
