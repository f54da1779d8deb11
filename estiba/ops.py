"""The engine operations a worker agrees to run, and how their values cross Redis.

The gateway (``estiba.gateway``) names an operation by a dotted string such as
``"containers.start"``; the worker runs it only if it is listed here, because a
task message is input from the network and must not reach arbitrary engine
attributes. Values travel as JSON: engine objects become Docker's JSON shape,
``bytes`` become ``{"__bytes__": base64}`` and come back as bytes on the other
side, so log lines and terminal output stay exact.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import io
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from engine import errors

# --- what may be called ------------------------------------------------------------------

#: Plain calls: "manager.method" on the host's Engine.
CALL_OPS = frozenset({
    "engine.info", "engine.disk_usage",
    "containers.list", "containers.get", "containers.create", "containers.start",
    "containers.stop", "containers.kill", "containers.restart", "containers.pause",
    "containers.unpause", "containers.remove", "containers.wait", "containers.rename",
    "containers.top", "containers.stats", "containers.changes", "containers.exec_create",
    "containers.exec_inspect", "containers.commit", "containers.ids_using_image",
    "containers.prune", "containers.archive_put",
    "images.list", "images.resolve", "images.tag", "images.remove", "images.prune",
    "images.history", "images.disk_usage", "images.import_rootfs", "images.load",
    "registry.pull", "registry.push", "registry.check_login",
    "volumes.list", "volumes.get", "volumes.inspect", "volumes.create", "volumes.remove",
    "volumes.prune", "volumes.users",
    "networks.list", "networks.get", "networks.inspect", "networks.create",
    "networks.remove", "networks.connect", "networks.disconnect", "networks.prune",
    "builder.build",
    "events.history",
})

#: Generators (or callback-driven operations) whose items are streamed.
STREAM_OPS = frozenset({
    "containers.logs", "containers.stats_stream", "registry.pull", "registry.push",
    "builder.build", "events.follow", "images.save",
})

#: Two-way byte sessions (a terminal).
SESSION_OPS = frozenset({"containers.exec", "containers.attach"})


class OperationRefused(errors.InvalidArgument):
    """The task named an operation the worker does not run."""


# --- JSON both ways ----------------------------------------------------------------------

#: Exact types JSON carries as they are: the walks below pass them without a call.
_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_json(value: Any, *, summary: bool = False) -> Any:
    """A JSON-able copy of an engine value (engine objects as Docker shows them).

    Plain dicts and lists — most of a listing's 200 summaries — take a fast path
    that copies their plain leaves without a call each; anything else takes the
    full walk in ``_to_json``.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k):
                v if type(v) in _PLAIN else to_json(v, summary=summary)
                for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN else to_json(v, summary=summary) for v in value]
    return _to_json(value, summary)


def _to_json(value: Any, summary: bool) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {str(k): to_json(v, summary=summary) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v, summary=summary) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    for name in (("to_docker_summary",) if summary else ()) + (
        "to_docker_inspect", "to_docker", "to_dict",
    ):
        method = getattr(value, name, None)
        if callable(method):
            return to_json(method())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


def from_json(value: Any) -> Any:
    """Undo ``to_json``'s one trick: ``{"__bytes__": ...}`` becomes bytes again."""
    if isinstance(value, dict):
        if len(value) == 1 and "__bytes__" in value:
            return base64.b64decode(value["__bytes__"])
        return {k: v if type(v) in _PLAIN else from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [v if type(v) in _PLAIN else from_json(v) for v in value]
    return value


def loads(raw: bytes | str) -> Any:
    """``from_json(json.loads(raw))``, without the walk when no bytes travelled."""
    data = json.loads(raw)
    marker = b"__bytes__" if isinstance(raw, (bytes, bytearray)) else "__bytes__"
    return from_json(data) if marker in raw else data


def error_to_json(exc: BaseException, host: str) -> dict:
    """An engine error keeps its class and message; anything else becomes a short sentence."""
    if isinstance(exc, errors.EngineError):
        return {"type": type(exc).__name__, "message": exc.message}
    return {
        "type": "EngineError",
        "message": f"internal error on host {host}: {type(exc).__name__}: {exc}",
    }


def error_from_json(data: dict) -> errors.EngineError:
    name = data.get("type", "")
    cls = OperationRefused if name == "OperationRefused" else getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.EngineError)):
        cls = errors.EngineError
    return cls(data.get("message", "unknown engine error"))


# --- argument adapters -------------------------------------------------------------------

def _container_spec(spec: Any) -> Any:
    """A dict of ContainerSpec fields becomes a ContainerSpec (nested specs too)."""
    if not isinstance(spec, dict):
        return spec
    from engine.runtime import containers as rc

    spec = dict(spec)
    mount_cls = getattr(rc, "MountSpec", None)
    endpoint_cls = getattr(rc, "EndpointSpec", None)
    if mount_cls and spec.get("mounts"):
        spec["mounts"] = [m if not isinstance(m, dict) else mount_cls(**m) for m in spec["mounts"]]
    if endpoint_cls and spec.get("networks"):
        spec["networks"] = {
            k: v if not isinstance(v, dict) else endpoint_cls(**v)
            for k, v in spec["networks"].items()
        }
    fields = {f.name for f in dataclasses.fields(rc.ContainerSpec)}
    unknown = set(spec) - fields
    if unknown:
        raise errors.InvalidArgument(f"container spec: unknown fields {sorted(unknown)}")
    return rc.ContainerSpec(**spec)


