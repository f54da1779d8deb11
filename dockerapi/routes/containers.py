"""Container endpoints: create, list, inspect, lifecycle, logs, stats, attach...

Logs and attach speak Docker's stream format: raw bytes for a container with a
tty, otherwise *stdcopy* frames (an 8-byte header: stream id, three zero bytes,
a big-endian length) so one byte stream carries stdout and stderr apart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from dockerapi import hijack, known
from dockerapi.http import BadRequest, HTTPError, Request, Response, empty, json_response
from dockerapi.ops import spool_dir
from dockerapi.spool import spool_body
from dockerapi.translate import container_spec, frame, parse_filters
from engine.errors import EngineError, NotFound

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
CID = r"(?P<id>[^/]+)"
AUTOREMOVE_LABEL = "org.estiba.api.autoremove"
_exit_codes: dict[str, int] = {}
_removers: dict[str, asyncio.Task] = {}


def register(api) -> None:
    r = api.route
    r("POST", r"/containers/create", create)
    r("GET", r"/containers/json", list_containers)
    r("POST", r"/containers/prune", prune)
    r("GET", rf"/containers/{CID}/json", inspect)
    for action in ("start", "stop", "restart", "kill", "pause", "unpause"):
        r("POST", rf"/containers/{CID}/{action}", _action(action))
    r("POST", rf"/containers/{CID}/wait", wait)
    r("DELETE", rf"/containers/{CID}", remove)
    r("GET", rf"/containers/{CID}/logs", logs)
    r("GET", rf"/containers/{CID}/top", top)
    r("GET", rf"/containers/{CID}/stats", stats)
    r("GET", rf"/containers/{CID}/changes", changes)
    r("GET", rf"/containers/{CID}/export", export)
    r("GET", rf"/containers/{CID}/archive", get_archive)  # and HEAD: the stat alone
    r("PUT", rf"/containers/{CID}/archive", put_archive)
    r("POST", rf"/containers/{CID}/rename", rename)
    r("POST", rf"/containers/{CID}/resize", resize)
    r("POST", rf"/containers/{CID}/attach", attach)
    r("POST", r"/commit", commit)


async def _inspect(api, req: Request, id: str) -> dict:
    data = await api.backend.call("container_inspect", id)
    await api.policy.check(req, "container", data["Id"], data.get("Name", ""))
    known.containers.remember(known.Facts(data["Id"], _autoremove(data)))
    if _autoremove(data):
        data.setdefault("HostConfig", {})["AutoRemove"] = True
    return data


async def _target(api, req: Request, id: str) -> known.Facts:
    """The container a lifecycle call names, checked against the caller.

    A full ID the server already knows needs no inspect from the host (see
    ``dockerapi.known``); the ownership check runs all the same, and when it
    refuses, the inspect path answers, so the refusal reads exactly as before.
    """
    facts = known.containers.get(id)
    if facts is not None:
        try:
            await api.policy.check(req, "container", facts.id)
            return facts
        except NotFound:
            pass
    data = await _inspect(api, req, id)
    return known.Facts(data["Id"], _autoremove(data))


async def _on_target(call: Awaitable[Any], container_id: str) -> Any:
    """Await ``call``; a container gone behind the server's back is forgotten."""
    try:
        return await call
    except NotFound:
        known.containers.forget(container_id)
        raise


def _autoremove(data: dict) -> bool:
    return ((data.get("Config") or {}).get("Labels") or {}).get(AUTOREMOVE_LABEL) == "1"


async def autoremove(api, cid: str) -> None:
    """Remove an ``AutoRemove`` container once it stopped and its attached clients are done."""
    try:
        code = await api.backend.call("container_wait", cid, "not-running")
        _exit_codes[cid] = code
        await hijack.drained("container:" + cid, timeout=10)
        await api.backend.call("container_remove", cid, force=True, volumes=True)
    except Exception:  # already removed by hand: nothing left to do
        pass
    finally:
        _removers.pop(cid, None)
        asyncio.get_running_loop().call_later(60, _exit_codes.pop, cid, None)


