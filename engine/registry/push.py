"""Push: blobs the registry lacks, then the manifest that names them.

For each blob (layers, then the config) the registry is asked first
(``HEAD /v2/<name>/blobs/<digest>``): a blob it already has is not sent
again. A blob it lacks but holds in *another* repository of the same registry
(we know from the image's repo digests where it came from) is *mounted*
(``POST .../blobs/uploads/?mount=<digest>&from=<repo>``), which costs no
transfer. Otherwise it is uploaded: in one ``PUT`` when small, or in chunks
(``PATCH`` with ``Content-Range``, then the closing ``PUT ?digest=``) when
large, so a big layer never has to be one request. The manifest goes last, so
a registry never serves a manifest whose blobs are missing; its bytes are the
store's own, so the digest a pulled image had is the digest it keeps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlencode

from engine.errors import RegistryError
from engine.images import reference as refs
from engine.images.blobs import sha256_bytes
from engine.images.store import Image, ImageStore
from engine.registry.transport import RegistrySession

Progress = Callable[[dict], None]
MONOLITHIC_MAX = 16 * 1024 * 1024
CHUNK_SIZE = 8 * 1024 * 1024


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


class Pusher:
    def __init__(self, store: ImageStore, session: RegistrySession, image: Image,
                 target: refs.Reference, progress: Progress, *,
                 chunk_size: int = CHUNK_SIZE, monolithic_max: int = MONOLITHIC_MAX) -> None:
        self.store = store
        self.session = session
        self.image = image
        self.target = target
        self.progress = progress
        self.chunk_size = chunk_size
        self.monolithic_max = monolithic_max
        self.scope = f"repository:{target.path}:pull,push"
        self.where = f"{target.registry}/{target.path}"

    def push(self) -> tuple[str, int]:
        """Upload what is missing and the manifest; return (manifest digest, size)."""
        manifest_bytes = self.store.blobs.read(self.image.manifest_digest)
        manifest = json.loads(manifest_bytes)
        media_type = manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json"
        tag = self.target.tag or "latest"
        self.progress({"status": f"The push refers to repository [{self.target.name}]"})
        sources = self._mount_sources()
        layers = [(d["digest"], d["size"]) for d in manifest.get("layers", [])]
        for digest, _size in layers:
            self.progress({"status": "Preparing", "id": _short(digest), "progressDetail": {}})
        for digest, size in layers:
            self._push_blob(digest, size, sources, self.progress)
        # The config goes up too, without lines of its own: Docker shows the layers only.
        config = manifest["config"]
        self._push_blob(config["digest"], config["size"], sources, lambda _line: None)
        r = self.session.request(
            "PUT", f"/v2/{self.target.path}/manifests/{tag}", scope=self.scope,
            what=f"manifest {self.target.familiar()}", ok=(201, 200),
            headers={"Content-Type": media_type}, data=manifest_bytes)
        digest = sha256_bytes(manifest_bytes)
        answered = r.headers.get("Docker-Content-Digest")
        r.close()
        if answered and answered != digest:
            raise RegistryError(f"{self.where}: the registry stored the manifest as {answered}, "
                                f"expected {digest}")
        self.progress({"status": f"{tag}: digest: {digest} size: {len(manifest_bytes)}"})
        # What a client reads the pushed digest from (docker-py, ``push -q``).
        self.progress({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest,
                                                     "Size": len(manifest_bytes)}})
        return digest, len(manifest_bytes)

    def _mount_sources(self) -> list[str]:
        """Other repositories on this registry the image was pulled from or pushed to."""
        out = []
        for rd in self.image.repo_digests:
            try:
                r = refs.parse(rd)
            except Exception:
                continue
            if r.domain == self.target.domain and r.path != self.target.path:
                out.append(r.path)
        return out

    def _exists(self, digest: str) -> bool:
        r = self.session.request("HEAD", f"/v2/{self.target.path}/blobs/{digest}",
                                 scope=self.scope, what=f"blob check {digest}", ok=(200, 404))
        r.close()
        return r.status_code == 200

    def _push_blob(self, digest: str, size: int, sources: list[str], progress: Progress) -> None:
        sid = _short(digest)
        if self._exists(digest):
            progress({"status": "Layer already exists", "id": sid, "progressDetail": {}})
            return
        location = None
        for source in sources:
            query = urlencode({"mount": digest, "from": source})
            r = self.session.request(
                "POST", f"/v2/{self.target.path}/blobs/uploads/?{query}",
                scope=f"{self.scope} repository:{source}:pull",
                what=f"mount of {digest}", ok=(201, 202), headers={"Content-Length": "0"})
            r.close()
            if r.status_code == 201:
                progress({"status": f"Mounted from {source}", "id": sid,
                          "progressDetail": {}})
                return
            location = r.headers.get("Location")
            break
        if location is None:
            r = self.session.request("POST", f"/v2/{self.target.path}/blobs/uploads/",
                                     scope=self.scope, what=f"upload start for {digest}",
                                     ok=(202,), headers={"Content-Length": "0"})
            r.close()
            location = r.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.where}: the registry gave no upload location for {digest}")
        if size <= self.monolithic_max:
            with self.store.blobs.open(digest) as fh:
                body = _UploadBody(fh, size, lambda sent: progress({
                    "status": "Pushing", "id": sid,
                    "progressDetail": {"current": sent, "total": size}}))
                self._put(location, digest, body, size)
            if body.sent != size:
                raise RegistryError(f"{self.where}: blob {digest} in the store is "
                                    f"{body.sent} bytes, its manifest says {size}")
        else:
            self._chunked(location, digest, size, sid, progress)
        progress({"status": "Pushed", "id": sid, "progressDetail": {}})

    def _with_digest(self, location: str, digest: str) -> str:
        return location + ("&" if "?" in location else "?") + urlencode({"digest": digest})

    def _put(self, location: str, digest: str, data, length: int) -> None:
        r = self.session.request(
            "PUT", self._with_digest(location, digest), scope=self.scope,
            what=f"upload of {digest}", ok=(201, 204),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
            data=data)
        r.close()

    def _chunked(self, location: str, digest: str, size: int, sid: str,
                 progress: Progress) -> None:
        sent = 0
        with self.store.blobs.open(digest) as fh:
            while sent < size:
                chunk = fh.read(self.chunk_size)
                if not chunk:
                    break
                end = sent + len(chunk) - 1
                r = self.session.request(
                    "PATCH", location, scope=self.scope, what=f"chunk upload of {digest}",
                    ok=(202,), data=chunk,
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{sent}-{end}",
                             "Content-Length": str(len(chunk))})
                r.close()
                location = r.headers.get("Location") or location
                sent += len(chunk)
                progress({"status": "Pushing", "id": sid,
                          "progressDetail": {"current": sent, "total": size}})
        if sent != size:
            raise RegistryError(f"{self.where}: blob {digest} in the store is shorter than its "
                                "manifest says")
        self._put(location, digest, b"", 0)


class _UploadBody:
    """A blob as a request body (one ``PUT``) that reports bytes as they are sent.

    ``requests`` sends a file-like body by ``read``-ing blocks of it; about
    twenty "Pushing" lines (current/total) go out per blob, as for chunks.
    :meth:`seek` lets the transport send it again after an auth challenge.
    """

    def __init__(self, fh, size: int, report: Callable[[int], None]) -> None:
        self.fh = fh
        self.size = size
        self.report = report
        self.sent = 0
        self.last = -1

    def __len__(self) -> int:
        return self.size

    def seek(self, offset: int, whence: int = 0) -> int:
        self.sent = self.fh.seek(offset, whence)
        self.last = -1
        return self.sent

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.sent  # never more than the Content-Length announced
        data = self.fh.read(left if n is None or n < 0 else min(n, left))
        self.sent += len(data)
        step = self.sent * 20 // max(self.size, 1)
        if (data or not self.size) and step != self.last:
            self.last = step
            self.report(self.sent)
        return data
