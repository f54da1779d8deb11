"""Docker's container lifecycle on a real runtime: states, exit codes, typed errors."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from engine.errors import (
    CommandNotFound,
    Conflict,
    ImageNotFound,
    InvalidArgument,
    NotFound,
    NotModified,
    RuntimeFailure,
)
from engine.runtime.containers import ContainerSpec
from engine.volumes import MountSpec


def test_run_exit_code_and_states(engine, containers, leak_check):
    c = containers(cmd=["sh", "-c", "exit 3"])
    assert engine.containers.get(c.id).state.status == "created"
    engine.containers.start(c.id)
    assert engine.containers.wait(c.id, timeout=20) == 3
    state = engine.containers.get(c.id).state
    assert (state.status, state.running, state.exit_code) == ("exited", False, 3)
    inspect = engine.containers.get(c.id).to_docker_inspect()
    assert inspect["State"]["ExitCode"] == 3 and inspect["Name"] == "/" + c.name
    assert inspect["Config"]["Cmd"] == ["sh", "-c", "exit 3"]
    assert inspect["HostConfig"]["NetworkMode"] == "none"
    summary = engine.containers.get(c.id).to_docker_summary()
    assert summary["Status"].startswith("Exited (3)") and summary["Names"] == ["/" + c.name]
    engine.containers.remove(c.id)
    assert leak_check(engine, c) == []
    with pytest.raises(NotFound):
        engine.containers.get(c.id)


def test_stop_sends_signal_then_sigkill(engine, containers, leak_check):
    # sh as PID 1 ignores SIGTERM: stop must fall back to SIGKILL after the timeout
    c = containers(cmd=["sleep", "1000"], start=True)
    assert engine.containers.get(c.id).state.status == "running"
    engine.containers.stop(c.id, timeout=1)
    state = engine.containers.get(c.id).state
    assert state.status == "exited" and state.exit_code == 137
    with pytest.raises(NotModified):
        engine.containers.stop(c.id)
    # a trap handler makes SIGTERM a clean exit
    t = containers(cmd=["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"],
                   start=True)
    engine.containers.stop(t.id, timeout=10)
    assert engine.containers.get(t.id).state.exit_code == 7
    engine.containers.remove(c.id)
    assert leak_check(engine, c) == []


def test_kill_pause_unpause_restart(engine, containers):
    c = containers(cmd=["sleep", "1000"], start=True)
    engine.containers.pause(c.id)
    assert engine.containers.get(c.id).state.status == "paused"
    freezer = engine.containers.get(c.id).cgroup_paths.get("freezer")
    if freezer is not None:
        assert (freezer / "freezer.state").read_text().strip() == "FROZEN"
    with pytest.raises(Conflict):
        engine.containers.pause(c.id)
    engine.containers.unpause(c.id)
    assert engine.containers.get(c.id).state.status == "running"
    first_pid = engine.containers.get(c.id).pid
    engine.containers.restart(c.id, timeout=0)
    again = engine.containers.get(c.id)
    assert again.state.status == "running" and again.pid != first_pid
    engine.containers.kill(c.id, "SIGKILL")
    assert engine.containers.wait(c.id, timeout=20) == 137
    with pytest.raises(Conflict):
        engine.containers.kill(c.id)


def test_remove_running_is_refused_unless_forced(engine, containers, leak_check):
    c = containers(cmd=["sleep", "1000"], start=True)
    with pytest.raises(Conflict, match="Stop the container"):
        engine.containers.remove(c.id)
    assert engine.containers.get(c.id).state.running
    engine.containers.remove(c.id, force=True)
    assert leak_check(engine, c) == []


def test_names_rename_and_conflicts(engine, containers):
    a = containers(name="lc-alpha", cmd=["true"])
    with pytest.raises(Conflict, match="already in use"):
        containers(name="lc-alpha", cmd=["true"])
    engine.containers.rename("lc-alpha", "lc-beta")
    assert engine.containers.get("lc-beta").id == a.id
    assert engine.containers.get("/lc-beta").id == a.id
    assert engine.containers.get(a.id[:10]).id == a.id
    with pytest.raises(NotFound):
        engine.containers.get("lc-alpha")
    with pytest.raises(InvalidArgument):
        engine.containers.rename(a.id, "bad name!")
    listed = engine.containers.list(all=True, filters={"name": ["lc-beta"]})
    assert [c.id for c in listed] == [a.id]
    assert a.id not in [c.id for c in engine.containers.list()]  # not running


def test_typed_errors(engine, containers):
    with pytest.raises(ImageNotFound):
        engine.containers.create(ContainerSpec(image="no-such-image:1", network_mode="none"))
    with pytest.raises(InvalidArgument, match="6MB"):
        containers(cmd=["true"], memory=1024)
    with pytest.raises(InvalidArgument):
        containers(cmd=["true"], cpuset_cpus="0-999")
    with pytest.raises(InvalidArgument):
        containers(cmd=["true"], restart_policy="sometimes")
    c = containers(cmd=["no-such-command", "x"])
    with pytest.raises(CommandNotFound, match='"no-such-command": executable file not found'):
        engine.containers.start(c.id)
    state = engine.containers.get(c.id).state
    assert state.status == "created" and state.exit_code == 127 and "no-such-command" in state.error
    assert not engine.containers.get(c.id).rootfs.is_mount()


def test_start_twice_and_wait_on_created(engine, containers):
    c = containers(cmd=["sleep", "1000"], start=True)
    with pytest.raises(NotModified):
        engine.containers.start(c.id)
    engine.containers.kill(c.id)
    engine.containers.wait(c.id, timeout=20)
    engine.containers.start(c.id)  # an exited container starts again
    assert engine.containers.get(c.id).state.running


def test_user_env_workdir_from_image_files(engine, containers):
    c = containers(cmd=["sh", "-c", "id -u; id -g; echo $HOME $FOO; pwd"], user="daemon",
                   env=["FOO=bar"], working_dir="/made/here", start=True)
    assert engine.containers.wait(c.id, timeout=20) == 0
    out = b"".join(e.data for e in engine.containers.logs(c.id)).decode().split("\n")
    assert out[:4] == ["1", "1", "/usr/sbin bar", "/made/here"]
    with pytest.raises(InvalidArgument, match="unable to find user nosuchuser"):
        engine.containers.start(containers(cmd=["true"], user="nosuchuser").id)


def test_export_and_diff_paths(engine, containers):
    c = containers(cmd=["sh", "-c", "echo data > /new-file; rm /etc/hostname.x 2>/dev/null; true"],
                   start=True)
    engine.containers.wait(c.id, timeout=20)
    assert (engine.containers.upper_dir(c.id) / "new-file").read_text() == "data\n"
    buf = io.BytesIO()
    engine.containers.export(c.id, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = tar.getnames()
    assert "new-file" in names and "bin/busybox" in names
    assert not engine.containers.get(c.id).rootfs.is_mount()
    image_id = engine.containers.get(c.id).image_id
    assert c.id in engine.containers.ids_using_image(image_id)


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_either_runtime_runs_containers(engine, engine_config, leak_check, runtime):
    """crun (with the hybrid-host trick where needed) and runc run the same bundles."""
    import shutil
    from dataclasses import replace

    from engine import Engine

    if shutil.which(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    eng = Engine(config=replace(engine_config, runtime=runtime))
    assert eng.containers.runtime.name == runtime
    c = eng.containers.create(ContainerSpec(image="busybox:latest", network_mode="none",
                                            cmd=["sh", "-c", "echo pid=$$; hostname; "
                                                 "grep Seccomp: /proc/self/status"],
                                            hostname="rtbox", memory=32 * 1024 * 1024))
    try:
        eng.containers.start(c.id)
        assert eng.containers.wait(c.id, timeout=20) == 0
        out = b"".join(e.data for e in eng.containers.logs(c.id))
        assert out == b"pid=1\nrtbox\nSeccomp:\t2\n"  # 2: a filter is in force
        # the default engine still manages it with the runtime it was made with
        assert engine.containers.get(c.id).config["Runtime"] == runtime
        engine.containers.remove(c.id)
        assert leak_check(engine, c) == []
    finally:
        if c.dir.exists():
            eng.containers.remove(c.id, force=True)


def test_commit_makes_an_image_of_the_changes(engine, containers):
    c = containers(cmd=["sh", "-c", "echo committed > /hello.txt"], start=True)
    assert engine.containers.wait(c.id, timeout=20) == 0
    image = engine.containers.commit(c.id, "lc-committed:1", comment="test")
    try:
        d = containers(image="lc-committed:1", cmd=["cat", "/hello.txt"], start=True)
        assert engine.containers.wait(d.id, timeout=20) == 0
        assert [e.data for e in engine.containers.logs(d.id)] == [b"committed\n"]
        engine.containers.remove(d.id)
    finally:
        engine.images.remove(image.id, force=True)


def test_bridge_container_leaves_nothing(engine, containers, leak_check):
    try:
        engine.networks  # noqa: B018 (the network manager may not be installed)
    except ImportError:
        pytest.skip("engine.network is not installed")
    c = containers(cmd=["sh", "-c", "ip -4 addr show eth0 | grep -c inet"], network_mode="bridge",
                   start=True)
    assert engine.containers.wait(c.id, timeout=20) == 0
    assert [e.data for e in engine.containers.logs(c.id)] == [b"1\n"]
    inspect = engine.containers.get(c.id).to_docker_inspect()
    assert inspect["NetworkSettings"]["Networks"]
    veths_before = set(os.listdir("/sys/class/net"))
    engine.containers.remove(c.id)
    assert leak_check(engine, c) == []
    assert set(os.listdir("/sys/class/net")) <= veths_before


@pytest.mark.parametrize("bad", [
    {"cmd": "echo not a list"},
    {"env": ["A=1", 2]},
    {"labels": {"a": 1}},
    {"memory": "1g"},
    {"working_dir": "relative/dir"},
    {"name": "a\x00b"},
    {"hostname": "-bad"},
    {"restart_policy": "on-failure:x"},
    {"stop_signal": "SIGNOPE"},
    {"memory": 64 * 1024 * 1024, "memory_swap": 32 * 1024 * 1024},
    {"nano_cpus": 500_000_000, "cpu_quota": 50_000},
])
def test_hostile_specs_are_refused_before_anything_is_written(engine, bad):
    def listing() -> list[str]:  # (removed containers' files may still be going away)
        return sorted(p.name for p in engine.containers.dir.iterdir()
                      if not p.name.startswith(".rm-"))

    before = listing()
    with pytest.raises(InvalidArgument):
        engine.containers.create(ContainerSpec(image="busybox:latest", network_mode="none",
                                               **{"cmd": ["true"], **bad}))
    assert listing() == before


def test_kill_and_remove_of_a_paused_container(engine, containers, leak_check):
    c = containers(cmd=["sleep", "1000"], start=True)
    engine.containers.pause(c.id)
    engine.containers.kill(c.id)
    assert engine.containers.wait(c.id, timeout=20) == 137
    d = containers(cmd=["sleep", "1000"], start=True)
    engine.containers.pause(d.id)
    engine.containers.remove(d.id, force=True)
    assert leak_check(engine, d) == []


def test_a_mounts_every_option_survives_being_read_back(engine, containers):
    """One MountSpec for the engine: tmpfs_mode and no_copy are kept with the container."""
    from engine.volumes import MountSpec

    c = containers(mounts=[MountSpec(type="tmpfs", target="/scratch", tmpfs_mode=0o1770,
                                     tmpfs_size=1 << 20)])
    again = engine.containers.get(c.id)
    [mount] = again.spec.mounts
    assert (mount.type, mount.target, mount.tmpfs_mode, mount.tmpfs_size) == \
        ("tmpfs", "/scratch", 0o1770, 1 << 20)
    assert again.to_docker_inspect()["HostConfig"]["Mounts"][0]["Source"] == ""


def test_the_runtimes_own_error_reaches_the_caller(engine, containers):
    # A file bind-mounted over a directory of the image: the runtime refuses, not estiba.
    c = containers(cmd=["true"], mounts=[MountSpec(type="bind", source="/etc/hostname",
                                                  target="/bin")])
    runtime = engine.containers.runtime_for(c).name
    with pytest.raises(RuntimeFailure, match=rf"^{runtime} could not start the container: "
                                             r"mount .*/etc/hostname.*Not a directory"):
        engine.containers.start(c.id)
    state = engine.containers.get(c.id).state
    assert state.status == "created" and state.exit_code == 128 and "Not a directory" in state.error


def test_a_silent_container_leaves_only_the_files_it_needs(engine, containers):
    """No empty log, supervisor log or runtime log is made for a container that writes
    nothing (each new file costs a start time on a busy disk); its logs read as empty."""
    c = containers(cmd=["true"], start=True)
    assert engine.containers.wait(c.id, timeout=20) == 0
    assert not c.log_path.exists()
    assert not (c.dir / "shim.log").exists() and not (c.dir / "runtime.log").exists()
    assert list(engine.containers.logs(c.id)) == []
    loud = containers(cmd=["echo", "hello"], start=True)
    assert engine.containers.wait(loud.id, timeout=20) == 0
    assert [e.data for e in engine.containers.logs(loud.id)] == [b"hello\n"]