async def create(api, req: Request) -> Response:
    name = req.query.get("name") or None
    if name and not NAME_RE.match(name):
        raise BadRequest(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                         "are allowed")
    body = await req.json({})
    spec = container_spec(body, name.lstrip("/") if name else None)
    if spec.get("auto_remove"):
        # The API removes it itself, after the attached client has read all of its
        # output: the engine's own auto-remove can win the race against `docker run`'s
        # attach and take a short command's output with it (see autoremove()).
        spec["auto_remove"] = False
        spec["labels"][AUTOREMOVE_LABEL] = "1"
    await api.policy.check_create(req, "container", spec)
    result = await api.backend.call("container_create", spec)
    await api.policy.record(req, "container", result["Id"], name or "")
    known.containers.remember(known.Facts(
        result["Id"], (spec.get("labels") or {}).get(AUTOREMOVE_LABEL) == "1"))
    return json_response(result, 201)


async def list_containers(api, req: Request) -> Response:
    filters = parse_filters(req.query.get("filters"))
    items = await api.backend.call("container_list", all=req.qbool("all"), filters=filters,
                                   limit=req.qint("limit", 0) or 0, size=req.qbool("size"))
    items = await api.policy.filter_list(req, "container", items)
    return json_response(items)


async def inspect(api, req: Request, id: str) -> Response:
    return json_response(await _inspect(api, req, id))


def _action(action: str):
    async def handler(api, req: Request, id: str) -> Response:
        target = await _target(api, req, id)
        kwargs: dict[str, Any] = {}
        if action in ("stop", "restart"):
            t = req.qint("t")
            if t is not None:
                kwargs["timeout"] = t
        if action == "kill":
            kwargs["signal"] = req.query.get("signal") or "SIGKILL"
        await _on_target(api.backend.call("container_action", action, target.id, **kwargs),
                         target.id)
        if action in ("start", "restart") and target.autoremove and target.id not in _removers:
            _removers[target.id] = asyncio.ensure_future(autoremove(api, target.id))
        return empty(204)

    handler.__name__ = action
    return handler


async def wait(api, req: Request, id: str) -> Response:
    # Not ``_target``: the status line goes out before the engine's wait answers,
    # so only an inspect can still say 404 for a container gone behind our back.
    condition = req.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise BadRequest(f"invalid condition {condition!r}: not-running, next-exit or removed")
    call = None
    if condition != "next-exit" and await _may_wait_at_once(api, req, id):
        # A full ID the server knows: the wait is sent beside the inspect, not after it
        # (one round trip to the worker instead of two). "next-exit" must be registered
        # after the inspect, so that the docker CLI's `start`, sent once the headers are
        # out, cannot end the container before the wait counts its exits.
        call = asyncio.ensure_future(api.backend.call("container_wait", id, condition))
        await asyncio.sleep(0)  # its message goes first: the worker takes them in order
    try:
        data = await _inspect(api, req, id)
    except BaseException:
        if call is not None:
            call.cancel()
            with contextlib.suppress(BaseException):
                await call
        raise
    target = known.Facts(data["Id"], _autoremove(data))
    # Headers go out at once (the docker CLI waits for them before `start`), the
    # body when the container has stopped.
    if call is None:
        call = asyncio.ensure_future(api.backend.call("container_wait", target.id, condition))

    async def body() -> bytes:
        try:
            code = await call
            code = _exit_codes.get(target.id, code) if condition == "removed" else code
            answer = {"StatusCode": code, "Error": None}
        except Exception as exc:  # the container vanished, or the host failed
            answer = {"StatusCode": -1, "Error": {"Message": getattr(exc, "message", str(exc))}}
        return json.dumps(answer).encode() + b"\n"

    stopped = not (data.get("State") or {}).get("Running")
    if call.done() or (condition == "not-running" and stopped):
        # Stopped already (a short `run`): the wait answers at once, in one plain body.
        return Response(200, await body())

    async def gen():
        yield await body()

    return Response(200, stream=gen())


async def _may_wait_at_once(api, req: Request, id: str) -> bool:
    """A full ID the server knows, of a container the caller may see.

    Never is a worker's thread held waiting on a container the caller may not
    see; a refusal is left to the inspect, so that it reads as it always did.
    """
    facts = known.containers.get(id)
    if facts is None:
        return False
    try:
        await api.policy.check(req, "container", facts.id)
    except NotFound:
        return False
    return True


