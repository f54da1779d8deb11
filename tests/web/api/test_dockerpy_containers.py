"""docker-py, a client nobody here wrote, drives containers through estiba's API."""

from __future__ import annotations

import time

import docker
import pytest


def test_version_ping_and_info(dclient):
    assert dclient.ping() is True
    version = dclient.version()
    assert version["ApiVersion"] == "1.41"
    assert version["Os"] == "linux"
    info = dclient.info()
    assert info["OSType"] == "linux"
    assert info["Images"] >= 1
    assert info["NCPU"] >= 1


def test_versions_outside_the_supported_range_are_refused_as_docker_does(dclient):
    # docker-py itself refuses to speak below 1.24, so the paths are asked for as they are.
    for version, says in (("1.23", "too old. Minimum supported API version is 1.24"),
                          ("1.99", "too new. Maximum supported API version is 1.41")):
        resp = dclient.api._get(f"{dclient.api.base_url}/v{version}/version")
        assert resp.status_code == 400 and says in resp.json()["message"], resp.text
    assert dclient.api._get(f"{dclient.api.base_url}/v1.41/version").status_code == 200


def test_run_list_logs_stop_remove(dclient, made):
    name = made.uniq()
    c = dclient.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2; sleep 60"],
                               name=name, detach=True, labels={"estiba.test": "yes"})
    assert c.id and len(c.id) == 64
    deadline = time.monotonic() + 10
    while b"err" not in c.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.logs(stdout=True, stderr=False) == b"out\n"
    assert c.logs(stdout=False, stderr=True) == b"err\n"
    assert [x.name for x in dclient.containers.list(filters={"name": name})] == [name]
    assert name in [x.name for x in dclient.containers.list(
        filters={"label": "estiba.test=yes"})]
    c.reload()
    assert c.status == "running"
    assert c.attrs["Config"]["Labels"]["estiba.test"] == "yes"
    c.stop(timeout=1)
    c.reload()
    assert c.status == "exited"
    assert name not in [x.name for x in dclient.containers.list()]
    assert name in [x.name for x in dclient.containers.list(all=True)]
    c.remove()
    with pytest.raises(docker.errors.NotFound):
        dclient.containers.get(name)


def test_run_returns_output_and_exit_code(dclient, made):
    name = made.uniq()
    out = dclient.containers.run("busybox", ["echo", "hello from estiba"], name=name)
    assert out == b"hello from estiba\n"
    with pytest.raises(docker.errors.ContainerError) as err:
        dclient.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
    assert err.value.exit_status == 3


def test_wait_kill_restart_rename(dclient, made):
    name, new = made.uniq(), made.uniq()
    c = dclient.containers.run("busybox", ["sleep", "60"], name=name, detach=True)
    c.kill(signal="SIGKILL")
    assert c.wait(timeout=10)["StatusCode"] == 137
    c.start()
    c.restart(timeout=1)
    c.reload()
    assert c.status == "running"
    c.rename(new)
    c.reload()
    assert c.name == new
    c.remove(force=True)


def test_logs_follow_streams_then_ends(dclient, made):
    name = made.uniq()
    c = dclient.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2;"
                                           " done"], name=name, detach=True)
    lines = list(c.logs(stream=True, follow=True))
    assert b"".join(lines) == b"1\n2\n3\n"
    stamped = c.logs(timestamps=True, tail=1)
    assert stamped.endswith(b" 3\n") and stamped[:4].isdigit()


def test_exec_run(dclient, made):
    name = made.uniq()
    c = dclient.containers.run("busybox", ["sleep", "60"], name=name, detach=True)
    result = c.exec_run(["sh", "-c", "echo in-$HOSTNAME; echo warn >&2; exit 4"])
    assert result.exit_code == 4
    assert b"in-" in result.output and b"warn" in result.output
    out = c.exec_run(["cat", "/proc/1/cmdline"], demux=True)
    assert out.output[0].startswith(b"sleep")
    c.remove(force=True)


def test_errors_are_dockers(dclient, made):
    with pytest.raises(docker.errors.NotFound) as err:
        dclient.containers.get("no-such-container-here")
    assert "no-such-container-here" in str(err.value)
    with pytest.raises(docker.errors.ImageNotFound):
        dclient.containers.create("no-such-image:never")
    name = made.uniq()
    dclient.containers.create("busybox", ["true"], name=name)
    with pytest.raises(docker.errors.APIError) as err:
        dclient.containers.create("busybox", ["true"], name=name)
    assert err.value.status_code == 409
    with pytest.raises(docker.errors.APIError) as err:
        dclient.api.create_container("busybox", ["true"], host_config={"Memory": 100})
    assert err.value.status_code == 400
    with pytest.raises(docker.errors.APIError) as err:
        dclient.api.create_container(5, ["true"])
    assert err.value.status_code == 400 and "Config.Image must be an image reference" in str(
        err.value)


def test_create_body_limits_mounts_and_inspect(dclient, made, tmp_path):
    name = made.uniq()
    (tmp_path / "f.txt").write_text("from the host\n")
    c = dclient.containers.run(
        "busybox", ["sh", "-c", "cat /host/f.txt; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null"
                    " || cat /sys/fs/cgroup/pids.max; mount | grep ' /scratch '"],
        name=name, detach=True, volumes={str(tmp_path): {"bind": "/host", "mode": "ro"}},
        mem_limit="64m", pids_limit=50, nano_cpus=500_000_000, tmpfs={"/scratch": "size=8m"},
        environment={"GREETING": "hola"}, working_dir="/tmp")
    assert c.wait(timeout=20)["StatusCode"] == 0
    out = c.logs()
    assert b"from the host" in out and b"50" in out and b"tmpfs" in out
    attrs = dclient.api.inspect_container(name)
    assert attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert attrs["HostConfig"]["PidsLimit"] == 50
    assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert "GREETING=hola" in attrs["Config"]["Env"]
    assert attrs["Config"]["WorkingDir"] == "/tmp"


def test_top_stats_changes(dclient, made):
    name = made.uniq()
    c = dclient.containers.run("busybox", ["sh", "-c", "touch /made-here; sleep 60"],
                               name=name, detach=True)
    time.sleep(0.3)
    top = c.top()
    assert "PID" in top["Titles"] and any("sleep" in " ".join(p) for p in top["Processes"])
    stats = c.stats(stream=False)
    assert stats["memory_stats"].get("usage", 0) > 0
    stream = c.stats(stream=True, decode=True)
    assert "cpu_stats" in next(stream)
    stream.close()
    assert {"Path": "/made-here", "Kind": 1} in c.diff()
    c.remove(force=True)


def test_put_and_get_archive(dclient, made):
    import io
    import tarfile

    c = dclient.containers.run("busybox", ["sleep", "60"], name=made.uniq(), detach=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("from-py.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"py\n"))
    assert c.put_archive("/tmp", buf.getvalue())
    stream, stat = c.get_archive("/tmp/from-py.txt")
    assert stat["name"] == "from-py.txt" and stat["size"] == 3
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        assert tar.extractfile("from-py.txt").read() == b"py\n"
    c.remove(force=True)
