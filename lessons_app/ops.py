"""The lessons' operations, run on the host's worker beside its engine.

Each takes the worker's ``Engine`` and JSON-able arguments and returns what a
lesson page shows, read from the kernel by ``engine.introspect``. Only names
in ``CALLS`` and ``STREAMS`` run: the name comes over the network.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine import errors
from engine.introspect import (
    cgroups,
    experiment,
    layers,
    mounts,
    namespaces,
    netif,
    overlay,
    processes,
    uts,
    vm,
)
from engine.introspect.watch import UpperDirWatcher

MERGED_LIMIT = 4000
#: The memory hog doubles a shell string until the kernel's OOM killer stops it.
HOG = 'x=0123456789abcdef; while true; do x="$x$x"; done'
HOG_MAX_LIMIT = 1 << 30  # refuse to run it in a container with no (or a huge) memory limit


def _container(engine: Any, ref: str) -> tuple[Any, int]:
    c = engine.containers.get(ref)
    pid = getattr(c, "pid", None)
    if not pid or not os.path.exists(f"/proc/{pid}"):
        raise errors.Conflict(f"container {ref}: not running, so it has no processes to show")
    return c, int(pid)


def namespaces_view(engine: Any, ref: str) -> dict:
    c, pid = _container(engine, ref)
    try:
        links = netif.interfaces(pid)
    except errors.EngineError as exc:
        links = {"inside": [], "outside": [], "veth": [], "error": str(exc)}
    return {
        "id": c.id,
        "name": c.name,
        "pid": pid,
        "namespaces": [row.to_dict() for row in namespaces.compare_namespaces(pid)],
        "processes": [row.to_dict() for row in processes.process_tree(pid)],
        "hostname": uts.hostnames(pid),
        "interfaces": links,
        "mounts": [m.to_dict() for m in mounts.mounts_of(pid)],
    }


def _stack(engine: Any, c: Any, pid: int) -> overlay.OverlayStack:
    try:
        stack = overlay.overlay_of(pid)
        if all(os.path.isabs(p) for p in stack.lower_dirs):
            return stack
    except errors.NotFound:
        pass
    # The runtime may mount with relative lowerdirs: its own records say which dirs.
    image = engine.images.resolve(c.image_id)
    return overlay.OverlayStack(
        lower_dirs=[str(p) for p in reversed(image.layer_dirs())],
        upper_dir=str(engine.containers.upper_dir(c.id)),
        work_dir=None,
    )


def overlay_view(engine: Any, ref: str) -> dict:
    c, pid = _container(engine, ref)
    stack = _stack(engine, c, pid)
    made_by: list[str] = []
    try:
        image = engine.images.resolve(c.image_id)
        made_by = list(reversed(layers.layer_history(image.config.get("history", []),
                                                     len(image.layers))))
    except errors.EngineError:
        pass
    roles = stack.layers_top_first()
    planes = []
    for i, (role, path) in enumerate(roles):
        lower_index = i - (1 if stack.upper_dir else 0)
        planes.append({
            "index": i,
            "role": role,
            "path": path,
            "created_by": made_by[lower_index] if 0 <= lower_index < len(made_by) else "",
        })
    entries = overlay.merged_view([p for _, p in roles], limit=MERGED_LIMIT)
    return {
        "id": c.id,
        "name": c.name,
        "pid": pid,
        "stack": stack.to_dict(),
        "planes": planes,
        "entries": [e.to_dict() for e in entries],
        "truncated": len(entries) >= MERGED_LIMIT,
    }


def watch_upper(engine: Any, ref: str, seconds: float = 900) -> Iterator[dict]:
    """Copy-ups, whiteouts and new files in the upper dir, as they happen."""
    c, pid = _container(engine, ref)
    stack = _stack(engine, c, pid)
    with UpperDirWatcher(stack.upper_dir, stack.lower_dirs) as watcher:
        yield {"watching": stack.upper_dir}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            changes = watcher.poll(1.0)
            # an empty tick lets the worker notice that the page went away
            yield {"changes": changes} if changes else {"tick": time.time()}
            if not os.path.exists(f"/proc/{pid}"):
                yield {"stopped": True}
                return


def cgroup_figures(engine: Any, ref: str) -> dict:
    _c, pid = _container(engine, ref)
    return cgroups.figures(pid)


def cgroup_stream(engine: Any, ref: str, seconds: float = 900, interval: float = 0.5):
    _c, pid = _container(engine, ref)
    previous = None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sample = cgroups.figures(pid)
        except errors.NotFound:
            yield {"stopped": True}
            return
        sample["cpu_percent"] = cgroups.cpu_percent(previous, sample) if previous else None
        yield sample
        previous = sample
        time.sleep(interval)


def memory_hog(engine: Any, ref: str) -> dict:
    """Start a process in the container that grows until its cgroup's OOM killer stops it."""
    _c, pid = _container(engine, ref)
    limit = cgroups.figures(pid)["memory"].get("limit")
    if limit is None or limit > HOG_MAX_LIMIT:
        raise errors.InvalidArgument(
            f"container {ref}: the memory hog needs a memory limit of at most 1 GiB "
            f"(this one has {'none' if limit is None else limit})"
        )
    try:
        exec_id = engine.containers.exec_create(ref, ["sh", "-c", HOG])
        session = engine.containers.exec_start(exec_id)
    except ModuleNotFoundError:  # an engine without exec yet: join the container by hand
        return {"exec_id": None, "pid": spawn_inside(pid, ["sh", "-c", HOG]), "limit": limit}

    def drain() -> None:  # read until the hog dies, so the session is reaped
        try:
            while session.read():
                pass
        finally:
            session.close()

    threading.Thread(target=drain, daemon=True, name="lesson-hog").start()
    return {"exec_id": exec_id, "limit": limit}


