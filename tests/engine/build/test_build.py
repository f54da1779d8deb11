"""Real builds as root: containers run for RUN, layers committed, the cache reused."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from engine import Engine
from engine.build.executor import StepFailed
from engine.errors import BuildError
from tests.engine.build.conftest import run_in, write_tree


class Log:
    def __init__(self) -> None:
        self.lines: list[dict] = []

    def __call__(self, msg: dict) -> None:
        self.lines.append(msg)

    @property
    def text(self) -> str:
        return "".join(m.get("stream", "") for m in self.lines)


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [ln.split()[4] for ln in fh if ln.split()[4].startswith(str(path))]


def test_arg_env_user_workdir_visible_in_container(builder: Engine, tmp_path: Path) -> None:
    write_tree(tmp_path, {"hello.txt": "hello\n", "Dockerfile": """\
FROM busybox
ARG WHO=world
ENV GREETING="hi ${WHO}" \\
    EMPTY=
LABEL purpose=test who=$WHO
WORKDIR /app
WORKDIR sub
COPY hello.txt ../
RUN echo "$GREETING${EMPTY:-!}" > greet && echo built-as-$(id -u)
USER nobody
EXPOSE 8080 53/udp
STOPSIGNAL SIGINT
CMD ["cat", "greet"]
"""})
    log = Log()
    img = builder.builder.build(tmp_path, tags=["bt-basic:1"], build_args={"WHO": "you"},
                                progress=log)
    text = log.text
    assert text.startswith("Step 1/12 : FROM busybox\n")
    assert "Step 8/12 : RUN echo" in text and "built-as-0\n" in text
    assert f"Successfully built {img.short_id}\n" in text
    assert text.endswith("Successfully tagged bt-basic:1\n")
    cfg = img.runtime_config
    assert cfg["User"] == "nobody" and cfg["WorkingDir"] == "/app/sub"
    assert "GREETING=hi you" in cfg["Env"] and cfg["Labels"] == {"purpose": "test", "who": "you"}
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert cfg["StopSignal"] == "SIGINT"
    history = img.config["history"]
    assert any(h.get("empty_layer") and "ENV" in h["created_by"] for h in history)
    assert any(h["created_by"].startswith("|1 WHO=you /bin/sh -c echo") for h in history)
    code, out = run_in(builder, "bt-basic:1", ["sh", "-c", "id -un; pwd; cat greet ../hello.txt"])
    assert code == 0
    assert out == "nobody\n/app/sub\nhi you!\nhello\n"
    code, out = run_in(builder, "bt-basic:1", [])  # the image's own CMD
    assert (code, out) == (0, "hi you!\n")


def test_cache_hits_and_a_miss_after_a_source_edit(builder: Engine, tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.txt": "one", "Dockerfile": """\
FROM busybox
RUN echo first > /first
COPY a.txt /a.txt
RUN cat /a.txt > /copy
"""})
    events: list = []
    unsubscribe = builder.events.subscribe(events.append)
    try:
        first = builder.builder.build(tmp_path, tags=["bt-cache:1", "bt-cache:2"],
                                      labels={"org.test": "yes"})
    finally:
        unsubscribe()
    streams = [e.attributes["stream"] for e in events if e.type == "build"]
    assert streams[0] == "Step 1/4 : FROM busybox\n" and all(e.transient for e in events
                                                               if e.type == "build")
    assert streams[-2:] == ["Successfully tagged bt-cache:1\n", "Successfully tagged bt-cache:2\n"]
    assert first.runtime_config["Labels"] == {"org.test": "yes"}
    assert sorted(builder.images.resolve("bt-cache:2").repo_tags)[-2:] == [
        "docker.io/library/bt-cache:1", "docker.io/library/bt-cache:2"]
    log = Log()
    again = builder.builder.build(tmp_path, tags=["bt-cache:1"], progress=log,
                                  labels={"org.test": "yes"})
    assert again.id == first.id
    assert log.text.count(" ---> Using cache\n") == 4  # three steps and the labels
    (tmp_path / "a.txt").write_text("two")
    log = Log()
    edited = builder.builder.build(tmp_path, progress=log)
    assert edited.id != first.id
    assert log.text.count(" ---> Using cache\n") == 1  # only the RUN before the COPY
    assert run_in(builder, edited.id, ["cat", "/copy"]) == (0, "two")
    os.chmod(tmp_path / "a.txt", 0o600)  # metadata counts too
    log = Log()
    builder.builder.build(tmp_path, progress=log)
    assert log.text.count(" ---> Using cache\n") == 1
    log = Log()
    builder.builder.build(tmp_path, progress=log, no_cache=True)
    assert "Using cache" not in log.text
    log = Log()
    builder.builder.build(tmp_path, progress=log, build_args={"UNUSED": "1"})
    assert "[Warning] One or more build-args [UNUSED] were not consumed\n" in log.text


def test_dockerignore_exclusions(builder: Engine, tmp_path: Path) -> None:
    write_tree(tmp_path, {
        ".dockerignore": "# secrets stay home\n*.key\nlogs\n**/*.tmp\n!keep.tmp\n",
        "Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
        "app.py": "print()", "server.key": "k", "logs/x.log": "l", "deep/er/a.tmp": "t",
        "keep.tmp": "kept", "deep/b.txt": "b",
    })
    img = builder.builder.build(tmp_path)
    layer = img.layers[-1].path / "ctx"
    found = sorted(str(p.relative_to(layer)) for p in layer.rglob("*") if p.is_file())
    assert found == [".dockerignore", "Dockerfile", "app.py", "deep/b.txt", "keep.tmp"]
    write_tree(tmp_path, {"Dockerfile": "FROM busybox\nCOPY server.key /\n"})
    with pytest.raises(BuildError, match="excluded by"):
        builder.builder.build(tmp_path)


def test_multi_stage_with_target_and_copy_from(builder: Engine, tmp_path: Path) -> None:
    write_tree(tmp_path, {"Dockerfile": """\