async def remove(api, req: Request, id: str) -> Response:
    target = await _target(api, req, id)
    await _on_target(api.backend.call("container_remove", target.id, force=req.qbool("force"),
                                      volumes=req.qbool("v")), target.id)
    known.containers.forget(target.id)
    await api.policy.forget(req, "container", target.id)
    return empty(204)


def _since(value: str | None) -> float:
    if not value:
        return 0
    try:
        return float(value)
    except ValueError as exc:
        raise BadRequest(f"since/until must be a unix timestamp, not {value!r}") from exc


def rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


async def logs(api, req: Request, id: str) -> Response:
    data = await _inspect(api, req, id)
    stdout, stderr = req.qbool("stdout"), req.qbool("stderr")
    if not (stdout or stderr):
        raise BadRequest("you must choose at least one stream (stdout or stderr)")
    tail = req.query.get("tail", "all")
    if tail in ("all", "", None):
        tail_n = None
    else:
        try:
            tail_n = int(tail)
        except ValueError as exc:
            raise BadRequest(f"tail must be a number or 'all', not {tail!r}") from exc
        if tail_n < 0:
            tail_n = None
    until = _since(req.query.get("until")) or None
    tty = bool((data.get("Config") or {}).get("Tty"))
    timestamps = req.qbool("timestamps")
    source = api.backend.stream("container_logs", data["Id"], follow=req.qbool("follow"),
                                since=_since(req.query.get("since")), until=until, tail=tail_n,
                                timestamps=False, stdout=stdout, stderr=stderr)

    async def gen():
        async for stream_name, time_nano, text in source:
            payload = text.encode("latin-1")
            if timestamps:
                payload = rfc3339(time_nano).encode() + b" " + payload
            yield payload if tty else frame(stream_name, payload)

    kind = "application/vnd.docker.raw-stream" if tty else \
        "application/vnd.docker.multiplexed-stream"
    return Response(200, stream=gen(), content_type=kind)


async def top(api, req: Request, id: str) -> Response:
    data = await _inspect(api, req, id)
    return json_response(await api.backend.call("container_top", data["Id"],
                                                req.query.get("ps_args", "")))


async def stats(api, req: Request, id: str) -> Response:
    data = await _inspect(api, req, id)
    one = req.qbool("one-shot") or not req.qbool("stream", True)
    if one:
        return json_response(await api.backend.call("container_stats", data["Id"]))

    async def gen():
        async for sample in api.backend.stream("container_stats_stream", data["Id"]):
            yield json.dumps(sample).encode() + b"\n"

    return Response(200, stream=gen())


async def changes(api, req: Request, id: str) -> Response:
    data = await _inspect(api, req, id)
    return json_response(await api.backend.call("container_changes", data["Id"]) or None)


async def _file_stream(path: str):
    try:
        with open(path, "rb") as fh:
            while True:
                piece = await asyncio.to_thread(fh.read, 256 * 1024)
                if not piece:
                    return
                yield piece
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


async def export(api, req: Request, id: str) -> Response:
    data = await _inspect(api, req, id)
    dest = str(spool_dir() / f"export-{uuid.uuid4().hex}.tar")
    await api.backend.call("container_export", data["Id"], dest)
    return Response(200, stream=_file_stream(dest), content_type="application/x-tar")


def _path_stat_header(info: dict) -> dict[str, str]:
    """``docker cp`` reads the path's stat from this header: base64 of its JSON."""
    raw = json.dumps(info, separators=(",", ":")).encode()
    return {"X-Docker-Container-Path-Stat": base64.b64encode(raw).decode()}