def spawn_inside(pid: int, argv: list[str]) -> int:
    """Start ``argv`` in ``pid``'s cgroups, namespaces and root, as ``runc exec`` does."""
    procs = [Path(p) / "cgroup.procs" for p in cgroups.cgroup_dirs(pid).values()]

    def join_cgroups() -> None:  # in the child, before exec: the kernel charges it from here on
        for f in procs:
            with contextlib.suppress(OSError):
                f.write_text(str(os.getpid()))

    proc = subprocess.Popen(
        ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--", *argv],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=join_cgroups,
    )
    threading.Thread(target=proc.wait, daemon=True, name="lesson-reap").start()
    return proc.pid


def layers_view(engine: Any, ref: str) -> dict:
    return layers.analyze_image(engine.images.resolve(ref))


def layer_of(engine: Any, ref: str, path: str) -> dict:
    image = engine.images.resolve(ref)
    return {"path": path, "layer": layers.layer_providing(image.layer_dirs(), path)}


def images(engine: Any) -> list[dict]:
    return [{"id": i.id, "tags": list(i.repo_tags), "layers": len(i.layers)}
            for i in engine.images.list()]


def run_experiment(engine: Any, name: str) -> dict:
    return experiment.run_experiment(name)


PREPARE_VM = Path(__file__).resolve().parent.parent / "scripts" / "vm" / "prepare.sh"


def boot_vm(engine: Any) -> dict:
    """Boot the lesson's VM; on a fresh host, first fetch its kernel and build its initramfs."""
    try:
        vm.vm_files(vm.VM_DIR)
    except errors.NotFound:
        done = subprocess.run(["bash", str(PREPARE_VM), str(vm.VM_DIR)], capture_output=True,
                              text=True, timeout=300)
        if done.returncode:
            raise errors.RuntimeFailure(
                f"preparing the lesson VM failed: {done.stderr.strip()[-500:]}") from None
    return vm.boot_vm()


def start_container(engine: Any, image: str = "busybox:latest") -> dict:
    return vm.measure_container(engine, image)


def host_facts(engine: Any) -> dict:
    u = os.uname()
    return {"kernel": f"{u.sysname} {u.release}", "machine": u.machine, "hostname": u.nodename,
            "kvm": vm.kvm_usable()}


CALLS = {
    "namespaces": namespaces_view, "overlay": overlay_view, "cgroups": cgroup_figures,
    "memory_hog": memory_hog, "layers": layers_view, "layer_of": layer_of, "images": images,
    "experiment": run_experiment, "boot_vm": boot_vm, "start_container": start_container,
    "host_facts": host_facts,
}
STREAMS = {"watch_upper": watch_upper, "cgroup_stream": cgroup_stream}
