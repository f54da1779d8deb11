"""``estiba``: the command line of estiba, a client of its Docker-compatible API.

Over the root UNIX socket (/run/estiba/estiba.sock) or TCP with a token
(``estiba login``). Errors are one line on stderr with a non-zero exit code;
``--format json`` prints what the API answered, for scripts.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import sys
import tarfile
import threading
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from estiba_cli import output as out
from estiba_cli.client import DEFAULT_HOST, ApiError, Client, load_config, save_config


class UsageError(Exception):
    pass


# --- containers ----------------------------------------------------------------------------

def cmd_ps(c: Client, a: argparse.Namespace) -> int:
    items = c.get("/containers/json", all=int(a.all))
    if a.format == "json":
        out.print_json(items)
        return 0
    if a.quiet:
        print("\n".join(i["Id"][:12] for i in items))
        return 0
    rows = []
    for i in items:
        state = i.get("State", "")
        status = out.colour(i.get("Status", ""), "32" if state == "running" else "2")
        ports = ", ".join(f"{p.get('IP', '')}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}"
                          if p.get("PublicPort") else f"{p['PrivatePort']}/{p['Type']}"
                          for p in i.get("Ports") or [])
        rows.append([i["Id"][:12], i.get("Image", ""), json.dumps(i.get("Command", "")),
                     out.ago(i.get("Created", 0)), status, ports,
                     ",".join(n.lstrip("/") for n in i.get("Names") or [])])
    print(out.table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
                    rows, shrink=("COMMAND", "PORTS", "IMAGE")))
    return 0


def _parse_env(values: list[str]) -> list[str]:
    env = []
    for v in values:
        if "=" not in v:
            if v in os.environ:
                v = f"{v}={os.environ[v]}"
            else:
                continue
        env.append(v)
    return env


def _ports(values: list[str]) -> tuple[dict, dict]:
    bindings: dict[str, list] = {}
    exposed: dict[str, dict] = {}
    for v in values:
        parts = v.split(":")
        container = parts[-1] if "/" in parts[-1] else parts[-1] + "/tcp"
        host_ip = parts[0] if len(parts) == 3 else ""
        host_port = parts[-2] if len(parts) >= 2 else ""
        if not container.split("/")[0].isdigit():
            raise UsageError(f"invalid port mapping {v!r}: use [IP:]HOSTPORT:PORT[/proto]")
        bindings.setdefault(container, []).append({"HostIp": host_ip, "HostPort": host_port})
        exposed[container] = {}
    return bindings, exposed


def _size(text: str) -> int:
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower()
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)
    except (ValueError, IndexError):
        raise UsageError(f"invalid size {text!r}: e.g. 64m, 1g") from None


def cmd_run(c: Client, a: argparse.Namespace) -> int:
    bindings, exposed = _ports(a.publish)
    host_config: dict[str, Any] = {"Binds": a.volume, "PortBindings": bindings,
                                   "AutoRemove": a.rm, "NetworkMode": a.network or "bridge"}
    if a.memory:
        host_config["Memory"] = _size(a.memory)
    if a.cpus:
        host_config["NanoCpus"] = int(float(a.cpus) * 1e9)
    body: dict[str, Any] = {
        "Image": a.image, "Cmd": a.command or None, "Env": _parse_env(a.env),
        "Tty": a.tty, "OpenStdin": a.interactive, "StdinOnce": a.interactive,
        "AttachStdin": a.interactive, "AttachStdout": not a.detach,
        "AttachStderr": not a.detach, "ExposedPorts": exposed, "HostConfig": host_config,
    }
    if a.entrypoint is not None:
        body["Entrypoint"] = [a.entrypoint] if a.entrypoint else []
    if a.workdir:
        body["WorkingDir"] = a.workdir
    try:
        created = c.post("/containers/create", body, params={"name": a.name})
    except ApiError as exc:
        if exc.status != 404 or "image" not in str(exc).lower():
            raise
        print(f"Unable to find image '{a.image}' locally", file=sys.stderr)
        _pull(c, a.image, quiet=False)
        created = c.post("/containers/create", body, params={"name": a.name})
    cid = created["Id"]
    if a.detach:
        c.post(f"/containers/{cid}/start")
        print(cid)
        return 0
    sock, pending = c.hijack(f"/containers/{cid}/attach", params={
        "stream": 1, "stdin": int(a.interactive), "stdout": 1, "stderr": 1})
    code: dict[str, int] = {}

    def waiter() -> None:
        try:
            res = Client(c.host, c.token, timeout=None).post(
                f"/containers/{cid}/wait",
                params={"condition": "removed" if a.rm else "next-exit"})
            code["status"] = res.get("StatusCode", 0)
        except ApiError:
            code["status"] = 125

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    c.post(f"/containers/{cid}/start")
    from estiba_cli.terminal import pump

    pump(sock, pending, tty=a.tty, stdin=a.interactive,
         on_resize=lambda h, w: c.post(f"/containers/{cid}/resize", params={"h": h, "w": w}))
    thread.join()
    return code.get("status", 0)


def cmd_exec(c: Client, a: argparse.Namespace) -> int:
    body = {"Cmd": a.command, "Tty": a.tty, "AttachStdin": a.interactive,
            "AttachStdout": True, "AttachStderr": True, "Env": _parse_env(a.env),
            "User": a.user or "", "WorkingDir": a.workdir or ""}
    exec_id = c.post(f"/containers/{a.container}/exec", body)["Id"]
    sock, pending = c.hijack(f"/exec/{exec_id}/start", {"Detach": False, "Tty": a.tty})
    from estiba_cli.terminal import pump

    pump(sock, pending, tty=a.tty, stdin=a.interactive,
         on_resize=lambda h, w: c.post(f"/exec/{exec_id}/resize", params={"h": h, "w": w}))
    return c.get(f"/exec/{exec_id}/json").get("ExitCode") or 0


def cmd_logs(c: Client, a: argparse.Namespace) -> int:
    info = c.get(f"/containers/{a.container}/json")
    tty = bool(info["Config"].get("Tty"))
    resp = c.request("GET", f"/containers/{a.container}/logs", {
        "stdout": 1, "stderr": 1, "follow": int(a.follow), "timestamps": int(a.timestamps),
        "tail": a.tail})
    try:
        for stream, data in c.raw_stream(resp, tty):
            target = sys.stderr if stream == 2 else sys.stdout
            target.buffer.write(data)
            target.flush()
    except KeyboardInterrupt:
        return 130
    return 0


def _each(c: Client, names: list[str], fn) -> int:
    failed = 0
    for name in names:
        try:
            fn(name)
            print(name)
        except ApiError as exc:
            print(f"estiba: {exc}", file=sys.stderr)
            failed = 1
    return failed


def cmd_stop(c: Client, a: argparse.Namespace) -> int:
    return _each(c, a.containers,
                 lambda n: c.post(f"/containers/{n}/stop", params={"t": a.time}))


def cmd_rm(c: Client, a: argparse.Namespace) -> int:
    return _each(c, a.containers, lambda n: c.delete(f"/containers/{n}", force=int(a.force),
                                                      v=int(a.volumes)))


# --- images --------------------------------------------------------------------------------

def cmd_images(c: Client, a: argparse.Namespace) -> int:
    items = c.get("/images/json", all=int(getattr(a, "all", False)))
    if a.format == "json":
        out.print_json(items)
        return 0
    rows = []
    for i in items:
        for tag in i.get("RepoTags") or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            rows.append([repo, t, i["Id"].split(":")[-1][:12], out.ago(i.get("Created", 0)),
                         out.human_size(i.get("Size", 0))])
    print(out.table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows,
                    shrink=("REPOSITORY",)))
    return 0


def _progress(c: Client, resp, quiet: bool) -> dict:
    bar = out.Progress(sys.stderr if quiet else sys.stdout)
    last: dict = {}
    for msg in c.json_lines(resp):
        if "error" in msg:
            raise ApiError(msg["error"])
        if not quiet:
            bar.feed(msg)
        last = msg if "aux" in msg else last
    return last


def _pull(c: Client, ref: str, quiet: bool) -> None:
    name, tag = ref, None
    last = ref.rsplit("/", 1)[-1]
    if "@" not in ref and ":" in last:
        name, tag = ref.rsplit(":", 1)
    resp = c.request("POST", "/images/create", {"fromImage": name, "tag": tag or "latest"})
    _progress(c, resp, quiet)


def cmd_pull(c: Client, a: argparse.Namespace) -> int:
    _pull(c, a.image, a.quiet)
    return 0


def cmd_push(c: Client, a: argparse.Namespace) -> int:
    name, tag = a.image, None
    if ":" in a.image.rsplit("/", 1)[-1]:
        name, tag = a.image.rsplit(":", 1)
    resp = c.request("POST", f"/images/{name}/push", {"tag": tag})
    last = _progress(c, resp, a.quiet)
    if last and a.quiet:
        print(last["aux"].get("Digest", ""))
    return 0


def _ignored(rel: str, patterns: list[str]) -> bool:
    result = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        if fnmatch(rel, p) or fnmatch(rel, p.rstrip("/") + "/*"):
            result = not neg
    return result


def _context_tar(path: Path, dockerfile: str | None) -> bytes:
    if not path.is_dir():
        raise UsageError(f"build context {path} is not a directory")
    ignore_file = path / ".dockerignore"
    patterns = [line.strip().lstrip("/") for line in ignore_file.read_text().splitlines()
                if line.strip() and not line.startswith("#")] if ignore_file.exists() else []
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for root, dirs, files in os.walk(path):
            for name in sorted(dirs + files):
                full = Path(root) / name
                rel = str(full.relative_to(path))
                if _ignored(rel, patterns) and rel != (dockerfile or "Dockerfile"):
                    if name in dirs:
                        dirs.remove(name)
                    continue
                tar.add(full, rel, recursive=False)
    return buf.getvalue()


def cmd_build(c: Client, a: argparse.Namespace) -> int:
    body = _context_tar(Path(a.path), a.file)
    params: dict[str, Any] = {"t": a.tag or None, "dockerfile": a.file, "q": int(a.quiet),
                              "nocache": int(a.no_cache), "target": a.target}
    if a.build_arg:
        params["buildargs"] = json.dumps(dict(x.split("=", 1) for x in a.build_arg if "=" in x))
    resp = c.request("POST", "/build", params, body,
                     headers={"Content-Type": "application/x-tar"})
    last = _progress(c, resp, a.quiet)
    if a.quiet and last:
        print(last["aux"].get("ID", ""))
    return 0


# --- volumes, networks, system ---------------------------------------------------------------

def cmd_volume(c: Client, a: argparse.Namespace) -> int:
    if a.action == "ls":
        vols = c.get("/volumes").get("Volumes") or []
        if a.format == "json":
            out.print_json(vols)
        else:
            print(out.table(["DRIVER", "VOLUME NAME"], [[v["Driver"], v["Name"]] for v in vols]))
    elif a.action == "create":
        print(c.post("/volumes/create", {"Name": a.names[0] if a.names else ""})["Name"])
    elif a.action == "rm":
        return _each(c, a.names, lambda n: c.delete(f"/volumes/{n}", force=int(a.force)))
    elif a.action == "inspect":
        out.print_json([c.get(f"/volumes/{n}") for n in a.names])
    elif a.action == "prune":
        out.print_json(c.post("/volumes/prune"))
    return 0


def cmd_network(c: Client, a: argparse.Namespace) -> int:
    if a.action == "ls":
        nets = c.get("/networks")
        if a.format == "json":
            out.print_json(nets)
        else:
            print(out.table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                            [[n["Id"][:12], n["Name"], n["Driver"], n.get("Scope", "local")]
                             for n in nets]))
    elif a.action == "create":
        body: dict[str, Any] = {"Name": a.names[0], "Driver": "bridge"}
        if a.subnet:
            body["IPAM"] = {"Config": [{"Subnet": a.subnet}]}
        print(c.post("/networks/create", body)["Id"])
    elif a.action == "rm":
        return _each(c, a.names, lambda n: c.delete(f"/networks/{n}"))
    elif a.action == "inspect":
        out.print_json([c.get(f"/networks/{n}") for n in a.names])
    elif a.action in ("connect", "disconnect"):
        if len(a.names) != 2:
            raise UsageError(f"network {a.action} NETWORK CONTAINER")
        c.post(f"/networks/{a.names[0]}/{a.action}", {"Container": a.names[1]})
    return 0


def cmd_system(c: Client, a: argparse.Namespace) -> int:
    df = c.get("/system/df")
    if a.format == "json":
        out.print_json(df)
        return 0
    images, containers, vols = df.get("Images") or [], df.get("Containers") or [], \
        df.get("Volumes") or []
    print(out.table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                    [_df_images(df, images), _df_containers(containers), _df_volumes(vols)]))
    return 0


def _df_images(df: dict, images: list[dict]) -> list:
    """Docker's row: what the unused images alone hold is reclaimable."""
    active = [i for i in images if (i.get("Containers") or 0) > 0]
    kept = sum(i.get("Size", 0) - max(i.get("SharedSize", 0), 0) for i in active) + \
        max((i.get("SharedSize", 0) for i in active), default=0)
    total = df.get("LayersSize", 0)
    return ["Images", len(images), len(active), out.human_size(total),
            out.human_size(max(total - kept, 0))]