ARG BASE=busybox
FROM ${BASE} AS builder
RUN mkdir -p /out && echo compiled > /out/app && chmod 755 /out/app
FROM builder AS tester
RUN test -f /out/app
FROM ${BASE}
COPY --from=builder /out/app /usr/local/bin/app
COPY --from=0 --chmod=600 /out/ /copied/
COPY --from=builder /out/a?p* /glob/
CMD ["cat", "/usr/local/bin/app"]
"""})
    log = Log()
    img = builder.builder.build(tmp_path, tags=["bt-multi:1"], progress=log)
    assert "Step 9/9" in log.text
    assert run_in(builder, img.id, [])[1] == "compiled\n"
    assert run_in(builder, img.id, ["stat", "-c", "%a", "/copied/app"])[1] == "600\n"
    assert run_in(builder, img.id, ["cat", "/glob/app"])[1] == "compiled\n"
    # the final image carries busybox's layers plus its own, not the builder's RUN layer
    assert len(img.layers) == len(builder.images.resolve("busybox").layers) + 3
    target = builder.builder.build(tmp_path, target="builder")
    assert run_in(builder, target.id, ["cat", "/out/app"])[1] == "compiled\n"
    with pytest.raises(BuildError, match="failed to reach build target nope"):
        builder.builder.build(tmp_path, target="nope")


def test_onbuild_triggers_run_in_the_child(builder: Engine, tmp_path: Path) -> None:
    parent_dir = write_tree(tmp_path / "parent", {"Dockerfile": """\
FROM busybox
ONBUILD RUN echo triggered > /trigger
ONBUILD COPY marker /marker
"""})
    parent = builder.builder.build(parent_dir, tags=["bt-onbuild-parent:1"])
    assert len(parent.runtime_config["OnBuild"]) == 2
    assert not list(parent.layers[-1].path.glob("trigger"))
    child_dir = write_tree(tmp_path / "child", {"marker": "m",
                                                "Dockerfile": "FROM bt-onbuild-parent:1\n"})
    log = Log()
    child = builder.builder.build(child_dir, progress=log)
    assert "# Executing 2 build triggers\n" in log.text
    assert run_in(builder, child.id, ["cat", "/trigger", "/marker"])[1] == "triggered\nm"
    assert not child.runtime_config.get("OnBuild")


def test_failing_run_reports_and_leaves_nothing(builder: Engine, tmp_path: Path) -> None:
    write_tree(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo before\nRUN false\n"})
    log = Log()
    with pytest.raises(StepFailed) as err:
        builder.builder.build(tmp_path, tags=["bt-fail:1"], progress=log)
    assert str(err.value) == "The command '/bin/sh -c false' returned a non-zero code: 1"
    assert err.value.exit_code == 1 and err.value.step == "Step 3/3"
    assert "Step 3/3 : RUN false\n" in log.text
    assert log.lines[-1]["errorDetail"] == {"message": str(err.value), "code": 1}
    assert _mounts_under(builder.root) == []
    assert not any("bt-fail:1" in i.repo_tags for i in builder.images.list())
    write_tree(tmp_path, {"Dockerfile": 'FROM busybox\nSHELL ["/bin/sh", "-ec"]\n'
                                        "RUN exit 7\n"})
    with pytest.raises(StepFailed, match=r"'/bin/sh -ec exit 7' returned a non-zero code: 7"):
        builder.builder.build(tmp_path)


def test_tar_context_heredocs_add_archive_and_chown(builder: Engine, tmp_path: Path) -> None:
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w") as tar:
        info = tarfile.TarInfo("pkg/data.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"data\n"))
    files = {
        "Dockerfile": b"""\
