"""``estiba``, the CLI, as a person or a script uses it: over the socket and over TCP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.web.api.test_docker_cli import Terminal


def test_ps_run_logs_stop_rm(estiba, made):
    name = made.uniq()
    proc = estiba("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
                  check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    cid = estiba("run", "-d", "--name", name, "busybox", "sh", "-c",
                 "echo started; sleep 60").stdout.strip()
    assert len(cid) == 64
    table = estiba("ps").stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    assert all(len(line) <= 100 for line in table)
    assert "\x1b[" not in estiba("ps").stdout  # no colour off a terminal
    rows = json.loads(estiba("ps", "--format", "json").stdout)
    assert cid in [r["Id"] for r in rows]
    assert estiba("logs", name).stdout == "started\n"
    assert estiba("stop", "-t", "1", name).stdout.strip() == name
    assert estiba("rm", name).stdout.strip() == name
    assert cid not in [r["Id"] for r in json.loads(estiba("ps", "-a", "--format",
                                                          "json").stdout)]


def test_errors_are_one_line_with_a_non_zero_exit(estiba):
    proc = estiba("stop", "no-such-box", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "estiba: No such container: no-such-box"
    proc = estiba("ps", host="unix:///nonexistent/estiba.sock", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "cannot reach estiba" in proc.stderr


def test_exec_and_run_under_a_terminal(estiba, made):
    name = made.uniq()
    estiba("run", "-d", "--name", name, "busybox", "sleep", "60")
    assert estiba("exec", name, "echo", "plain").stdout == "plain\n"
    assert estiba("exec", name, "sh", "-c", "exit 6", check=False).returncode == 6
    env = dict(os.environ, **estiba.env)
    term = Terminal([sys.executable, "-m", "estiba_cli.main", "exec", "-it", name, "sh"], env)
    term.expect(b"# ")
    term.send(b"stty size; echo in-$((2+3))\r")
    term.expect(b"in-5")
    assert b"24 100" in term.out
    term.send(b"exit 2\r")
    assert term.wait() == 2
    term = Terminal([sys.executable, "-m", "estiba_cli.main", "run", "-it", "--rm", "busybox",
                     "sh"], env)
    term.expect(b"# ")
    term.send(b"echo run-$((3*3)); exit\r")
    term.expect(b"run-9")
    assert term.wait() == 0


def test_pull_push_build_images(estiba, made, registry_server, tmp_path, dclient):
    repo = f"{registry_server.host}/estiba-cli/{made.uniq('i')}"
    made.images += [f"{repo}:v1", f"{repo}:b"]
    dclient.images.get("busybox").tag(repo, "v1")
    assert "v1: digest: sha256:" in estiba("push", f"{repo}:v1").stdout
    dclient.images.remove(f"{repo}:v1")
    estiba("pull", f"{repo}:v1")
    images = estiba("images").stdout
    assert repo in images and "v1" in images
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM busybox\nCOPY a.txt /a.txt\n"
                                                 "CMD [\"cat\", \"/a.txt\"]\n")
    (tmp_path / "ctx" / "a.txt").write_text("from the context\n")
    (tmp_path / "ctx" / "secret.key").write_text("never sent\n")
    (tmp_path / "ctx" / ".dockerignore").write_text("*.key\n")
    out = estiba("build", "-t", f"{repo}:b", str(tmp_path / "ctx")).stdout
    assert "Successfully tagged" in out
    assert estiba("run", "--rm", f"{repo}:b").stdout == "from the context\n"
    assert estiba("run", "--rm", "--entrypoint", "ls", f"{repo}:b", "/secret.key",
                  check=False).returncode != 0


def test_volumes_networks_system_version(estiba, made):
    vol, net = made.uniq("v"), made.uniq("n")
    assert estiba("volume", "create", vol).stdout.strip() == vol
    assert vol in estiba("volume", "ls").stdout
    assert json.loads(estiba("volume", "inspect", vol).stdout)[0]["Name"] == vol
    estiba("volume", "rm", vol)
    estiba("network", "create", net)
    assert net in estiba("network", "ls").stdout
    estiba("network", "rm", net)
    assert "Images" in estiba("system", "df").stdout
    assert json.loads(estiba("version", "--format", "json").stdout)["Server"]["ApiVersion"] \
        == "1.41"


def test_completion_script(estiba):
    script = estiba("completion", "bash").stdout
    assert "complete -o default -F _estiba estiba" in script
    proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ps images run exec logs stop rm pull push build" in script


def test_pull_push_and_build_draw_progress_bars_on_a_terminal(estiba, made, registry_server,
                                                               tmp_path, dclient):
    repo = f"{registry_server.host}/estiba-cli/{made.uniq('i')}"
    made.images.append(f"{repo}:b")
    env = dict(os.environ, **estiba.env)

    def on_a_terminal(*args: str) -> str:
        term = Terminal([sys.executable, "-m", "estiba_cli.main", *args], env)
        code = term.wait(timeout=90)
        assert code == 0, term.out[-500:]
        return term.out.decode()

    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(
        "FROM busybox\nRUN head -c 3000000 /dev/urandom > /noise && echo built-here\n")
    built = on_a_terminal("build", "-t", f"{repo}:b", str(tmp_path / "ctx"))
    assert "Step 2/2 : RUN head" in built and "built-here" in built
    assert "Successfully tagged" in built
    # A bar with its figures ("[=====>     ] 1.2MB/3MB") on the layer's line, redrawn in
    # place (cursor up, erase line) rather than printed again.
    bar = re.compile(r"\x1b\[2K[0-9a-f]{12}: (Pushing|Downloading) +\[=*>? *\] "
                     r"[\d.]+[kMG]?B/[\d.]+[kMG]?B")
    pushed = on_a_terminal("push", f"{repo}:b")
    assert bar.search(pushed) and "Pushed" in pushed and "\x1b[1A" in pushed, pushed[-800:]
    dclient.images.remove(f"{repo}:b")
    pulled = on_a_terminal("pull", f"{repo}:b")
    assert bar.search(pulled) and "Pull complete" in pulled, pulled[-800:]
    assert pulled.count("Status: Downloaded newer image") == 1
    again = on_a_terminal("pull", f"{repo}:b")
    assert "Status: Image is up to date" in again and "Downloading" not in again


def test_system_df_says_what_is_used_and_what_could_go(estiba, made):
    vol, name = made.uniq("v"), made.uniq()
    estiba("volume", "create", vol)
    estiba("run", "--name", name, "-v", f"{vol}:/data", "busybox", "sh", "-c",
           "head -c 20000 /dev/zero > /data/f; head -c 20000 /dev/zero > /w")
    lines = estiba("system", "df").stdout.splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    rows = {line.rsplit(None, 4)[0].strip(): line.rsplit(None, 4)[1:] for line in lines[1:]}
    assert int(rows["Images"][1]) >= 1  # busybox, which the container uses
    total, _running, size, reclaimable = rows["Containers"]
    assert int(total) >= 1 and size.endswith("kB") and reclaimable.endswith("kB")
    assert int(rows["Local Volumes"][1]) >= 1 and rows["Local Volumes"][2] != "0B"
    estiba("rm", name)
