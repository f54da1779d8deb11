"""Image endpoints: pull, push, build (JSON progress streams), list, inspect, tag...

Request bodies that are tarballs (a build context, ``docker load``) are
spooled to a private file first: the worker on this host reads it from there,
and a client that hangs up half-way leaves nothing behind but a file we delete.
"""

from __future__ import annotations

import asyncio
import json
import tarfile
import uuid
from collections.abc import AsyncIterator

from dockerapi.http import BadRequest, HTTPError, Request, Response, json_response
from dockerapi.ops import decode_registry_auth, spool_dir
from dockerapi.routes.containers import _file_stream
from dockerapi.routes.prune import split_until
from dockerapi.spool import UrlSpool, spool_body
from dockerapi.translate import parse_filters
from engine.errors import Forbidden

NAME = r"(?P<name>.+)"


def register(api) -> None:
    r = api.route
    r("POST", r"/images/create", create)
    r("GET", r"/images/json", list_images)
    r("POST", r"/images/prune", prune)
    r("GET", r"/images/get", get_many)
    r("POST", r"/images/load", load)
    r("POST", r"/build", build)
    r("GET", rf"/images/{NAME}/json", inspect)
    r("GET", rf"/images/{NAME}/history", history)
    r("POST", rf"/images/{NAME}/tag", tag)
    r("POST", rf"/images/{NAME}/push", push)
    r("GET", rf"/images/{NAME}/get", get_one)
    r("DELETE", rf"/images/{NAME}", remove)


def _jsonl(source):
    async def gen():
        async for item in source:
            yield json.dumps(item).encode() + b"\r\n"

    return gen()


def _auth(req: Request) -> dict | None:
    try:
        return decode_registry_auth(req.headers.get("x-registry-auth"))
    except Exception as exc:
        raise BadRequest(str(exc)) from exc


async def create(api, req: Request) -> Response:
    image = req.query.get("fromImage", "")
    if req.query.get("fromSrc"):
        return await _import(api, req)
    if not image:
        raise BadRequest("fromImage is required (the image to pull)")
    tag = req.query.get("tag", "")
    if tag:
        reference = f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
    else:
        reference = image if (":" in image.rsplit("/", 1)[-1] or "@" in image) \
            else image + ":latest"
    await api.policy.check_create(req, "image", {"reference": reference})
    platform = req.query.get("platform") or None  # docker pull --platform linux/arm64
    source = api.backend.stream("image_pull", reference, auth=_auth(req), platform=platform)
    return Response(200, stream=_jsonl(source))


async def _import(api, req: Request) -> Response:
    """``docker import``: a one-layer image from a rootfs tarball, in the body or at a URL."""
    src = req.query["fromSrc"]
    repo, tag = req.query.get("repo", ""), req.query.get("tag", "")
    if tag and not repo:
        raise BadRequest("tag given without repo: name the image as repo and tag")
    reference = f"{repo}:{tag}" if tag else repo
    changes = [v for k, v in req.query_list if k == "changes" and v.strip()]
    await api.policy.check_create(req, "image", {"reference": reference})

    async def import_file(path: str) -> str:
        return await api.backend.call("image_import", path, reference or None, changes=changes,
                                      message=req.query.get("message", ""))

    if src == "-":
        image_id = await import_file(await spool_body(req, "import"))
        return Response(200, json.dumps({"status": image_id}).encode() + b"\r\n")
    if not req.is_admin:
        # the server itself fetches the URL: never for a user who could aim it at a
        # service on this host's loopback
        raise Forbidden("only an administrator may import from a URL: send the tarball "
                        "itself (docker import FILE)")
    download = await asyncio.to_thread(UrlSpool, src, "import")
    return Response(200, stream=_url_import(download, import_file))


async def _url_import(download: UrlSpool, import_file) -> AsyncIterator[bytes]:
    """Docker's progress lines while the URL downloads, then the new image's ID."""
    loop = asyncio.get_running_loop()
    progress: asyncio.Queue = asyncio.Queue()

    def report(current: int, total: int | None) -> None:
        loop.call_soon_threadsafe(progress.put_nowait, (current, total))

    def fetch() -> str:
        try:
            return download.download(report)
        finally:
            loop.call_soon_threadsafe(progress.put_nowait, None)  # the last item, always

    task = asyncio.ensure_future(asyncio.to_thread(fetch))
    yield json.dumps({"status": f"Downloading from {download.url}"}).encode() + b"\r\n"
    try:
        while (item := await progress.get()) is not None:
            current, total = item
            detail = {"current": current, **({"total": total} if total else {})}
            yield json.dumps({"status": "Downloading", "progressDetail": detail,
                              "id": "import"}).encode() + b"\r\n"
        image_id = await import_file(await task)
        yield json.dumps({"status": image_id}).encode() + b"\r\n"
    except Exception as exc:  # the answer has begun: the error goes in the stream
        message = getattr(exc, "message", None) or str(exc)
        yield json.dumps({"errorDetail": {"message": message}, "error": message}).encode() + b"\r\n"