def _df_containers(containers: list[dict]) -> list:
    size = sum(x.get("SizeRw", 0) or 0 for x in containers)
    stopped = sum(x.get("SizeRw", 0) or 0 for x in containers if x.get("State") != "running")
    running = sum(1 for x in containers if x.get("State") == "running")
    return ["Containers", len(containers), running, out.human_size(size),
            out.human_size(stopped)]


def _df_volumes(vols: list[dict]) -> list:
    def usage(v: dict) -> dict:
        return v.get("UsageData") or {}

    size = sum(max(usage(v).get("Size", 0), 0) for v in vols)
    unused = sum(max(usage(v).get("Size", 0), 0) for v in vols if not usage(v).get("RefCount"))
    active = sum(1 for v in vols if usage(v).get("RefCount"))
    return ["Local Volumes", len(vols), active, out.human_size(size), out.human_size(unused)]


def cmd_version(c: Client, a: argparse.Namespace) -> int:
    from importlib.metadata import PackageNotFoundError, version

    try:
        client_version = version("estiba")
    except PackageNotFoundError:
        client_version = "dev"
    server = c.get("/version")
    if a.format == "json":
        out.print_json({"Client": {"Version": client_version}, "Server": server})
        return 0
    print(f"Client: estiba {client_version}\n Host: {c.host}\n"
          f"Server: {server.get('Platform', {}).get('Name', '')} {server.get('Version')}\n"
          f" API version: {server.get('ApiVersion')} (minimum {server.get('MinAPIVersion')})\n"
          f" Kernel: {server.get('KernelVersion')}  OS/Arch: {server.get('Os')}/"
          f"{server.get('Arch')}")
    return 0