def _credentials(auth: Any) -> Any:
    if not isinstance(auth, dict):
        return auth
    from engine.registry import client

    return client.Credentials(**auth)


def _adapt(op: str, args: list, kwargs: dict) -> tuple[list, dict]:
    args, kwargs = from_json(list(args)), from_json(dict(kwargs))
    if op == "containers.create" and args:
        args[0] = _container_spec(args[0])
    if op.startswith("registry.") and isinstance(kwargs.get("auth"), dict):
        kwargs["auth"] = _credentials(kwargs["auth"])
    if op in ("builder.build", "images.load", "images.import_rootfs") and args and isinstance(
        args[0], bytes
    ):
        args[0] = io.BytesIO(args[0])
    if op == "builder.build" and isinstance(kwargs.get("context"), bytes):
        kwargs["context"] = io.BytesIO(kwargs["context"])
    return args, kwargs


def _method(engine: Any, op: str) -> Callable:
    manager_name, _, method_name = op.partition(".")
    target = engine if manager_name == "engine" else getattr(engine, manager_name)
    method = getattr(target, method_name, None)
    if not callable(method):
        raise OperationRefused(f"operation {op!r} is not available in this engine")
    return method


# --- running ------------------------------------------------------------------------------

def run_call(engine: Any, op: str, args: list, kwargs: dict) -> Any:
    if op not in CALL_OPS:
        raise OperationRefused(f"operation {op!r} is not one the worker runs")
    args, kwargs = _adapt(op, args, kwargs)
    result = _method(engine, op)(*args, **kwargs)
    if isinstance(result, Iterator):  # e.g. logs without follow: gather them
        result = list(result)
    return to_json(result, summary=op.endswith(".list"))


def _with_progress(fn: Callable, args: list, kwargs: dict) -> Iterator[Any]:
    """Turn ``fn(..., progress=callback)`` into a generator of progress items, then the result."""
    items: queue.Queue = queue.Queue()
    done = object()
    outcome: dict[str, Any] = {}

    def worker() -> None:
        try:
            outcome["result"] = fn(*args, progress=items.put, **kwargs)
        except BaseException as exc:  # re-raised in the consumer's thread
            outcome["error"] = exc
        finally:
            items.put(done)

    threading.Thread(target=worker, daemon=True, name="estiba-progress").start()
    while (item := items.get()) is not done:
        yield item
    if "error" in outcome:
        raise outcome["error"]
    yield {"result": to_json(outcome.get("result"))}


def _stats_stream(engine: Any, container_id: str, interval: float = 1.0) -> Iterator[dict]:
    """One stats sample a second while the container runs."""
    while True:
        yield engine.containers.stats(container_id)
        if not _is_running(engine, container_id):
            return
        time.sleep(interval)


def _is_running(engine: Any, container_id: str) -> bool:
    try:
        data = to_json(engine.containers.get(container_id))
    except errors.NotFound:
        return False
    return bool(data.get("State", {}).get("Running"))


def event_json(event: Any) -> dict:
    """An engine event both ways: estiba's own fields and Docker's ``EventMessage``."""
    own = {f.name: to_json(getattr(event, f.name)) for f in dataclasses.fields(event)}
    return {"event": own, "docker": event.to_docker()}


def _events_follow(engine: Any, since: int | None = None) -> Iterator[dict]:
    for _offset, event in engine.events.follow(since):
        yield event_json(event)


def run_stream(engine: Any, op: str, args: list, kwargs: dict) -> Iterator[Any]:
    if op not in STREAM_OPS:
        raise OperationRefused(f"operation {op!r} is not a stream the worker runs")
    args, kwargs = _adapt(op, args, kwargs)
    if op == "containers.stats_stream":
        source: Iterator[Any] = _stats_stream(engine, *args, **kwargs)
    elif op == "events.follow":
        source = _events_follow(engine, *args, **kwargs)
    elif op in ("registry.pull", "registry.push", "builder.build"):
        source = _with_progress(_method(engine, op), args, kwargs)
    else:
        source = iter(_method(engine, op)(*args, **kwargs))
    for item in source:
        yield to_json(item)


def open_session(engine: Any, op: str, args: list, kwargs: dict) -> Any:
    """An object with ``write(bytes)``, ``read() -> bytes`` (b"" at the end),
    ``resize(h, w)``, ``close()`` and ``exit_code``."""
    if op not in SESSION_OPS:
        raise OperationRefused(f"operation {op!r} is not a session the worker opens")
    args, kwargs = _adapt(op, args, kwargs)
    if op == "containers.exec":
        container_id, cmd = args[0], args[1]
        exec_id = engine.containers.exec_create(
            container_id, cmd, tty=kwargs.get("tty", True), user=kwargs.get("user", ""),
            env=kwargs.get("env"), workdir=kwargs.get("workdir", ""), stdin=True,
        )
        rows, cols = int(kwargs.get("rows") or 0), int(kwargs.get("cols") or 0)
        if rows and cols:
            return engine.containers.exec_start(exec_id, height=rows, width=cols)
        return engine.containers.exec_start(exec_id)
    return engine.containers.attach(*args, **kwargs)
