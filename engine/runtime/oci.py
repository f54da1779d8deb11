"""The OCI runtime (runc or crun): the program that turns a bundle into a process.

An OCI runtime reads a bundle (a ``config.json`` plus a root filesystem) and
asks the kernel for the namespaces, cgroups, mounts, capabilities and seccomp
filter the spec describes, then runs the process. estiba never does those
system calls itself: it writes the spec and drives the runtime's command line
(``create``, ``run``, ``kill``, ``pause``, ``delete``, ``exec``, ``state``),
exactly as containerd does. Every call goes through :meth:`OCIRuntime.command`
so the runtime's own state directory (``--root``) is always the same one.

crun 1.8 refuses a cgroup v1/v2 *hybrid* host ("cgroups in hybrid mode not
supported"). It is made to work by running it inside a private mount
namespace where the (nearly empty) v2 tree's ``cgroup.controllers`` is
hidden under ``/dev/null``: crun then sees a plain v1 host. crun is the
default wherever it is installed, on a hybrid host too: with the filter
compiled once (:mod:`engine.runtime.seccomp_bpf`) a ``crun run`` takes about
half as long as ``runc run``, whose Go runtime and re-exec of itself cost
20-odd ms a start. The namespace is made by a throwaway *thread* that then
starts the runtime (:meth:`OCIRuntime.popen`): namespaces are per thread, and
the child inherits the thread's. Between ``fork`` and ``exec`` it would cost a
real fork of a Python process (4-5 ms on a VM; the thread's ``vfork`` costs
0.3 ms), and ``unshare(1)`` three more programs. A command line handed to
another process to run (an exec's helper) is wrapped in ``unshare(1)``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import RuntimeFailure
from engine.fresh_thread import in_fresh_thread
from engine.hostinfo import cgroup_hybrid
from engine.runtime import seccomp_bpf
from engine.runtime.rootfs import bind_mount, enter_private_mount_namespace

UNIFIED_CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"
log = logging.getLogger(__name__)


def hide_unified_controllers() -> None:
    """Give the calling thread a private mount namespace where cgroup v2 looks absent.

    Only the cgroup2 mount is made private, so the bind over its
    ``cgroup.controllers`` never reaches the host; every other mount keeps the
    propagation it has, as it would for a runtime started without the trick.
    Call it in a thread of its own (:func:`engine.fresh_thread.in_fresh_thread`).
    """
    controllers = Path(UNIFIED_CONTROLLERS)
    enter_private_mount_namespace(only=controllers.parent)
    bind_mount(Path(os.devnull), controllers)


@dataclass
class OCIRuntime:
    """One OCI runtime binary and its state directory."""

    name: str  # "runc" | "crun"
    binary: str
    state_root: Path
    #: Wrap every call so crun sees a v1-only host (crun on a hybrid host).
    hide_unified: bool = False
    _version: str | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        """The runtime's version number, e.g. ``1.1.5`` (``--version``'s first line)."""
        if self._version is None:
            try:
                out = subprocess.run(
                    [self.binary, "--version"], capture_output=True, text=True, timeout=10
                ).stdout
                first = out.splitlines()[0] if out else ""
                self._version = first.split("version", 1)[-1].strip().split("+")[0] or "unknown"
            except (OSError, subprocess.SubprocessError):
                self._version = "unknown"
        return self._version

    def command(self, subcommand: str, *args: str, log_file: Path | str | None = None,
                wrapped: bool = True) -> list[str]:
        """The argv for ``<runtime> --root <state_root> <subcommand> <args...>``.

        Everyone (containers, exec, top) builds runtime calls here, so the
        crun wrapper and the state directory are never forgotten. ``log_file``
        sends the runtime's own messages (JSON lines) there instead of stderr,
        which may be a container's stderr pipe. ``wrapped=False`` leaves out
        the ``unshare(1)`` wrapper, for :meth:`popen` (about 5 ms less a call).
        """
        argv = [self.binary, "--root", str(self.state_root)]
        if log_file is not None:
            argv += ["--log", str(log_file), "--log-format", "json"]
        argv += [subcommand, *args]
        if self.hide_unified and wrapped:
            script = f"mount --bind /dev/null {UNIFIED_CONTROLLERS} && exec \"$@\""
            return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                    "sh", *argv]
        return argv

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        """Start an unwrapped :meth:`command` in the mount namespace the runtime needs.

        crun on a hybrid host: from a throwaway thread that has hidden the v2
        controllers in a mount namespace of its own (see the module's docstring).
        """
        if not self.hide_unified:
            return subprocess.Popen(argv, **kwargs)

        def start() -> subprocess.Popen:
            hide_unified_controllers()
            return subprocess.Popen(argv, **kwargs)

        return in_fresh_thread(start, name="estiba-runtime")

    def _run(self, argv: list[str], timeout: float | None = None) -> tuple[int, str, str]:
        """Run an unwrapped :meth:`command` to its end: exit code, stdout, stderr."""
        proc = self.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        return proc.returncode, out, err

    def prepare(self, spec: dict) -> None:
        """Runtime-specific additions to a spec about to be written.

        crun is handed the seccomp filter already compiled; should that fail
        (no libseccomp here, a profile it cannot express) crun compiles it.
        """
        profile = spec.get("linux", {}).get("seccomp")
        if self.name != "crun" or not profile or not seccomp_bpf.compilable(profile):
            return
        try:
            data = seccomp_bpf.bpf_base64(profile, self.state_root.parent / "seccomp")
        except (RuntimeFailure, OSError) as exc:
            log.warning("seccomp filter not precompiled (crun will compile it): %s", exc)
            return
        spec.setdefault("annotations", {})[seccomp_bpf.CRUN_BPF_ANNOTATION] = data

    def to_dict(self) -> dict:
        """What another process needs to drive the same runtime (:meth:`from_dict`)."""
        return {"name": self.name, "binary": self.binary, "state_root": str(self.state_root),
                "hide_unified": self.hide_unified}

    @classmethod
    def from_dict(cls, data: dict) -> OCIRuntime:
        return cls(str(data["name"]), str(data["binary"]), Path(data["state_root"]),
                   hide_unified=bool(data.get("hide_unified")))

    def run(self, subcommand: str, *args: str, timeout: float = 60) -> str:
        """Run a subcommand and return its stdout; its stderr becomes a RuntimeFailure."""
        try:
            code, out, err = self._run(self.command(subcommand, *args, wrapped=False), timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeFailure(f"{self.name} {subcommand} timed out after {timeout}s") from exc
        if code != 0:
            raise RuntimeFailure(
                f"{self.name} {subcommand} {' '.join(args[-1:])} failed: "
                f"{_last_error(err or out)}"
            )
        return out

    def state(self, runtime_id: str) -> dict | None:
        """The runtime's view of a container (status, pid), or None if it knows none."""
        code, out, _ = self._run(self.command("state", runtime_id, wrapped=False))
        if code != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def delete(self, runtime_id: str, force: bool = True) -> None:
        """Forget a container and remove its cgroups; a missing one is no error."""
        args = ["--force", runtime_id] if force else [runtime_id]
        self._run(self.command("delete", *args, wrapped=False))


def _last_error(text: str) -> str:
    """runc logs JSON-ish lines; the last meaningful line is the reason."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        return "no message"
    last = lines[-1]
    if 'msg="' in last:
        last = last.split('msg="', 1)[1].rsplit('"', 1)[0]
    elif last.startswith("{"):
        try:
            last = json.loads(last).get("msg", last)
        except ValueError:
            pass
    return last.replace("\\n", " ").replace('\\"', '"')


def select_runtime(wanted: str | None, run_dir: Path) -> OCIRuntime:
    """Pick runc or crun (``EngineConfig.runtime``); None means crun where it is installed."""
    hybrid = cgroup_hybrid()
    if wanted not in (None, "", "crun", "runc"):
        raise RuntimeFailure(f"unknown OCI runtime {wanted!r}: use 'crun' or 'runc'")
    if not wanted:
        wanted = "crun" if shutil.which("crun") else "runc"
    binary = shutil.which(wanted)
    if binary is None:
        raise RuntimeFailure(f"OCI runtime {wanted} is not installed (apt-get install {wanted})")
    state_root = Path(run_dir) / "runtime" / wanted
    state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return OCIRuntime(wanted, binary, state_root, hide_unified=(wanted == "crun" and hybrid))
