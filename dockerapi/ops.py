"""The engine operations the Docker API needs, as JSON-in/JSON-out functions.

These run where the engine is: on the host's worker (reached through
``estiba.gateway``) or in-process for a server started with ``--local``. Each
takes the ``Engine`` first and returns plain JSON (dicts, lists, strings), so a
Celery task can carry the answer; generator operations (logs, stats, pull,
push, build, events) yield JSON items that the gateway relays through Redis.
Bytes (log lines, terminal output) travel as latin-1 strings: a lossless,
cheap mapping of bytes to text. No Django here, the worker must not need it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.errors import EngineError, InvalidArgument, NotFound

OPS: dict[str, Callable[..., Any]] = {}
STREAMS: dict[str, Callable[..., Iterator[Any]]] = {}


def op(fn: Callable[..., Any]) -> Callable[..., Any]:
    OPS[fn.__name__] = fn
    return fn


def stream(fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    STREAMS[fn.__name__] = fn
    return fn


def _docker(obj: Any, *names: str) -> Any:
    """An engine object as Docker's JSON, whichever method the object offers."""
    for name in (*names, "to_docker_inspect", "to_docker", "to_dict"):
        method = getattr(obj, name, None)
        if method is not None:
            return method()
    if isinstance(obj, dict):
        return obj
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return obj


def b2s(data: bytes) -> str:
    return data.decode("latin-1")


# --- system ------------------------------------------------------------------------------

@op
def system_info(engine) -> dict:
    return engine.info()


@op
def system_df(engine) -> dict:
    return engine.disk_usage()


@op
def events_history(engine, since_nano: int = 0, until_nano: int | None = None) -> list[dict]:
    return [e.to_docker() for e in engine.events.history(since_nano, until_nano)
            if not e.transient]


@stream
def events_follow(engine, offset: int | None = None) -> Iterator[dict]:
    for _, event in engine.events.follow(offset):
        yield event.to_docker()


@op
def events_offset(engine) -> int:
    return engine.events.end_offset()


# --- containers ----------------------------------------------------------------------------

def _spec(engine, spec: dict):
    from engine.runtime.containers import ContainerSpec

    fields = {f.name: f for f in dataclasses.fields(ContainerSpec)}
    kwargs = {k: v for k, v in spec.items() if k in fields}
    mounts = kwargs.get("mounts")
    if mounts is not None:
        from engine.runtime import containers as rc

        mount_cls = getattr(rc, "MountSpec", None)
        if mount_cls is not None:
            names = {f.name for f in dataclasses.fields(mount_cls)}
            kwargs["mounts"] = [mount_cls(**{k: v for k, v in m.items() if k in names})
                                for m in mounts]
    nets = kwargs.get("networks")
    if nets:
        from engine.runtime import containers as rc

        ep_cls = getattr(rc, "EndpointSpec", None)
        if ep_cls is not None:
            names = {f.name for f in dataclasses.fields(ep_cls)}
            kwargs["networks"] = {n: ep_cls(**{k: v for k, v in e.items() if k in names})
                                  for n, e in nets.items()}
    return ContainerSpec(**kwargs)


@op
def container_create(engine, spec: dict) -> dict:
    container = engine.containers.create(_spec(engine, spec))
    return {"Id": container.id, "Warnings": []}


@op
def container_list(engine, all: bool = False, filters: dict | None = None,
                   limit: int = 0, size: bool = False) -> list[dict]:
    items = engine.containers.list(all=all, filters=filters or None, size=size)
    items = sorted(items, key=lambda c: getattr(c, "created", 0) or 0, reverse=True)
    if limit and limit > 0:
        items = items[:limit]
    return [_docker(c, "to_docker_summary") for c in items]


@op
def container_inspect(engine, id: str) -> dict:
    return _docker(engine.containers.get(id))


@op
def container_action(engine, action: str, id: str, **kwargs) -> None:
    if action not in ("start", "stop", "restart", "kill", "pause", "unpause"):
        raise InvalidArgument(f"unknown container action {action!r}")
    getattr(engine.containers, action)(id, **kwargs)


@op
def container_wait(engine, id: str, condition: str = "not-running",
                   timeout: float | None = None) -> int:
    return engine.containers.wait(id, condition=condition, timeout=timeout)


@op
def container_remove(engine, id: str, force: bool = False, volumes: bool = False) -> None:
    engine.containers.remove(id, force=force, volumes=volumes)


@op
def container_rename(engine, id: str, name: str) -> None:
    engine.containers.rename(id, name)


@op
def container_top(engine, id: str, ps_args: str = "") -> dict:
    return engine.containers.top(id, ps_args)


@op
def container_changes(engine, id: str) -> list[dict]:
    return engine.containers.changes(id)


@op
def container_stats(engine, id: str) -> dict:
    return engine.containers.stats(id)


@stream
def container_stats_stream(engine, id: str, interval: float = 1.0) -> Iterator[dict]:
    while True:
        try:
            yield engine.containers.stats(id)
        except NotFound:
            return
        time.sleep(interval)


