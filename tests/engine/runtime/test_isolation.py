"""Inside a container: its own PID 1, hostname, processes, network; Docker's limits."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from engine.runtime import spec as spec_mod

from .conftest import wait_for


def _output(engine, cid: str, stream: str | None = None) -> str:
    entries = engine.containers.logs(cid)
    return b"".join(e.data for e in entries if stream in (None, e.stream)).decode()


def _run(engine, containers, script: str, **kw) -> tuple[int, str]:
    c = containers(cmd=["sh", "-c", script], start=True, **kw)
    code = engine.containers.wait(c.id, timeout=30)
    return code, _output(engine, c.id, "stdout")


def test_pid_namespace_hostname_and_processes(engine, containers):
    code, out = _run(engine, containers,
                     "echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'; "
                     "cat /proc/1/cmdline; echo",
                     hostname="inside-box")
    lines = out.split("\n")
    assert code == 0
    assert lines[0] == "pid=1"  # the shell is PID 1 of its own namespace
    assert lines[1] == "inside-box" != socket.gethostname()
    # only the shell and ls (and grep) exist: no host process is visible
    assert int(lines[2]) <= 3
    assert lines[3].startswith("sh")


def test_no_host_network_interface(engine, containers):
    code, out = _run(engine, containers, "ls /sys/class/net; cat /proc/net/dev")
    assert code == 0
    host_ifaces = {p.name for p in Path("/sys/class/net").iterdir()} - {"lo"}
    assert host_ifaces, "the host should have at least one interface besides lo"
    seen = set(out.split())
    assert "lo" in seen
    assert not host_ifaces & {w.rstrip(":") for w in seen}


def test_capabilities_seccomp_rlimits_masked_paths(engine, containers):
    assert Path("/proc/timer_list").stat().st_size == 0 and Path("/proc/timer_list").exists()
    code, out = _run(engine, containers,
                     "grep -E '^(CapEff|Seccomp):' /proc/self/status; ulimit -n; "
                     "wc -c < /proc/timer_list; "
                     "echo 1 > /proc/sys/kernel/domainname 2>&1 || echo ro-ok; "
                     "cat /proc/self/mountinfo | grep ' / / ' | grep -c overlay")
    lines = out.split("\n")
    assert code == 0
    cap_eff = int(lines[0].split()[1], 16)
    wanted = 0
    # capability numbers from linux/capability.h
    numbers = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4,
               "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
               "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18,
               "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31}
    for cap in spec_mod.DEFAULT_CAPS:
        wanted |= 1 << numbers[cap]
    assert cap_eff == wanted  # Docker's 14 capabilities, no CAP_SYS_ADMIN
    assert lines[1].split()[1] == "2"  # a seccomp filter is installed
    assert int(lines[2]) <= 20000  # NOFILE clamped to the host's hard limit
    assert lines[3].strip() == "0"  # /proc/timer_list is masked (a bind of /dev/null)
    assert "ro-ok" in out  # /proc/sys is read-only
    assert lines[-2] == "1"  # the root is the overlay


def test_seccomp_profile_conversion():
    profile = spec_mod.seccomp_profile("/usr/share/containers/seccomp.json")
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["architectures"][0] == "SCMP_ARCH_X86_64"
    allowed = {n for s in profile["syscalls"] if s["action"] == "SCMP_ACT_ALLOW" and not s.get(
        "args") for n in s["names"]}
    assert "read" in allowed and "kexec_load" not in allowed
    source = json.loads(Path("/usr/share/containers/seccomp.json").read_text())
    out_rules = [(tuple(r["names"]), r["action"], json.dumps(r.get("args"))) for r in
                 profile["syscalls"]]
    for rule in source["syscalls"]:
        key = (tuple(rule["names"]), rule["action"], json.dumps(rule.get("args") or None))
        caps_in = (rule.get("includes") or {}).get("caps") or []
        caps_out = (rule.get("excludes") or {}).get("caps") or []
        if caps_in == ["CAP_SYS_ADMIN"]:
            assert key not in out_rules  # only for holders of CAP_SYS_ADMIN: left out
        if caps_out == ["CAP_SYS_ADMIN"] and not (rule.get("includes") or {}).get("arches"):
            assert key in out_rules  # for those without it: kept
    assert all(set(s) <= {"names", "action", "args", "errnoRet"} for s in profile["syscalls"])


def test_memory_limit_oom_kills_and_is_recorded(engine, containers):
    offset = engine.events.end_offset()
    # The hog waits for the test to read the limits: the cgroup goes with the container.
    c = containers(cmd=["sh", "-c", "until [ -e /tmp/go ]; do sleep 0.05; done; tail /dev/zero"],
                   memory=16 * 1024 * 1024, memory_swap=16 * 1024 * 1024, start=True)
    paths = engine.containers.get(c.id).cgroup_paths
    if "memory" in paths:  # cgroup v1
        assert int((paths["memory"] / "memory.limit_in_bytes").read_text()) == 16 * 1024 * 1024
        memsw = paths["memory"] / "memory.memsw.limit_in_bytes"
        if memsw.exists():  # swap accounting is a boot option
            assert int(memsw.read_text()) == 16 * 1024 * 1024
    else:
        assert int((paths["unified"] / "memory.max").read_text()) == 16 * 1024 * 1024
        assert (paths["unified"] / "memory.swap.max").read_text().strip() == "0"
    (engine.containers.get(c.id).rootfs / "tmp" / "go").touch()  # the merged view, from the host
    assert engine.containers.wait(c.id, timeout=60) == 137
    state = engine.containers.get(c.id).state
    assert state.oom_killed
    with open(engine.events.journal) as fh:
        fh.seek(offset)
        actions = [(e["action"], e["actor_id"]) for e in map(json.loads, fh)]
    assert ("oom", c.id) in actions and ("die", c.id) in actions


def test_pids_limit_stops_a_fork_bomb(engine, containers):
    # the subshell forks until the kernel refuses; the outer shell then stays, without forking
    c = containers(cmd=["sh", "-c", "(i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done); "
                        "echo forked; exec sleep 30"], pids_limit=16, start=True)
    wait_for(lambda: "forked" in _output(engine, c.id), timeout=30)
    assert "can't fork" in _output(engine, c.id, "stderr")
    paths = engine.containers.get(c.id).cgroup_paths
    pids = paths.get("pids") or paths["unified"]
    assert (pids / "pids.max").read_text().strip() == "16"
    assert 1 < int((pids / "pids.current").read_text()) <= 16
    assert int((pids / "pids.events").read_text().split()[1]) > 0  # forks were refused
    engine.containers.kill(c.id)
    assert engine.containers.wait(c.id, timeout=20) == 137


def test_cpu_limits_reach_the_cgroup(engine, containers):
    c = containers(cmd=["sleep", "1000"], cpu_shares=512, nano_cpus=500_000_000,
                   cpuset_cpus="0", start=True)
    paths = engine.containers.get(c.id).cgroup_paths
    if "cpu" in paths:
        assert (paths["cpu"] / "cpu.shares").read_text().strip() == "512"
        assert (paths["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (paths["cpuset"] / "cpuset.cpus").read_text().strip() == "0"
    else:
        assert (paths["unified"] / "cpu.max").read_text().split()[0] == "50000"
    wait_for(lambda: engine.containers.get(c.id).state.running)
