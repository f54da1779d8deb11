"""Stats, OOM and the freezer from a real container's cgroups (v1 here; v2 parsers on real text)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.errors import NotFound
from engine.runtime import cgroups
from engine.runtime.cgroups import Cgroup
from engine.runtime.containers import ContainerSpec

MEMORY_LIMIT = 64 * 2**20
PIDS_LIMIT = 50


class Box:
    """The module's container and a way to run shell inside it (plain runc exec)."""

    def __init__(self, engine, cid: str) -> None:
        self.engine = engine
        self.c = engine.containers.get(cid)
        self.id, self.pid, self.cgroups_path = self.c.id, self.c.pid, self.c.cgroups_path
        self.runtime = engine.containers.runtime_for(self.c)

    def sh(self, script: str) -> subprocess.CompletedProcess:
        argv = self.runtime.command("exec", self.c.runtime_id, "sh", "-c", script)
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def container(engine):
    c = engine.containers.create(ContainerSpec(
        image="busybox:latest", cmd=["sleep", "1000"], network_mode="none",
        memory=MEMORY_LIMIT, pids_limit=PIDS_LIMIT))
    try:
        engine.containers.start(c.id)
        yield Box(engine, c.id)
    finally:
        engine.containers.remove(c.id, force=True)


def test_cgroup_of_a_container_process(container):
    cg = Cgroup.of_pid(container.pid)
    assert cg.version == 1  # this host is hybrid: the controllers are v1's
    assert cg.path("memory") == Path("/sys/fs/cgroup/memory") / container.cgroups_path.lstrip("/")
    assert container.pid in cg.pids()
    by_path = Cgroup.of_path(container.cgroups_path)
    assert by_path.path("pids") == cg.path("pids")


def test_stats_memory_against_limit_and_pids(container):
    before = container.engine.containers.stats(container.id)  # the manager's one sample
    assert before["name"] == "/" + container.c.name and before["id"] == container.id
    assert before["memory_stats"]["limit"] == MEMORY_LIMIT
    assert before["pids_stats"] == {"current": 1, "limit": PIDS_LIMIT}
    assert before["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    # 20 MiB in the container's tmpfs is charged to its memory cgroup.
    out = container.sh("head -c 20971520 /dev/zero > /dev/shm/fill; "
                       "sleep 30 >/dev/null 2>&1 & sleep 30 >/dev/null 2>&1 &")
    assert out.returncode == 0, out.stderr
    # CPU work between two samples gives a CPU percentage.
    container.sh("i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done")
    after = cgroups.stats(container.engine.containers.get(container.id), previous=before)
    assert after["preread"] == before["read"]
    assert after["precpu_stats"] == before["cpu_stats"]
    # (not before + 20 MiB: pages charged at start may be reclaimed meanwhile)
    assert after["memory_stats"]["usage"] >= 20 * 2**20
    assert after["memory_stats"]["stats"]["shmem"] >= 20 * 2**20
    assert after["pids_stats"]["current"] == 3
    cpu = after["cpu_stats"]
    assert cpu["cpu_usage"]["total_usage"] > before["cpu_stats"]["cpu_usage"]["total_usage"]
    assert len(cpu["cpu_usage"]["percpu_usage"]) >= 1 and cpu["online_cpus"] >= 1
    assert cgroups.cpu_percent(after) > 0
    # Without an explicit previous sample, the last one this process took is used.
    again = container.engine.containers.stats(container.id)
    assert again["precpu_stats"] == after["cpu_stats"] and again["preread"] == after["read"]
    row = cgroups.summary(after)
    assert row["pids"] == 3 and row["memory_limit"] == MEMORY_LIMIT
    assert 30 < row["memory_percent"] < 100
    container.sh("rm /dev/shm/fill; kill $(pidof sleep | tr ' ' '\\n' | grep -v '^1$')")


def test_networks_from_the_container_netns(container):
    cg = Cgroup.of_pid(container.pid)
    assert "networks" not in cgroups.read_stats(cg, container.pid)  # only lo: Docker omits it
    subprocess.run(["nsenter", "-t", str(container.pid), "-n", "ip", "link", "add", "vxa0",
                    "type", "veth", "peer", "name", "vxb0"], check=True)
    try:
        nets = cgroups.read_stats(cg, container.pid)["networks"]
        assert set(nets) == {"vxa0", "vxb0"}
        assert set(nets["vxa0"]) >= {"rx_bytes", "tx_bytes", "rx_packets", "tx_dropped"}
    finally:
        subprocess.run(["nsenter", "-t", str(container.pid), "-n", "ip", "link", "del",
                        "vxa0"], check=True)


def test_oom_kill_is_counted(container):
    cg = Cgroup.of_pid(container.pid)
    assert cgroups.oom_state(cg).oom_kills == 0
    # dd's 100 MiB buffer in a 64 MiB cgroup (no swap here): the kernel kills dd.
    out = container.sh("dd if=/dev/zero of=/dev/null bs=100M count=1")
    assert out.returncode == 137, (out.returncode, out.stderr)
    state = cgroups.oom_state(cg)
    assert state.oom_kills >= 1, out
    assert Cgroup.of_pid(container.pid).exists()


def test_freeze_and_thaw(container):
    cg = Cgroup.of_pid(container.pid)
    assert not cgroups.frozen(cg)
    cgroups.set_frozen(cg, True)
    try:
        assert cgroups.frozen(cg)
        assert container.runtime.state(container.c.runtime_id)["status"] == "paused"
    finally:
        cgroups.set_frozen(cg, False)
    assert not cgroups.frozen(cg)
    assert container.runtime.state(container.c.runtime_id)["status"] == "running"


def test_stats_of_a_missing_cgroup_is_not_found():
    with pytest.raises(NotFound, match="does not exist"):
        cgroups.read_stats(Cgroup.of_path("/estiba-x-tests/never-made"))
    with pytest.raises(NotFound, match="process 999999999"):
        Cgroup.of_pid(999999999)


# --- parsers against the kernel's own text (v2 cannot be mounted here) ----------

V2_PROC_CGROUP = "0::/system.slice/estiba-abc.scope\n"
V2_MOUNTINFO = (
    "25 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
    "26 1 0:5 / /proc rw,relatime - proc proc rw\n"
)
HYBRID_MOUNTINFO = (
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
)
V2_CPU_STAT = (
    "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\ncore_sched.force_idle_usec 0\n"
    "nr_periods 10\nnr_throttled 2\nthrottled_usec 4000\nnr_bursts 0\nburst_usec 0\n"
)
V2_MEMORY_EVENTS = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n"
V2_IO_STAT = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
    "drop fifo colls carrier compressed\n"
    "    lo:     100       1    0    0    0     0          0         0      100       1    0 "
    "   0    0     0       0          0\n"
    "  eth0:    1500      10    1    2    0     0          0         0      900       7    3 "
    "   4    0     0       0          0\n"
)