@stream
def container_logs(engine, id: str, **kwargs) -> Iterator[list]:
    for entry in engine.containers.logs(id, **kwargs):
        yield [entry.stream, entry.time_nano, b2s(entry.data)]


@op
def container_export(engine, id: str, dest: str) -> None:
    engine.containers.export(id, dest)


@op
def container_archive_stat(engine, id: str, path: str) -> dict:
    return engine.containers.archive_stat(id, path)


@op
def container_archive_get(engine, id: str, path: str, dest: str) -> dict:
    return engine.containers.archive_get(id, path, dest)


@op
def container_archive_put(engine, id: str, path: str, src: str) -> int:
    try:
        with open(src, "rb") as fh:
            return engine.containers.archive_put(id, path, fh)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(src)


@op
def container_prune(engine, filters: dict | None = None) -> dict:
    prune = getattr(engine.containers, "prune", None)
    if prune is not None:
        return prune(filters or None)
    deleted, reclaimed = [], 0
    for c in engine.containers.list(all=True):
        state = _docker(c).get("State", {})
        if not state.get("Running") and not state.get("Paused"):
            engine.containers.remove(c.id)
            deleted.append(c.id)
    return {"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed}


@op
def container_commit(engine, id: str, reference: str | None, **kwargs) -> dict:
    image = engine.containers.commit(id, reference, **kwargs)
    return {"Id": image.id}


# --- exec ------------------------------------------------------------------------------------

@op
def exec_create(engine, id: str, cmd: list[str], tty: bool = False, user: str = "",
                env: list[str] | None = None, workdir: str = "", stdin: bool = False) -> dict:
    exec_id = engine.containers.exec_create(id, cmd, tty=tty, user=user, env=env,
                                            workdir=workdir, stdin=stdin)
    return {"Id": exec_id}


@op
def exec_inspect(engine, exec_id: str) -> dict:
    return engine.containers.exec_inspect(exec_id)


# --- images ----------------------------------------------------------------------------------

@op
def image_list(engine, all: bool = False, filters: dict | None = None) -> list[dict]:
    return [_docker(i, "to_docker_summary")
            for i in engine.images.list(filters=filters or None, all=all)]


@op
def image_inspect(engine, ref: str) -> dict:
    return _docker(engine.images.resolve(ref))


@op
def image_history(engine, ref: str) -> list[dict]:
    return engine.images.history(ref)


@op
def image_tag(engine, src: str, reference: str) -> None:
    engine.images.tag(src, reference)


@op
def image_remove(engine, ref: str, force: bool = False) -> list[dict]:
    return engine.images.remove(ref, force=force)


@op
def image_prune(engine, dangling_only: bool = True, filters: dict | None = None) -> dict:
    return engine.images.prune(dangling_only=dangling_only, filters=filters)


def credentials_dict(auth: dict) -> dict:
    """X-Registry-Auth's fields -> the engine's ``Credentials`` keyword arguments."""
    from engine.registry import client as rc

    cls = getattr(rc, "Credentials", None)
    values = {"username": auth.get("username"), "password": auth.get("password"),
              "identity_token": auth.get("identitytoken") or auth.get("registrytoken")}
    if cls is not None and dataclasses.is_dataclass(cls):
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in names}
    return {k: v for k, v in values.items() if v}


def _credentials(auth: dict | None):
    if not auth:
        return None
    from engine.registry import client as rc

    return rc.Credentials(**credentials_dict(auth))


def _progress_stream(run: Callable[[Callable[[dict], None]], Any]) -> Iterator[dict]:
    """Run ``run(progress)`` in a thread and yield each progress dict as it comes."""
    import queue
    import threading

    q: queue.Queue = queue.Queue()
    done = object()

    def target() -> None:
        try:
            result = run(q.put)
            q.put({"__result__": result})
        except EngineError as exc:
            q.put({"error": exc.message, "errorDetail": {"message": exc.message}})
        except Exception as exc:  # reported to the client as Docker does, in-band
            q.put({"error": str(exc), "errorDetail": {"message": str(exc)}})
        finally:
            q.put(done)

    threading.Thread(target=target, daemon=True).start()
    while True:
        item = q.get()
        if item is done:
            return
        yield item


def _engine_lines(run: Callable[[Callable[[dict], None]], Any]) -> Iterator[dict]:
    """The engine's own Docker JSON lines of a pull, push or build (they carry the digest,
    the ID and the last status); its result is not one of them."""
    for item in _progress_stream(run):
        if "__result__" not in item:
            yield item


@stream
def image_pull(engine, reference: str, auth: dict | None = None,
               platform: str | None = None) -> Iterator[dict]:
    yield from _engine_lines(lambda progress: engine.registry.pull(
        reference, auth=_credentials(auth), progress=progress, platform=platform))


@stream
def image_push(engine, reference: str, auth: dict | None = None) -> Iterator[dict]:
    yield from _engine_lines(lambda progress: engine.registry.push(
        reference, auth=_credentials(auth), progress=progress))