def cmd_login(c: Client, a: argparse.Namespace) -> int:
    host = a.host or "tcp://127.0.0.1:2375"
    user = a.username or input("Username: ")
    password = sys.stdin.readline().rstrip("\n") if a.password_stdin else \
        getpass.getpass("Password: ")
    anon = Client(host, token=None)
    answer = anon.post("/estiba/login", {"username": user, "password": password},
                       prefix="")
    cfg = load_config()
    cfg.update(host=host, token=answer["Token"])
    path = save_config(cfg)
    print(f"Login Succeeded (token saved in {path})")
    return 0


def cmd_completion(c: Client | None, a: argparse.Namespace) -> int:
    from estiba_cli.completion import bash_script

    print(bash_script(build_parser()))
    return 0


# --- the parser ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="estiba", description="estiba's command line: containers, "
                                "images, volumes and networks through estiba's API")
    p.add_argument("-H", "--host", help=f"daemon address (default {DEFAULT_HOST}, or "
                   "ESTIBA_HOST, or the host `estiba login` saved)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn, help: str, fmt: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        if fmt:
            sp.add_argument("--format", choices=["table", "json"], default="table")
        return sp

    sp = add("ps", cmd_ps, "list containers", fmt=True)
    sp.add_argument("-a", "--all", action="store_true", help="also stopped ones")
    sp.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    add("images", cmd_images, "list images", fmt=True)
    sp = add("run", cmd_run, "create and start a container")
    sp.add_argument("-d", "--detach", action="store_true")
    sp.add_argument("-i", "--interactive", action="store_true")
    sp.add_argument("-t", "--tty", action="store_true")
    sp.add_argument("--rm", action="store_true", help="remove it when it exits")
    sp.add_argument("--name")
    sp.add_argument("-e", "--env", action="append", default=[])
    sp.add_argument("-v", "--volume", action="append", default=[], help="SRC:DST[:ro]")
    sp.add_argument("-p", "--publish", action="append", default=[],
                    help="[IP:]HOSTPORT:PORT[/proto]")
    sp.add_argument("-m", "--memory")
    sp.add_argument("--cpus")
    sp.add_argument("--network")
    sp.add_argument("-w", "--workdir")
    sp.add_argument("--entrypoint")
    sp.add_argument("image")
    sp.add_argument("command", nargs=argparse.REMAINDER)
    sp = add("exec", cmd_exec, "run a command in a running container")
    sp.add_argument("-i", "--interactive", action="store_true")
    sp.add_argument("-t", "--tty", action="store_true")
    sp.add_argument("-e", "--env", action="append", default=[])
    sp.add_argument("-u", "--user")
    sp.add_argument("-w", "--workdir")
    sp.add_argument("container")
    sp.add_argument("command", nargs=argparse.REMAINDER)
    sp = add("logs", cmd_logs, "show a container's output")
    sp.add_argument("-f", "--follow", action="store_true")
    sp.add_argument("-t", "--timestamps", action="store_true")
    sp.add_argument("-n", "--tail", default="all")
    sp.add_argument("container")
    sp = add("stop", cmd_stop, "stop containers")
    sp.add_argument("-t", "--time", type=int, default=None)
    sp.add_argument("containers", nargs="+")
    sp = add("rm", cmd_rm, "remove containers")
    sp.add_argument("-f", "--force", action="store_true")
    sp.add_argument("-v", "--volumes", action="store_true")
    sp.add_argument("containers", nargs="+")
    sp = add("pull", cmd_pull, "pull an image from a registry")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("image")
    sp = add("push", cmd_push, "push an image to a registry")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("image")
    sp = add("build", cmd_build, "build an image from a Dockerfile")
    sp.add_argument("-t", "--tag", action="append", default=[])
    sp.add_argument("-f", "--file")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("--no-cache", action="store_true")
    sp.add_argument("--target")
    sp.add_argument("--build-arg", action="append", default=[])
    sp.add_argument("path")
    for name, fn, actions in (("volume", cmd_volume, ["ls", "create", "rm", "inspect", "prune"]),
                              ("network", cmd_network, ["ls", "create", "rm", "inspect",
                                                        "connect", "disconnect"])):
        sp = add(name, fn, f"manage {name}s", fmt=True)
        sp.add_argument("action", choices=actions)
        sp.add_argument("names", nargs="*")
        sp.add_argument("-f", "--force", action="store_true")
        if name == "network":
            sp.add_argument("--subnet")
    sp = add("system", cmd_system, "disk usage (system df)", fmt=True)
    sp.add_argument("action", choices=["df"])
    add("version", cmd_version, "client and server versions", fmt=True)
    sp = add("login", cmd_login, "get an API token for TCP access")
    sp.add_argument("-u", "--username")
    sp.add_argument("--password-stdin", action="store_true")
    sp = add("completion", cmd_completion, "print a shell completion script")
    sp.add_argument("shell", choices=["bash"])
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not getattr(a, "fn", None):
        parser.print_help()
        return 2
    try:
        if a.fn is cmd_completion:
            return cmd_completion(None, a)
        client = Client(None if a.fn is cmd_login else a.host)
        if a.fn in (cmd_run, cmd_exec) and not a.command and a.fn is cmd_exec:
            raise UsageError("exec needs a command")
        code = a.fn(client, a)
    except (ApiError, UsageError) as exc:
        print(f"estiba: {exc}", file=sys.stderr)
        return 1 if not isinstance(exc, UsageError) else 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    sys.stdout.flush()
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
