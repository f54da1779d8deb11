"""The launcher forks supervisors: outside our process tree, restarted when killed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from .conftest import parent_pid, wait_for


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def zombie_or_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def supervisor_of(engine, cid: str) -> int:
    return engine.containers._cdir(cid).read_state()["ShimPid"]


def test_supervisor_is_forked_by_the_launcher_in_its_own_session(engine, containers):
    c = containers(start=True, cmd=["sleep", "30"])
    shim_pid = supervisor_of(engine, c.id)
    launcher = parent_pid(shim_pid)
    assert comm(shim_pid) == "estiba-shim" and comm(launcher) == "estiba-launcher"
    assert parent_pid(launcher) != os.getpid()  # daemonized: not a child of the engine's process
    assert os.getsid(shim_pid) == shim_pid != os.getsid(0)


def test_a_killed_launcher_is_started_again_and_running_containers_stay(engine, containers):
    first = containers(start=True, cmd=["sleep", "30"])
    old_launcher = parent_pid(supervisor_of(engine, first.id))
    os.kill(old_launcher, signal.SIGKILL)
    wait_for(lambda: zombie_or_gone(old_launcher))
    second = containers(start=True, cmd=["sleep", "30"])
    new_launcher = parent_pid(supervisor_of(engine, second.id))
    assert new_launcher != old_launcher and comm(new_launcher) == "estiba-launcher"
    # the first container's supervisor lost its parent, not its job
    engine.containers.stop(first.id, timeout=1)
    assert engine.containers.wait(first.id, timeout=10) == 137


def test_auto_remove_root_is_volatile_and_others_are_not(engine, containers):
    rm = containers(start=True, cmd=["sleep", "30"], auto_remove=True)
    kept = containers(start=True, cmd=["sleep", "30"])

    def options(c) -> str:
        root = str(engine.containers._cdir(c.id).rootfs)
        with open("/proc/self/mountinfo") as fh:
            line = next(ln for ln in fh if ln.split()[4] == root)
        return line.split(" - ", 1)[1]

    assert "volatile" in options(rm)
    assert "volatile" not in options(kept)


def test_a_dead_spare_is_replaced(engine, containers):
    first = containers(start=True, cmd=["sleep", "30"])
    launcher = parent_pid(supervisor_of(engine, first.id))
    spares = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != launcher
              and _is_spare_of(int(p), launcher)]
    assert len(spares) == 1
    os.kill(spares[0], signal.SIGKILL)
    second = containers(start=True, cmd=["sleep", "30"])
    assert parent_pid(supervisor_of(engine, second.id)) == launcher
    assert engine.containers.get(second.id).state.status == "running"


def _is_spare_of(pid: int, launcher: int) -> bool:
    try:
        return parent_pid(pid) == launcher and comm(pid) == "estiba-launcher"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_supervisors_and_the_launcher_run_at_normal_priority(engine, containers):
    # The launcher forks its next spare as SCHED_IDLE; neither it nor a supervisor keeps it.
    c = containers(start=True, cmd=["sleep", "30"])
    shim_pid = supervisor_of(engine, c.id)
    for pid in (shim_pid, parent_pid(shim_pid)):
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER, comm(pid)
    container_pid = engine.containers.get(c.id).state.pid
    assert os.sched_getscheduler(container_pid) == os.SCHED_OTHER
