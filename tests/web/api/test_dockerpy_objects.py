"""docker-py drives images (pull, push, build, tag, save/load), volumes, networks, events."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
import uuid

import docker
import pytest


def _context(files: dict[str, str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_push_then_pull_from_the_local_registry(dclient, made, registry_server):
    repo = f"{registry_server.host}/estiba-api/{uuid.uuid4().hex[:8]}"
    made.images.append(f"{repo}:v1")
    assert dclient.images.get("busybox").tag(repo, "v1")
    lines = list(dclient.api.push(repo, tag="v1", stream=True, decode=True))
    assert not [x for x in lines if "error" in x], lines
    [aux] = [x["aux"] for x in lines if "aux" in x]
    digest = aux["Digest"]
    assert digest.startswith("sha256:") and aux["Tag"] == "v1"
    assert [x["status"] for x in lines if "digest: " in x.get("status", "")] == [
        f"v1: digest: {digest} size: {aux['Size']}"]
    dclient.images.remove(f"{repo}:v1")
    with pytest.raises(docker.errors.ImageNotFound):
        dclient.images.get(f"{repo}:v1")
    progress = list(dclient.api.pull(repo, tag="v1", stream=True, decode=True))
    assert not [x for x in progress if "error" in x], progress
    assert any("status" in x for x in progress)
    image = dclient.images.get(f"{repo}:v1")
    assert image.id == dclient.images.get("busybox").id
    assert f"{repo}:v1" in [t for i in dclient.images.list() for t in i.tags]
    assert image.history()


def test_pull_of_a_missing_image_is_an_error(dclient, registry_server):
    with pytest.raises(docker.errors.APIError) as err:
        dclient.images.pull(f"{registry_server.host}/estiba-api/never-pushed", tag="x")
    assert "never-pushed" in str(err.value)


def test_build_with_args_labels_and_tag(dclient, made):
    tag = f"{made.uniq('i')}:built"
    made.images.append(tag)
    dockerfile = ("FROM busybox\nARG WHO=nobody\nRUN echo \"hello $WHO\" > /greeting\n"
                  "COPY note.txt /note.txt\nCMD [\"cat\", \"/greeting\", \"/note.txt\"]\n")
    image, logs = dclient.images.build(
        fileobj=_context({"Dockerfile": dockerfile, "note.txt": "a note\n"}), custom_context=True,
        tag=tag, buildargs={"WHO": "estiba"}, labels={"course": "containers"}, rm=True)
    logs = list(logs)
    text = "".join(x.get("stream", "") for x in logs)
    assert "Step 1/5 : FROM busybox" in text
    assert [x["aux"]["ID"] for x in logs if "aux" in x] == [image.id]
    assert text.count("Successfully built") == 1 and text.count("Successfully tagged") == 1
    assert image.labels["course"] == "containers"
    out = dclient.containers.run(tag, name=made.uniq(), remove=True)
    assert out == b"hello estiba\na note\n"


def test_build_error_is_reported(dclient):
    with pytest.raises(docker.errors.BuildError) as err:
        dclient.images.build(fileobj=_context({"Dockerfile": "FROM busybox\nRUN exit 3\n"}),
                             custom_context=True)
    assert "exit" in str(err.value).lower() or "3" in str(err.value)


def test_save_and_load(dclient, made):
    tag = f"{made.uniq('i')}:saved"
    made.images.append(tag)
    dclient.images.get("busybox").tag(tag)
    data = b"".join(dclient.images.get(tag).save(named=tag))
    assert len(data) > 100_000
    dclient.images.remove(tag)
    loaded = dclient.images.load(data)
    assert tag in [t for i in loaded for t in i.tags]
    assert dclient.images.get(tag).id == dclient.images.get("busybox").id


def test_import_image_from_data(dclient, made):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add("/bin/busybox", "bin/busybox")
    name = made.uniq("i")
    made.images.append(f"{name}:v1")
    answer = dclient.api.import_image_from_data(buf.getvalue(), repository=name, tag="v1",
                                                changes=['ENTRYPOINT ["/bin/busybox"]'])
    image_id = json.loads(answer.splitlines()[-1])["status"]
    image = dclient.images.get(f"{name}:v1")
    assert image.id == image_id and image.attrs["Config"]["Entrypoint"] == ["/bin/busybox"]
    out = dclient.containers.run(f"{name}:v1", ["echo", "from", "import"], remove=True)
    assert out == b"from import\n"


def test_volumes(dclient, made):
    name = made.uniq("v")
    vol = dclient.volumes.create(name, labels={"course": "x"})
    assert vol.name == name
    assert name in [v.name for v in dclient.volumes.list()]
    assert dclient.volumes.get(name).attrs["Labels"] == {"course": "x"}
    c = made.uniq()
    dclient.containers.run("busybox", ["sh", "-c", "echo kept > /data/f"], name=c,
                           volumes={name: {"bind": "/data", "mode": "rw"}})
    out = dclient.containers.run("busybox", ["cat", "/data/f"], remove=True,
                                 volumes={name: {"bind": "/data", "mode": "ro"}})
    assert out == b"kept\n"
    dclient.containers.get(c).remove()
    vol.remove()
    with pytest.raises(docker.errors.NotFound):
        dclient.volumes.get(name)


def test_networks(dclient, made):
    name = made.uniq("n")
    net = dclient.networks.create(name, driver="bridge")
    assert net.id
    assert name in [n.name for n in dclient.networks.list()]
    server = made.uniq()
    dclient.containers.run("busybox", ["sleep", "60"], name=server, detach=True, network=name)
    out = dclient.containers.run("busybox", ["ping", "-c", "1", "-W", "2", server],
                                 network=name, remove=True)
    assert b"1 packets received" in out
    other = made.uniq()
    c = dclient.containers.run("busybox", ["sleep", "60"], name=other, detach=True)
    net.connect(c)
    net.reload()
    assert c.id in net.attrs.get("Containers", {})
    net.disconnect(c)
    dclient.containers.get(server).remove(force=True)
    c.remove(force=True)
    net.remove()
    with pytest.raises(docker.errors.NotFound):
        dclient.networks.get(name)


def test_events_stream_and_filters(dclient, made):
    name = made.uniq()
    since = time.time() - 1
    seen: list[dict] = []
    stream = dclient.events(decode=True, filters={"container": name})

    def read() -> None:
        for ev in stream:
            seen.append(ev)
            if ev.get("Action") == "destroy":
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    dclient.containers.run("busybox", ["true"], name=name)
    dclient.containers.get(name).remove()
    reader.join(15)
    stream.close()
    actions = [ev["Action"] for ev in seen]
    assert actions[:1] == ["create"] and "start" in actions and "die" in actions, actions
    assert actions[-1] == "destroy"
    assert all(ev["Actor"]["Attributes"].get("name") == name for ev in seen)
    past = list(dclient.events(since=since, until=time.time() + 0.01, decode=True,
                               filters={"container": name, "event": "die"}))
    assert [ev["Action"] for ev in past] == ["die"]
    assert past[0]["Actor"]["Attributes"]["exitCode"] == "0"


def test_events_until_a_moment_to_come_end_then_even_with_no_event(dclient):
    started = time.monotonic()
    got = list(dclient.events(since=time.time() - 1, until=time.time() + 1.5, decode=True,
                              filters={"container": "no-such-container-here"}))
    took = time.monotonic() - started
    assert got == [] and 1.2 < took < 10, (got, took)


def test_system_df_and_ps_size_measure_what_is_used_and_written(dclient, made):
    vol, name = made.uniq("v"), made.uniq()
    dclient.volumes.create(vol)
    c = dclient.containers.run(
        "busybox", ["sh", "-c", "head -c 7000 /dev/zero > /data/f; head -c 3000 /dev/zero > /w"],
        name=name, volumes={vol: {"bind": "/data", "mode": "rw"}}, detach=True)
    c.wait()
    df = dclient.df()
    assert {"Images", "Containers", "Volumes", "LayersSize", "BuildCache"} <= set(df)
    busybox = next(i for i in df["Images"] if "busybox:latest" in (i.get("RepoTags") or []))
    # like Docker's, the images are those `docker images` lists (no intermediate steps)
    assert sorted(i["Id"] for i in df["Images"]) == sorted(i.id for i in dclient.images.list())
    assert busybox["Containers"] >= 1  # docker system df's ACTIVE counts it
    assert busybox["SharedSize"] >= 0 and df["LayersSize"] >= busybox["Size"]
    mine = next(x for x in df["Containers"] if x["Id"] == c.id)
    assert 3000 <= mine["SizeRw"] < 3000 + 4096
    assert mine["SizeRootFs"] == mine["SizeRw"] + busybox["Size"]
    used = next(v for v in df["Volumes"] if v["Name"] == vol)
    assert used["UsageData"] == {"Size": 7000, "RefCount": 1}
    listed = dclient.api.containers(all=True, size=True, filters={"id": c.id})
    assert listed[0]["SizeRw"] == mine["SizeRw"]
    assert "SizeRw" not in dclient.api.containers(all=True, filters={"id": c.id})[0]
