"""``--cap-add``, ``--cap-drop`` and ``--privileged``: what root in the container may do."""

from __future__ import annotations

import pytest

from engine import errors
from engine.runtime import privileges
from engine.runtime.spec import DEFAULT_CAPS

from .test_isolation import _run


def _cap_bits(names: list[str]) -> int:
    return sum(1 << privileges.CAP_NAMES.index(n.removeprefix("CAP_")) for n in names)


def _status(out: str, field: str) -> str:
    return next(line.split()[1] for line in out.splitlines() if line.startswith(field + ":"))


def test_adds_and_drops_follow_dockers_rules():
    caps = privileges.capabilities
    assert caps(DEFAULT_CAPS, [], [], False) == [c for c in privileges.all_caps()
                                                 if c in DEFAULT_CAPS]
    assert caps(DEFAULT_CAPS, ["net_admin"], ["CAP_CHOWN", "mknod"], False) == [
        c for c in privileges.all_caps()
        if c in (set(DEFAULT_CAPS) | {"CAP_NET_ADMIN"}) - {"CAP_CHOWN", "CAP_MKNOD"}]
    assert caps(DEFAULT_CAPS, ["NET_ADMIN"], ["ALL"], False) == ["CAP_NET_ADMIN"]
    assert caps(DEFAULT_CAPS, ["ALL"], ["SYS_ADMIN"], False) == [
        c for c in privileges.all_caps() if c != "CAP_SYS_ADMIN"]
    assert caps(DEFAULT_CAPS, [], ["ALL"], True) == privileges.all_caps()


def test_an_unknown_capability_is_refused_at_create(engine, containers):
    with pytest.raises(errors.InvalidArgument, match="unknown capability 'FLY' in --cap-add"):
        containers(cap_add=["FLY"])


def test_the_kernel_gives_the_container_the_set_asked_for(engine, containers):
    code, out = _run(engine, containers, "grep -E '^Cap(Eff|Bnd):' /proc/self/status; "
                     "chown 1 /tmp 2>&1; echo chown=$?", cap_drop=["ALL"])
    assert code == 0
    assert int(_status(out, "CapEff"), 16) == 0 == int(_status(out, "CapBnd"), 16)
    assert "chown=1" in out  # root without CAP_CHOWN may not give a file away
    code, out = _run(engine, containers, "grep '^CapEff:' /proc/self/status; "
                     "ip link set lo mtu 1280 && echo changed-a-link",
                     cap_add=["NET_ADMIN"], cap_drop=["NET_RAW"])
    wanted = (set(DEFAULT_CAPS) | {"CAP_NET_ADMIN"}) - {"CAP_NET_RAW"}
    assert int(_status(out, "CapEff"), 16) == _cap_bits(sorted(wanted))
    assert "changed-a-link" in out and code == 0
    inspect = engine.containers.get(containers(cap_add=["NET_ADMIN"]).id).to_docker_inspect()
    assert inspect["HostConfig"]["CapAdd"] == ["NET_ADMIN"]
    assert inspect["HostConfig"]["Privileged"] is False


def test_privileged_takes_the_guards_off(engine, containers):
    code, out = _run(engine, containers,
                     "grep -E '^(CapEff|Seccomp):' /proc/self/status; "
                     "test -c /dev/loop-control && echo host-devices; "
                     "grep ' /sys ' /proc/self/mounts; wc -c < /proc/timer_list",
                     privileged=True)
    assert code == 0
    assert int(_status(out, "CapEff"), 16) == _cap_bits(privileges.all_caps())
    assert _status(out, "Seccomp") == "0"  # no filter
    assert "host-devices" in out  # the host's device nodes are in its /dev
    sys_line = next(line for line in out.splitlines() if " /sys " in line)
    assert " rw," in sys_line
    assert int(out.splitlines()[-1]) > 0  # /proc/timer_list is not masked
    inspect = engine.containers.get(containers(privileged=True).id).to_docker_inspect()
    assert inspect["HostConfig"]["Privileged"] is True
