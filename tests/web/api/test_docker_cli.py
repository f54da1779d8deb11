"""The real docker CLI (client only, no Docker daemon anywhere) against estiba's API.

Interactive commands (``run -it``, ``exec -it``) run under a pseudo-terminal
made with the ``pty`` module, as a person at a terminal would use them.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import struct
import subprocess
import tarfile
import termios
import time
import uuid

import docker
import pytest

from tests.fixtures.services import serve_directory


class Terminal:
    """A command on a pty: send keys, wait for text, get its exit code.

    Like a terminal emulator, it answers a program's cursor-position query
    (``ESC [6n``, which busybox's shell sends before its prompt once it knows the
    terminal's size) with a position; a program would otherwise wait for it.
    """

    def __init__(self, argv: list[str], env: dict) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.execvpe(argv[0], argv, env)
        # A terminal of 24 rows and 100 columns, which the CLI reports with a resize.
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        self.out = b""

    def expect(self, text: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen; the terminal shows {self.out[-500:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"{text!r} not seen before EOF: {self.out[-500:]!r}")
                self.out += data
                for _query in range(data.count(b"\x1b[6n")):
                    self.send(b"\x1b[1;1R")
        return self.out

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    self.out += os.read(self.fd, 4096)
                except OSError:
                    pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"the command did not end; the terminal shows {self.out[-500:]!r}")


def test_version_info_ps_images(docker_cli):
    out = docker_cli("version", "--format", "{{json .}}").stdout
    data = json.loads(out)
    assert data["Server"]["ApiVersion"] == "1.41"
    assert data["Client"]["ApiVersion"] == "1.41"  # negotiated down through /_ping
    info = docker_cli("info", "--format", "{{.OSType}} {{.NCPU}}").stdout.split()
    assert info[0] == "linux" and int(info[1]) >= 1
    assert "CONTAINER ID" in docker_cli("ps").stdout
    images = docker_cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "busybox:latest" in images


def test_run_attached_detached_logs_stop_rm(docker_cli, made):
    name = made.uniq()
    proc = docker_cli("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
                      check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    cid = docker_cli("run", "-d", "--name", name, "busybox", "sh", "-c",
                     "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
                     ).stdout.strip()
    assert len(cid) == 64
    assert name in docker_cli("ps", "--format", "{{.Names}}").stdout.split()
    follow = subprocess.Popen(["docker", "logs", "-f", name], env=docker_cli.env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout.readline() == "tick 0\n"
        assert follow.stdout.readline() == "tick 1\n"
    finally:
        follow.kill()
        follow.wait()
    docker_cli("stop", "-t", "1", name)
    state = json.loads(docker_cli("inspect", name).stdout)[0]["State"]
    assert state["Status"] == "exited" and not state["Running"]
    docker_cli("rm", name)
    proc = docker_cli("inspect", name, check=False)
    assert proc.returncode == 1 and "No such" in proc.stderr


def test_run_with_stdin_piped(docker_cli):
    proc = docker_cli("run", "-i", "--rm", "busybox", "sh", "-c", "tr a-z A-Z",
                      input="piped through estiba\n")
    assert proc.stdout == "PIPED THROUGH ESTIBA\n"


def test_run_it_under_a_terminal(docker_cli, made):
    name = made.uniq()
    term = Terminal(["docker", "run", "-it", "--name", name, "busybox", "sh"], docker_cli.env)
    term.expect(b"# ")
    term.send(b"echo answer-$((6*7))\r")
    term.expect(b"answer-42")
    term.send(b"stty size\r")
    term.expect(b"24 100")
    term.send(b"exit 5\r")
    assert term.wait() == 5
    assert json.loads(docker_cli("inspect", name).stdout)[0]["State"]["ExitCode"] == 5


def test_exec_plain_and_under_a_terminal(docker_cli, made):
    name = made.uniq()
    docker_cli("run", "-d", "--name", name, "busybox", "sleep", "60")
    assert docker_cli("exec", name, "cat", "/etc/hostname").stdout.strip() == \
        json.loads(docker_cli("inspect", name).stdout)[0]["Config"]["Hostname"]
    proc = docker_cli("exec", name, "sh", "-c", "exit 9", check=False)
    assert proc.returncode == 9
    term = Terminal(["docker", "exec", "-it", name, "sh"], docker_cli.env)
    term.expect(b"# ")
    term.send(b"echo inside-$((1+1))\r")
    term.expect(b"inside-2")
    term.send(b"exit\r")
    assert term.wait() == 0
    docker_cli("rm", "-f", name)


def test_system_df_ps_size_and_errors(docker_cli, made):
    name = made.uniq()
    docker_cli("run", "--name", name, "busybox", "sh", "-c", "head -c 20000 /dev/zero > /w")
    rows = {line.split()[0]: line.split() for line in
            docker_cli("system", "df").stdout.splitlines()[1:]}
    assert int(rows["Images"][2]) >= 1  # ACTIVE: busybox, which the container uses
    assert int(rows["Containers"][1]) >= 1
    sized = docker_cli("ps", "-a", "-s", "--filter", f"name={name}", "--format",
                       "{{.Size}}").stdout.strip()
    assert sized.startswith(("20kB", "24kB", "20.", "21.", "22.", "23.", "24.")), sized
    proc = docker_cli("stop", "no-such-container-at-all", check=False)
    assert proc.returncode != 0 and "no-such-container-at-all" in proc.stderr


@pytest.mark.parametrize("cmd", [["top"], ["stats", "--no-stream"], ["diff"], ["port"]])
def test_container_readers(docker_cli, made, cmd):
    name = made.uniq()
    docker_cli("run", "-d", "--name", name, "busybox", "sh", "-c", "touch /x; sleep 60")
    time.sleep(0.3)
    proc = docker_cli(*cmd, name)
    if cmd == ["top"]:
        assert "sleep" in proc.stdout
    if cmd == ["diff"]:
        assert "A /x" in proc.stdout
    docker_cli("rm", "-f", name)


def test_push_pull_build(docker_cli, made, registry_server, tmp_path):
    repo = f"{registry_server.host}/estiba-cli/{made.uniq('i')}"
    made.images += [f"{repo}:v1", f"{repo}:built"]
    docker_cli("tag", "busybox", f"{repo}:v1")
    out = docker_cli("push", f"{repo}:v1").stdout
    assert out.count("v1: digest: sha256:") == 1, out  # Docker's one line, the manifest's
    docker_cli("rmi", f"{repo}:v1")
    out = docker_cli("pull", f"{repo}:v1").stdout
    assert out.count("Digest: sha256:") == 1, out
    assert out.count(f"Status: Downloaded newer image for {repo}:v1") == 1, out
    assert f"{repo}:v1" in docker_cli("images", "--format",
                                      "{{.Repository}}:{{.Tag}}").stdout.split()
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo built > /b\nCMD cat /b\n")
    build = docker_cli("build", "-t", f"{repo}:built", str(tmp_path))
    assert build.stdout.count(f"Successfully tagged {repo}:built") == 1, build.stdout
    assert build.stdout.count("Successfully built ") == 1, build.stdout
    assert docker_cli("run", "--rm", f"{repo}:built").stdout == "built\n"
    history = docker_cli("history", f"{repo}:built").stdout
    assert "RUN" in history or "echo built" in history
    bad = docker_cli("pull", f"{registry_server.host}/estiba-cli/never:x", check=False)
    assert bad.returncode != 0 and "never" in bad.stderr


def rootfs_tarball(path, hello: str) -> None:
    """A minimal root: the host's static busybox as /bin/busybox and /bin/sh, and a file."""
    with tarfile.open(path, "w") as tar:
        tar.add("/bin/busybox", "bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
        data = hello.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def test_import_a_rootfs_with_changes_and_run_it(docker_cli, made, tmp_path):
    name = f"{made.uniq('i')}:imported"
    rootfs_tarball(tmp_path / "root.tar", "imported hello\n")
    out = docker_cli("import", "--change", 'CMD ["/bin/sh", "-c", "cat /hello.txt"]',
                     "--change", "ENV GREETING=hola", "-m", "from a tarball",
                     str(tmp_path / "root.tar"), name).stdout
    assert out.strip().startswith("sha256:")
    assert docker_cli("run", "--rm", name).stdout == "imported hello\n"
    assert docker_cli("run", "--rm", name, "sh", "-c", "echo $GREETING").stdout == "hola\n"
    history = docker_cli("history", "--no-trunc", name).stdout
    assert "from a tarball" in history


def test_commit_with_changes_and_the_anonymous_volume_of_a_create(docker_cli, made):
    """``docker commit --change`` sets the image's config (it used to be ignored), and a
    container made from an image with a ``VOLUME`` has its volume from ``docker create``."""
    source, image = made.uniq(), f"{made.uniq('i')}:committed"
    docker_cli("create", "--name", source, "busybox", "true")
    docker_cli("commit", "--change", "ENV GREETING=hola", "--change", "VOLUME /data",
               source, image)
    config = json.loads(docker_cli("image", "inspect", "--format", "{{json .Config}}",
                                   image).stdout)
    assert "GREETING=hola" in config["Env"] and config["Volumes"] == {"/data": {}}
    before = set(docker_cli("volume", "ls", "-q").stdout.split())
    user = made.uniq()
    docker_cli("create", "--name", user, image, "sh", "-c", "echo $GREETING")
    (volume,) = set(docker_cli("volume", "ls", "-q").stdout.split()) - before
    assert len(volume) == 64  # anonymous
    refused = docker_cli("volume", "rm", volume, check=False)
    assert refused.returncode != 0 and "in use" in refused.stderr
    assert docker_cli("start", "-a", user).stdout == "hola\n"
    docker_cli("rm", "-v", user)
    assert volume not in docker_cli("volume", "ls", "-q").stdout.split()


def test_import_from_a_url_downloads_it_with_progress(docker_cli, dclient, made, tmp_path):
    """``docker import URL``: the server fetches it (loopback here), as Docker's does."""
    name = f"{made.uniq('i')}:from-url"
    rootfs_tarball(tmp_path / "root.tar", "fetched hello\n")
    with serve_directory(tmp_path) as base:
        out = docker_cli("import", "--change", 'CMD ["/bin/sh", "-c", "cat /hello.txt"]',
                         f"{base}/root.tar", name).stdout
        assert out.strip().splitlines()[-1].startswith("sha256:"), out
        missing = docker_cli("import", f"{base}/no-such.tar", check=False)
        assert missing.returncode != 0 and "answered HTTP 404" in missing.stderr
    assert docker_cli("run", "--rm", name).stdout == "fetched hello\n"
    for bad in ("ftp://127.0.0.1/x.tar", "file:///etc/passwd"):  # the CLI takes these for files
        with pytest.raises(docker.errors.APIError, match="http:// or https://"):
            dclient.api.import_image_from_url(bad, repository=made.uniq("i"))


def test_import_refuses_a_hostile_tarball(docker_cli, made, tmp_path):
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("../../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    evil = docker_cli("import", str(tmp_path / "evil.tar"), f"{made.uniq('i')}:evil",
                      check=False)
    assert evil.returncode != 0 and "escaped" in evil.stderr, evil.stderr


def test_image_prune_by_label_and_until(docker_cli, made, tmp_path):
    mark = uuid.uuid4().hex[:8]
    doomed, kept = f"{made.uniq('i')}:doomed", f"{made.uniq('i')}:kept"
    for name, purpose in ((doomed, "doomed"), (kept, "kept")):
        (tmp_path / "Dockerfile").write_text(
            f"FROM busybox\nLABEL run={mark} purpose={purpose}\nRUN echo {purpose} > /p\n")
        docker_cli("build", "-q", "-t", name, str(tmp_path))
    out = docker_cli("image", "prune", "-a", "-f", "--filter", "label=purpose=doomed",
                     "--filter", f"label=run={mark}").stdout
    assert "deleted" in out.lower() or doomed in out, out
    images = docker_cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert doomed not in images and kept in images and "busybox:latest" in images
    # until: only images created before the cut-off; kept was made just now
    docker_cli("image", "prune", "-a", "-f", "--filter", "until=1h",
               "--filter", f"label=run={mark}")
    assert kept in docker_cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    docker_cli("image", "prune", "-a", "-f", "--filter", f"until={int(time.time()) + 60}",
               "--filter", f"label=run={mark}")
    assert kept not in docker_cli("images", "--format",
                                  "{{.Repository}}:{{.Tag}}").stdout.split()
    bad = docker_cli("image", "prune", "-f", "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "colour" in bad.stderr


def test_cp_in_and_out(docker_cli, made, tmp_path):
    name = made.uniq()
    docker_cli("run", "-d", "--name", name, "busybox", "sleep", "60")
    (tmp_path / "note.txt").write_text("copied with docker cp\n")
    docker_cli("cp", str(tmp_path / "note.txt"), f"{name}:/tmp/")
    assert docker_cli("exec", name, "cat", "/tmp/note.txt").stdout == "copied with docker cp\n"
    docker_cli("exec", name, "sh", "-c", "mkdir -p /srv/d && echo deep > /srv/d/f")
    docker_cli("cp", f"{name}:/srv/d", str(tmp_path / "out"))
    assert (tmp_path / "out" / "f").read_text() == "deep\n"
    docker_cli("cp", f"{name}:/tmp/note.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "copied with docker cp\n"
    missing = docker_cli("cp", f"{name}:/no/such/file", str(tmp_path), check=False)
    assert missing.returncode != 0 and "/no/such/file" in missing.stderr, missing.stderr


def test_pull_for_another_platform(docker_cli, made, registry_server):
    from tests.engine.registry.test_docker_formats import _docker_image, push_manifest_list

    base, repo = f"http://{registry_server.host}", f"estiba-cli/{made.uniq('i')}"
    push_manifest_list(base, repo, [_docker_image(base, repo, "linux", arch)[0]
                                    for arch in ("amd64", "arm64")])
    target = f"{registry_server.host}/{repo}:v1"
    made.images.append(target)
    docker_cli("pull", "--platform", "linux/arm64", target)
    arch = docker_cli("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", target)
    assert arch.stdout.strip() == "linux/arm64"


def test_volume_and_network_commands(docker_cli, made):
    vol, net, c = made.uniq("v"), made.uniq("n"), made.uniq()
    docker_cli("volume", "create", vol)
    assert vol in docker_cli("volume", "ls", "-q").stdout.split()
    assert json.loads(docker_cli("volume", "inspect", vol).stdout)[0]["Name"] == vol
    docker_cli("run", "--rm", "-v", f"{vol}:/v", "busybox", "sh", "-c", "echo hi > /v/f")
    assert docker_cli("run", "--rm", "-v", f"{vol}:/v:ro", "busybox", "cat", "/v/f").stdout \
        == "hi\n"
    docker_cli("network", "create", net)
    assert net in docker_cli("network", "ls", "--format", "{{.Name}}").stdout.split()
    docker_cli("run", "-d", "--name", c, "--network", net, "busybox", "sleep", "60")
    inspect = json.loads(docker_cli("network", "inspect", net).stdout)[0]
    assert inspect["Name"] == net and inspect["Driver"] == "bridge"
    docker_cli("network", "disconnect", net, c)
    docker_cli("network", "connect", net, c)
    docker_cli("rm", "-f", c)
    docker_cli("network", "rm", net)
    docker_cli("volume", "rm", vol)
    assert vol not in docker_cli("volume", "ls", "-q").stdout.split()


def test_capabilities_read_only_root_and_settings_estiba_lacks(docker_cli, made):
    out = docker_cli("run", "--rm", "--cap-drop", "ALL", "--cap-add", "chown", "busybox", "sh",
                     "-c", "grep CapEff /proc/self/status; mknod /n c 1 3 || echo no-mknod")
    assert out.stdout.split()[:2] == ["CapEff:", "0000000000000001"]  # CAP_CHOWN alone
    assert "no-mknod" in out.stdout
    out = docker_cli("run", "--rm", "--privileged", "busybox", "sh", "-c",
                     "grep Seccomp: /proc/self/status")
    assert out.stdout.split() == ["Seccomp:", "0"]
    out = docker_cli("run", "--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c",
                     "touch /scratch/ok && echo tmpfs-ok; touch /nope", check=False)
    assert out.returncode == 1 and "tmpfs-ok" in out.stdout
    assert "touch: /nope: Read-only file system" in out.stderr
    name = made.uniq()
    docker_cli("create", "--name", name, "--read-only", "--cap-add", "NET_ADMIN", "busybox")
    host_config = json.loads(docker_cli("inspect", name).stdout)[0]["HostConfig"]
    assert host_config["ReadonlyRootfs"] is True and host_config["CapAdd"] == ["CAP_NET_ADMIN"]
    # a setting estiba does not implement is refused, never dropped without a word
    for flag in (["--dns", "10.0.0.1"], ["--security-opt", "no-new-privileges"],
                 ["--log-driver", "none"]):
        bad = docker_cli("run", "--rm", *flag, "busybox", "true", check=False)
        assert bad.returncode != 0 and "is not supported by estiba" in bad.stderr, flag
    bad = docker_cli("run", "--rm", "--cap-add", "FLY", "busybox", "true", check=False)
    assert bad.returncode != 0 and "unknown capability 'CAP_FLY' in --cap-add" in bad.stderr