async def get_archive(api, req: Request, id: str) -> Response:
    """``docker cp CONTAINER:PATH``: a tar of PATH (HEAD: its stat only)."""
    data = await _inspect(api, req, id)
    path = req.query.get("path", "")
    if req.method == "HEAD":
        info = await api.backend.call("container_archive_stat", data["Id"], path)
        return Response(200, b"", _path_stat_header(info), content_type="")
    dest = str(spool_dir() / f"archive-{uuid.uuid4().hex}.tar")
    try:
        info = await api.backend.call("container_archive_get", data["Id"], path, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(dest)
        raise
    return Response(200, stream=_file_stream(dest), headers=_path_stat_header(info),
                    content_type="application/x-tar")


async def put_archive(api, req: Request, id: str) -> Response:
    """``docker cp SRC CONTAINER:DIR``: the body, a tar, extracted into DIR."""
    data = await _inspect(api, req, id)
    path = req.query.get("path", "")
    if not path:
        raise BadRequest("path is required: the container's directory to extract into")
    src = await spool_body(req, "archive")
    await api.backend.call("container_archive_put", data["Id"], path, src)
    return empty(200)


async def rename(api, req: Request, id: str) -> Response:
    data = await _inspect(api, req, id)
    name = req.query.get("name", "")
    if not NAME_RE.match(name):
        raise BadRequest(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                         "are allowed")
    await api.backend.call("container_rename", data["Id"], name.lstrip("/"))
    return empty(204)


async def prune(api, req: Request) -> Response:
    if not req.is_admin:
        raise HTTPError(403, "only an administrator may prune containers")
    from dockerapi.routes.prune import prune_containers

    return json_response(await prune_containers(api, req,
                                                parse_filters(req.query.get("filters"))))


async def resize(api, req: Request, id: str) -> Response:
    data = await _inspect(api, req, id)
    h, w = req.qint("h", 0) or 0, req.qint("w", 0) or 0
    hijack.resize("container:" + data["Id"], h, w)
    return empty(200)


async def attach(api, req: Request, id: str) -> Response | None:
    data = await _inspect(api, req, id)
    cid = data["Id"]
    tty = bool((data.get("Config") or {}).get("Tty"))
    want_in = req.qbool("stdin")
    kwargs = {"stdin": want_in, "stdout": req.qbool("stdout"), "stderr": req.qbool("stderr"),
              "logs": req.qbool("logs"), "stream": req.qbool("stream")}
    kind = "application/vnd.docker.raw-stream" if tty else \
        "application/vnd.docker.multiplexed-stream"
    with hijack.attached("container:" + cid):
        never_started = (data.get("State") or {}).get("Status") == "created"
        if not (kwargs["stream"] and never_started):
            session = await api.backend.attach_session(cid, **kwargs)
            reader, writer = await req.hijack(kind)
        else:
            # `docker run` attaches before it starts the container: answer 101 now,
            # wait for the start, then attach with the log so far (nothing is lost).
            reader, writer = await req.hijack(kind)
            # (The client may have half-closed already: no stdin is not a hang-up.)
            begun = time.monotonic()
            while time.monotonic() - begun < 3600:
                state = (await api.backend.call("container_inspect", cid)).get("State") or {}
                if state.get("Status") != "created":
                    break
                await asyncio.sleep(0.02 if time.monotonic() - begun < 60 else 0.5)
            if not want_in:
                # Nothing to send it: follow its log from the start of this run, which
                # neither loses what it printed before we got here nor repeats it.
                await _follow_into(api, cid, writer, tty, kwargs["stdout"], kwargs["stderr"])
                return None
            kwargs["logs"] = True
            try:
                session = await api.backend.attach_session(cid, **kwargs)
            except Exception:  # it ended before we could attach: its output is in the log
                kwargs["stream"] = False
                session = await api.backend.attach_session(cid, **kwargs)
        await hijack.bridge("container:" + cid, session, reader, writer, tty=tty, stdin=want_in)
    return None


async def _follow_into(api, cid: str, writer, tty: bool, stdout: bool, stderr: bool) -> None:
    try:
        async for stream_name, _t, text in api.backend.stream(
                "container_logs", cid, follow=True, stdout=stdout, stderr=stderr):
            data = text.encode("latin-1")
            writer.write(data if tty else frame(stream_name, data))
            await writer.drain()
    except (ConnectionError, EngineError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            await writer.drain()
            writer.close()


async def commit(api, req: Request) -> Response:
    container = req.query.get("container", "")
    data = await _inspect(api, req, container)
    repo, tag = req.query.get("repo", ""), req.query.get("tag", "")
    reference = f"{repo}:{tag or 'latest'}" if repo else None
    config = await req.json({}) or {}
    result = await api.backend.call("container_commit", data["Id"], reference,
                                    comment=req.query.get("comment", ""),
                                    author=req.query.get("author", ""),
                                    changes=[c for c in req.query_list if c[0] == "changes"]
                                    and [v for k, v in req.query_list if k == "changes"],
                                    config=config)
    return json_response(result, 201)