FROM busybox
ADD pkg.tar.gz /opt/
COPY --chown=1000:1001 --chmod=640 plain.txt /plain.txt
COPY <<EOF /etc/motd
welcome $HOSTNAME_X
EOF
RUN <<EOF
set -e
echo from-heredoc > /heredoc
EOF
RUN <<EOF
#!/bin/sh
echo shebang > /shebang
EOF
RUN cat <<A > /fed
fed-by-heredoc
A
""",
        "pkg.tar.gz": gzip.compress(inner.getvalue()),
        "plain.txt": b"plain",
    }
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    stream.seek(0)
    img = builder.builder.build(stream, tags=["bt-tar:1"])
    code, out = run_in(builder, img.id, ["sh", "-c", "cat /opt/pkg/data.txt /etc/motd /heredoc"
                                                     " /shebang /fed;"
                                                     " stat -c '%u:%g %a' /plain.txt"])
    assert code == 0
    assert out == ("data\nwelcome \nfrom-heredoc\nshebang\nfed-by-heredoc\n"
                   "1000:1001 640\n")
    assert not list((builder.root / "build" / "tmp").iterdir())  # the unpacked context is gone


def test_bad_dockerfile_is_a_clear_error(builder: Engine, tmp_path: Path) -> None:
    write_tree(tmp_path, {"Dockerfile": "FROM busybox\nENV ONLYKEY\n"})
    with pytest.raises(BuildError, match=r"Dockerfile:2 \(ENV\)"):
        builder.builder.build(tmp_path)
    with pytest.raises(BuildError, match="Cannot locate specified Dockerfile"):
        builder.builder.build(tmp_path, dockerfile="Nope")


def test_run_mounts_and_network(builder: Engine, tmp_path: Path) -> None:
    write_tree(tmp_path, {"src/input.txt": "from-context\n", "Dockerfile": """\
FROM busybox
RUN --mount=type=cache,target=/var/cache/estiba-test,id=bt-cache \\
    date +%s%N >> /var/cache/estiba-test/log && wc -l < /var/cache/estiba-test/log > /runs
RUN --mount=type=bind,source=src,target=/mnt/src cat /mnt/src/input.txt > /copied
RUN --mount=type=bind,source=src,target=/mnt/rw,rw touch /mnt/rw/new && test -f /mnt/rw/new
RUN --mount=type=tmpfs,target=/scratch grep -q '/scratch tmpfs' /proc/mounts
RUN ls /sys/class/net > /nets
RUN --network=host ls /sys/class/net > /hostnets
"""})
    img = builder.builder.build(tmp_path)
    assert run_in(builder, img.id, ["cat", "/copied", "/nets"])[1] == "from-context\nlo\n"
    assert run_in(builder, img.id, ["sh", "-c", "wc -l < /hostnets"])[1].strip() != "1"
    assert not (tmp_path / "src" / "new").exists()  # a rw bind never writes the context
    # mount points made for the step are not part of its layer
    for layer in img.layers:
        assert not (layer.path / "mnt").exists() and not (layer.path / "scratch").exists()
        assert not (layer.path / "var" / "cache" / "estiba-test").exists()
    again = builder.builder.build(tmp_path, no_cache=True)
    assert run_in(builder, again.id, ["cat", "/runs"])[1].strip() == "2"  # the cache persisted
    write_tree(tmp_path, {"Dockerfile": "FROM busybox\nRUN --mount=type=secret,id=x true\n"})
    with pytest.raises(BuildError, match="type=secret"):
        builder.builder.build(tmp_path)


def test_copy_never_follows_image_symlinks_on_the_host(builder: Engine, tmp_path: Path) -> None:
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    tree = tmp_path / "ctx"
    write_tree(tree, {"tree/lib/x.txt": "x", "one.txt": "1", "Dockerfile": f"""\
FROM busybox
RUN mkdir -p /app && ln -s {host_dir} /app/lib && ln -s {host_dir} /app/lib2
COPY tree/ /app/
COPY one.txt /app/lib2/sub/one.txt
"""})
    img = builder.builder.build(tree)
    assert list(host_dir.iterdir()) == []  # nothing written on the host
    assert run_in(builder, img.id, ["cat", "/app/lib/x.txt", f"{host_dir}/sub/one.txt"])[1] \
        == "x1"
