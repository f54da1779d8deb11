"""Exec endpoints: create, start (hijacked, or detached), inspect, resize."""

from __future__ import annotations

import asyncio
import contextlib

from dockerapi import hijack
from dockerapi.backend import blocking_reader
from dockerapi.http import BadRequest, Request, Response, empty, json_response
from dockerapi.routes.containers import _inspect
from dockerapi.translate import frame
from engine.errors import EngineError

EID = r"(?P<exec_id>[^/]+)"


def register(api) -> None:
    api.route("POST", r"/containers/(?P<id>[^/]+)/exec", create)
    api.route("POST", rf"/exec/{EID}/start", start)
    api.route("GET", rf"/exec/{EID}/json", inspect)
    api.route("POST", rf"/exec/{EID}/resize", resize)


async def create(api, req: Request, id: str) -> Response:
    data = await _inspect(api, req, id)
    body = await req.json({}) or {}
    cmd = body.get("Cmd")
    if isinstance(cmd, str):
        cmd = [cmd]
    if not cmd or not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd):
        raise BadRequest("exec: Cmd must be a non-empty list of strings")
    state = data.get("State") or {}
    if not state.get("Running"):
        from engine.errors import Conflict

        raise Conflict(f"container {data['Id'][:12]} is not running")
    if state.get("Paused"):
        from engine.errors import Conflict

        raise Conflict(f"container {data['Id'][:12]} is paused, unpause it first")
    result = await api.backend.call(
        "exec_create", data["Id"], cmd, tty=bool(body.get("Tty")), user=body.get("User") or "",
        env=body.get("Env") or None, workdir=body.get("WorkingDir") or "",
        stdin=bool(body.get("AttachStdin")))
    return json_response(result, 201)


async def _exec_inspect(api, req: Request, exec_id: str) -> dict:
    data = await api.backend.call("exec_inspect", exec_id)
    container = data.get("ContainerID", "")
    await api.policy.check(req, "container", container, "")
    return data


async def start(api, req: Request, exec_id: str) -> Response | None:
    info = await _exec_inspect(api, req, exec_id)
    body = await req.json({}) or {}
    tty = bool(body.get("Tty", info.get("ProcessConfig", {}).get("tty", False)))
    if not body.get("Detach"):
        return await _start_attached(api, req, exec_id, info, tty)
    session = await api.backend.exec_session(exec_id)

    # Detached: nobody reads; drain the output in the background until the process ends.
    def drain() -> None:
        for _ in blocking_reader(session):
            pass
        with contextlib.suppress(Exception):
            session.close()

    asyncio.get_running_loop().run_in_executor(None, drain)
    return empty(200)


async def _start_attached(api, req: Request, exec_id: str, info: dict, tty: bool) -> None:
    """Answer first, then start the process: its output can never ride in the packet of
    the answer's headers, which a client (docker-py) reads through a buffer and
    would lose when it then reads the raw socket."""
    reader, writer = await req.hijack(
        "application/vnd.docker.raw-stream" if tty else
        "application/vnd.docker.multiplexed-stream")
    try:
        session = await api.backend.exec_session(exec_id)
    except EngineError as exc:  # the container stopped since the exec was made
        message = f"Error: {exc.message}\n".encode()
        writer.write(message if tty else frame("stderr", message))
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()
        return None
    await hijack.bridge("exec:" + exec_id, session, reader, writer, tty=tty,
                        stdin=bool(info.get("OpenStdin", True)))
    return None


async def inspect(api, req: Request, exec_id: str) -> Response:
    data = await _exec_inspect(api, req, exec_id)
    return json_response(data)


async def resize(api, req: Request, exec_id: str) -> Response:
    await _exec_inspect(api, req, exec_id)
    hijack.resize("exec:" + exec_id, req.qint("h", 0) or 0, req.qint("w", 0) or 0)
    return empty(200)