async def list_images(api, req: Request) -> Response:
    filters = parse_filters(req.query.get("filters"))
    items = await api.backend.call("image_list", all=req.qbool("all"), filters=filters)
    return json_response(items)


async def inspect(api, req: Request, name: str) -> Response:
    return json_response(await api.backend.call("image_inspect", name))


async def history(api, req: Request, name: str) -> Response:
    return json_response(await api.backend.call("image_history", name))


async def tag(api, req: Request, name: str) -> Response:
    repo = req.query.get("repo", "")
    if not repo:
        raise BadRequest("repo is required (the new name)")
    await api.policy.check_admin_or_owner(req, "image", name)
    tag_ = req.query.get("tag") or ""
    if not tag_ and ":" in repo.rsplit("/", 1)[-1]:
        reference = repo  # "name:tag" in repo alone, as docker-py sends it
    else:
        reference = f"{repo}:{tag_ or 'latest'}"
    await api.backend.call("image_tag", name, reference)
    return Response(201, b"", content_type="")


async def push(api, req: Request, name: str) -> Response:
    tag = req.query.get("tag", "")
    reference = f"{name}:{tag}" if tag else name
    await api.policy.check_admin_or_owner(req, "image", reference)
    source = api.backend.stream("image_push", reference, auth=_auth(req))
    return Response(200, stream=_jsonl(source))


async def remove(api, req: Request, name: str) -> Response:
    await api.policy.check_admin_or_owner(req, "image", name)
    return json_response(await api.backend.call("image_remove", name,
                                                force=req.qbool("force")))


async def prune(api, req: Request) -> Response:
    if not req.is_admin:
        raise HTTPError(403, "only an administrator may prune images")
    filters = parse_filters(req.query.get("filters"))
    unknown = sorted(set(filters) - {"dangling", "label", "until"})
    if unknown:
        raise BadRequest(f"invalid filter {unknown[0]!r} for an image prune: use dangling, "
                         "label or until")
    dangling = (filters.get("dangling") or ["true"])[0].lower() not in ("false", "0")
    rest, until = split_until(filters)
    wanted: dict[str, list[str]] = {}
    if rest.get("label"):
        wanted["label"] = rest["label"]
    if until is not None:
        wanted["until"] = [repr(until)]  # a timestamp: the engine needs no duration syntax
    result = await api.backend.call("image_prune", dangling_only=dangling,
                                    filters=wanted or None)
    return json_response(result)


async def build(api, req: Request) -> Response:
    tags = [v for k, v in req.query_list if k == "t" and v]
    buildargs = req.qjson("buildargs", {}) or {}
    labels = req.qjson("labels", {}) or {}
    if not isinstance(buildargs, dict) or not isinstance(labels, dict):
        raise BadRequest("buildargs and labels must be JSON objects")
    if req.query.get("remote"):
        raise HTTPError(501, "remote build contexts are not supported: send a tar body")
    await api.policy.check_create(req, "image", {"tags": tags})
    context = await spool_body(req, "build")
    kwargs = {"dockerfile": req.query.get("dockerfile") or "Dockerfile", "tags": tags,
              "build_args": {k: v for k, v in buildargs.items() if v is not None},
              "target": req.query.get("target") or None, "no_cache": req.qbool("nocache"),
              "labels": labels, "host_urls": bool(req.is_admin)}
    quiet = req.qbool("q")
    source = api.backend.stream("image_build", context, **kwargs)

    async def gen():
        async for item in source:
            if quiet and "stream" in item:
                continue
            yield json.dumps(item).encode() + b"\r\n"

    return Response(200, stream=gen())


async def _save(api, req: Request, names: list[str]) -> Response:
    if not names:
        raise BadRequest("names: which images to export")
    dest = str(spool_dir() / f"save-{uuid.uuid4().hex}.tar")
    await api.backend.call("image_save", names, dest)
    return Response(200, stream=_file_stream(dest), content_type="application/x-tar")


async def get_one(api, req: Request, name: str) -> Response:
    return await _save(api, req, [name])


async def get_many(api, req: Request) -> Response:
    return await _save(api, req, [v for k, v in req.query_list if k == "names" and v])


def archive_tags(path: str) -> list[str]:
    """The ``RepoTags`` a docker-archive's ``manifest.json`` names (what ``load`` will tag)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            member = tar.getmember("manifest.json")
            if not member.isfile() or member.size > 16 * 1024 * 1024:
                return []
            manifest = json.load(tar.extractfile(member))
    except (KeyError, OSError, ValueError, tarfile.TarError):
        return []
    if not isinstance(manifest, list):
        return []
    return [str(t) for entry in manifest if isinstance(entry, dict)
            for t in (entry.get("RepoTags") or [])]


async def load(api, req: Request) -> Response:
    await api.policy.check_create(req, "image", {})
    src = await spool_body(req, "load")
    tags = await asyncio.to_thread(archive_tags, src)
    loaded = await api.backend.call("image_load", src)
    loaded = tags or loaded
    lines = b"".join(json.dumps({"stream": f"Loaded image: {name}\n"}).encode() + b"\r\n"
                     for name in loaded)
    return Response(200, lines)