def test_v2_parsers_on_kernel_text(tmp_path):
    v1, v2 = cgroups.parse_proc_cgroup(V2_PROC_CGROUP)
    assert v1 == {} and v2 == "/system.slice/estiba-abc.scope"
    hier_v1, hier_v2 = cgroups.parse_mountinfo(V2_MOUNTINFO)
    assert hier_v1 == [] and hier_v2.mountpoint == Path("/sys/fs/cgroup")
    hier_v1, _ = cgroups.parse_mountinfo(HYBRID_MOUNTINFO)
    assert hier_v1[0].controllers == {"cpu", "cpuacct"}
    assert hier_v1[1].controllers == {"name=systemd"}
    assert cgroups.parse_memory_events(V2_MEMORY_EVENTS).oom_kills == 1
    assert cgroups.parse_int("max\n") is None and cgroups.parse_int("42\n") == 42
    nbytes, ops = cgroups.parse_io_stat_v2(V2_IO_STAT)
    assert nbytes == [{"major": 8, "minor": 0, "op": "read", "value": 4096},
                      {"major": 8, "minor": 0, "op": "write", "value": 8192}]
    assert [o["value"] for o in ops] == [1, 2]
    assert cgroups.parse_net_dev(NET_DEV) == {"eth0": {
        "rx_bytes": 1500, "rx_packets": 10, "rx_errors": 1, "rx_dropped": 2,
        "tx_bytes": 900, "tx_packets": 7, "tx_errors": 3, "tx_dropped": 4}}


def test_v2_stats_from_a_unified_dir(tmp_path):
    """A directory holding v2's control files (as the kernel writes them) reads as Docker's JSON."""
    (tmp_path / "cpu.stat").write_text(V2_CPU_STAT)
    (tmp_path / "memory.current").write_text("10485760\n")
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.stat").write_text("anon 8388608\nfile 2097152\ninactive_file 1048576\n")
    (tmp_path / "memory.events").write_text(V2_MEMORY_EVENTS)
    (tmp_path / "pids.current").write_text("3\n")
    (tmp_path / "pids.max").write_text("max\n")
    (tmp_path / "io.stat").write_text(V2_IO_STAT)
    (tmp_path / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    cg = Cgroup(2, {}, tmp_path)
    stats = cgroups.read_stats(cg)
    assert stats["cpu_stats"]["cpu_usage"] == {
        "total_usage": 2_500_000_000, "usage_in_kernelmode": 500_000_000,
        "usage_in_usermode": 2_000_000_000}
    assert stats["cpu_stats"]["throttling_data"] == {
        "periods": 10, "throttled_periods": 2, "throttled_time": 4_000_000}
    assert stats["memory_stats"]["usage"] == 10485760
    assert stats["memory_stats"]["limit"] == cgroups.host_memory()  # "max": the host's RAM
    assert stats["pids_stats"] == {"current": 3}
    assert cgroups.memory_usage(stats) == 10485760 - 1048576
    assert cgroups.summary(stats)["block_write"] == 8192
    assert cgroups.oom_state(cg).oom_kills == 1 and not cgroups.frozen(cg)
    (tmp_path / "cgroup.freeze").write_text("0\n")
    with pytest.raises(Exception, match="did not freeze"):
        cgroups.set_frozen(cg, True, timeout=0.05)  # nothing here answers "frozen 1"
    assert (tmp_path / "cgroup.freeze").read_text() == "1"


def test_cpu_percent_is_dockers_formula():
    stats = {
        "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000,
                      "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
    }
    assert cgroups.cpu_percent(stats) == pytest.approx(40.0)


def test_stopped_container_gives_dockers_zero_sample(engine):
    c = engine.containers.create(ContainerSpec(image="busybox:latest", cmd=["true"],
                                               network_mode="none"))
    try:
        sample = engine.containers.stats(c.id)
        assert sample["read"] == cgroups.ZERO_TIME and sample["memory_stats"] == {}
        assert sample["id"] == c.id and cgroups.cpu_percent(sample) == 0.0
    finally:
        engine.containers.remove(c.id, force=True)