@stream
def image_build(engine, context: str, **kwargs) -> Iterator[dict]:
    def run(progress):
        with open(context, "rb") as fh:
            return engine.builder.build(fh, progress=progress, **kwargs)

    try:
        yield from _engine_lines(run)
    finally:
        try:
            os.unlink(context)
        except OSError:
            pass


@op
def image_save(engine, refs: list[str], dest: str) -> None:
    engine.images.save(refs, dest)


@op
def image_load(engine, src: str) -> list[str]:
    try:
        images = engine.images.load(src)
    finally:
        try:
            os.unlink(src)
        except OSError:
            pass
    return [name for i in images for name in (i.repo_tags or [i.id])]


@op
def image_import(engine, src: str, reference: str | None, changes: list[str] | None = None,
                 message: str = "") -> str:
    try:
        image = engine.images.import_rootfs(src, reference, comment=message,
                                            changes=changes or None)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(src)
    return image.id


# --- volumes -----------------------------------------------------------------------------

def _volume_list(engine, filters: dict | None = None) -> list:
    vm = engine.volumes
    try:
        return list(vm.list(filters=filters or None))
    except TypeError:
        return list(vm.list())


@op
def volume_create(engine, name: str | None = None, driver: str = "local",
                  labels: dict | None = None, options: dict | None = None) -> dict:
    vol = engine.volumes.create(name or None, driver=driver or "local", labels=labels or {},
                                driver_opts=options or {})
    return _docker(vol)


@op
def volume_list(engine, filters: dict | None = None) -> dict:
    return {"Volumes": [_docker(v) for v in _volume_list(engine, filters)], "Warnings": []}


@op
def volume_inspect(engine, name: str) -> dict:
    vm = engine.volumes
    getter = getattr(vm, "inspect", None) or vm.get
    return _docker(getter(name))


@op
def volume_remove(engine, name: str, force: bool = False) -> None:
    engine.volumes.remove(name, force=force)


@op
def volume_prune(engine, filters: dict | None = None) -> dict:
    result = engine.volumes.prune(filters or None) if filters else engine.volumes.prune()
    return result if isinstance(result, dict) else {"VolumesDeleted": list(result or []),
                                                    "SpaceReclaimed": 0}


# --- networks ------------------------------------------------------------------------------

def network_create_kwargs(body: dict) -> tuple[str, dict]:
    """``POST /networks/create``'s body -> ``NetworkManager.create`` arguments."""
    configs = (body.get("IPAM") or {}).get("Config") or []
    first = configs[0] if configs else {}
    kwargs = {"driver": body.get("Driver") or "bridge", "subnet": first.get("Subnet") or None,
              "gateway": first.get("Gateway") or None, "internal": bool(body.get("Internal")),
              "labels": body.get("Labels") or {}, "options": body.get("Options") or {}}
    return body["Name"], kwargs


@op
def network_create(engine, body: dict) -> dict:
    name, kwargs = network_create_kwargs(body)
    net = engine.networks.create(name, **kwargs)
    data = _docker(net)
    return {"Id": data.get("Id", getattr(net, "id", "")), "Warning": ""}


@op
def network_list(engine, filters: dict | None = None) -> list[dict]:
    nm = engine.networks
    try:
        items = nm.list(filters=filters or None)
    except TypeError:
        items = nm.list()
    return [_docker(n) for n in items]


@op
def network_inspect(engine, id: str) -> dict:
    nm = engine.networks
    getter = getattr(nm, "inspect", None) or nm.get
    return _docker(getter(id))


@op
def network_remove(engine, id: str) -> None:
    engine.networks.remove(id)


@op
def network_prune(engine, filters: dict | None = None) -> dict:
    result = engine.networks.prune()
    return result if isinstance(result, dict) else {"NetworksDeleted": list(result or [])}


@op
def network_connect(engine, id: str, container: str, endpoint: dict | None = None) -> None:
    endpoint = endpoint or {}
    ipam = endpoint.get("IPAMConfig") or {}
    engine.networks.connect(id, container, aliases=endpoint.get("Aliases") or [],
                            ipv4_address=ipam.get("IPv4Address") or None)


@op
def network_disconnect(engine, id: str, container: str, force: bool = False) -> None:
    engine.networks.disconnect(id, container, force=force)


def decode_registry_auth(header: str | None) -> dict | None:
    """``X-Registry-Auth``: base64url JSON ``{"username","password","serveraddress"}``."""
    if not header:
        return None
    try:
        padded = header + "=" * (-len(header) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as exc:
        raise InvalidArgument("X-Registry-Auth is not base64-encoded JSON") from exc
    if not isinstance(data, dict) or not data:
        return None
    return {k.lower(): v for k, v in data.items()}


def spool_dir() -> Path:
    """Where request bodies (build contexts, tars to load) wait for the worker."""
    path = Path(os.environ.get("ESTIBA_API_SPOOL", "/var/tmp/estiba-api"))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
