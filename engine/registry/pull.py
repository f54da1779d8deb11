"""Pull: manifest -> config -> layers (in parallel) -> one atomic store update.

The order matters for "never half an image": blobs are downloaded into
``incoming/`` (resumable: a later pull continues a partial file with an HTTP
``Range`` request), verified against their digest, renamed into the blob store,
and unpacked into temporary layer dirs renamed into place. Only when every
layer is present does the store's index gain the image, in one atomic write.
A lease protects the blobs and layers being assembled from a concurrent
``prune``. Blobs and layers already in the store are skipped ("Already
exists"), so layers shared between images are fetched and unpacked once.

Each layer runs download-then-unpack in its own worker thread: hashing,
decompression and file writes release the GIL, so on two cores a pull of
several layers overlaps the network with the disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from engine.errors import ImageNotFound, RegistryError
from engine.images import reference as refs
from engine.images.blobs import sha256_bytes
from engine.images.compression import CHUNK
from engine.images.store import ImageStore, Layer, chain_ids, host_platform
from engine.registry import manifest as mf
from engine.registry.transport import RegistrySession, read_capped

Progress = Callable[[dict], None]
PARALLEL_DOWNLOADS = 4


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


class Puller:
    def __init__(self, store: ImageStore, session: RegistrySession, ref: refs.Reference,
                 progress: Progress) -> None:
        self.store = store
        self.session = session
        self.ref = ref
        self.progress = progress
        self.scope = f"repository:{ref.path}:pull"
        self.where = f"{ref.registry}/{ref.path}"

    def _get_manifest(self, reference: str) -> tuple[bytes, str, str]:
        r = self.session.request(
            "GET", f"/v2/{self.ref.path}/manifests/{reference}", scope=self.scope,
            what=f"manifest {self.ref.familiar_name}:{reference}" if ":" not in reference
            else f"manifest {self.ref.familiar_name}@{reference}",
            ok=(200,), stream=True, headers={"Accept": mf.MANIFEST_ACCEPT})
        body = read_capped(r, mf.MAX_MANIFEST, f"{self.where}: manifest")
        digest = sha256_bytes(body)
        header_digest = r.headers.get("Docker-Content-Digest")
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{self.where}: manifest digest mismatch: asked for {reference}, "
                                f"got content hashing to {digest}")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise RegistryError(f"{self.where}: manifest digest mismatch: the registry says "
                                f"{header_digest}, the content hashes to {digest}")
        return body, digest, r.headers.get("Content-Type", "")

    def pull(self) -> str:
        """Download and record the image; return its ID."""
        ref = self.ref
        tag_or_digest = ref.digest or ref.tag or "latest"
        self.progress({"status": f"Pulling from {ref.familiar_name}", "id": tag_or_digest})
        try:
            body, top_digest, ctype = self._get_manifest(tag_or_digest)
        except RegistryError as err:
            if getattr(err, "status", 0) == 404:
                raise ImageNotFound(f"manifest for {ref.familiar()} not found: manifest unknown "
                                    f"({ref.registry})") from None
            raise
        mt, doc = mf.media_type_of(body, ctype)
        if mt in mf.LIST_TYPES:
            os_name, arch = host_platform()
            chosen = mf.select_platform(doc, os_name, arch, self.where)
            body, _digest, ctype = self._get_manifest(chosen.digest)
            mt, doc = mf.media_type_of(body, ctype)
            if mt not in mf.IMAGE_TYPES:
                raise RegistryError(f"{self.where}: index entry {chosen.digest} is not an image "
                                    "manifest")
        manifest = mf.parse_image_manifest(doc, mt, self.where)
        config_bytes = self._small_blob(manifest.config, mf.MAX_CONFIG, "config")
        config = mf.parse_config(config_bytes, len(manifest.layers), self.where)
        diff_ids = config["rootfs"]["diff_ids"]
        chains = chain_ids(diff_ids)
        repo_digest = f"{ref.name}@{top_digest}"
        references = [ref.tagged] if ref.tag else []
        with self.store.lease([manifest.config.digest] + [d.digest for d in manifest.layers],
                              chains):
            layers = self._layers(manifest, diff_ids, chains)
            image = self.store.add_image(config_bytes, layers, references=references,
                                         manifest_bytes=body, repo_digests=[repo_digest])
        self.progress({"status": f"Digest: {top_digest}"})
        self.progress({"status": f"Status: Downloaded newer image for {ref.familiar()}"})
        return image.id

    def _small_blob(self, d: mf.Descriptor, limit: int, what: str) -> bytes:
        if self.store.blobs.has(d.digest):
            return self.store.blobs.read(d.digest)
        r = self.session.request("GET", f"/v2/{self.ref.path}/blobs/{d.digest}", scope=self.scope,
                                 what=f"{what} blob {d.digest}", stream=True)
        body = read_capped(r, min(limit, d.size), f"{self.where}: {what} {d.digest}")
        if sha256_bytes(body) != d.digest:
            raise RegistryError(f"{self.where}: {what} blob {d.digest} does not match its digest")
        return body

    # ------------------------------------------------------------------ layers
    def _layers(self, manifest: mf.ImageManifest, diff_ids: list[str], chains: list[str]
                ) -> list[Layer]:
        for d in manifest.layers:
            self.progress({"status": "Pulling fs layer", "id": _short(d.digest),
                           "progressDetail": {}})
        jobs = list(zip(manifest.layers, diff_ids, chains, strict=True))
        if not jobs:
            return []
        workers = min(PARALLEL_DOWNLOADS, len(jobs))
        with ThreadPoolExecutor(workers, thread_name_prefix="pull") as pool:
            futures = [pool.submit(self._one_layer, d, diff, [None, *chains][i])
                       for i, (d, diff, _chain) in enumerate(jobs)]
            errors = []
            results = []
            for f in futures:
                try:
                    results.append(f.result())
                except BaseException as err:
                    errors.append(err)
            if errors:
                raise errors[0]
        return results

    def _one_layer(self, d: mf.Descriptor, diff_id: str, parent_chain: str | None) -> Layer:
        sid = _short(d.digest)
        chain = diff_id if parent_chain is None else sha256_bytes(
            f"{parent_chain} {diff_id}".encode())
        if self.store.has_layer(chain) and self.store.blobs.has(d.digest):
            self.progress({"status": "Already exists", "id": sid, "progressDetail": {}})
            return self.store.unpack_layer(d.digest, diff_id, parent_chain, d.media_type)
        if not self.store.blobs.has(d.digest):
            self._download(d, sid)
        else:
            self.progress({"status": "Download complete", "id": sid, "progressDetail": {}})
        self.progress({"status": "Extracting", "id": sid,
                       "progressDetail": {"current": 0, "total": d.size}})
        layer = self.store.unpack_layer(d.digest, diff_id, parent_chain, d.media_type)
        self.progress({"status": "Pull complete", "id": sid, "progressDetail": {}})
        return layer

    def _download(self, d: mf.Descriptor, sid: str) -> None:
        """Fetch one blob into incoming/, resuming a partial file; verify; adopt."""
        partial = self.store.incoming / (d.digest.split(":", 1)[1] + ".partial")
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with contextlib.ExitStack() as stack:
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)  # another process may be fetching the same blob
            if self.store.blobs.has(d.digest):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
                return
            sha = hashlib.sha256()
            have = os.fstat(fd).st_size
            if have > d.size:
                os.ftruncate(fd, 0)
                have = 0
            if have:
                with open(os.dup(fd), "rb") as fh:  # hash what an earlier attempt kept
                    fh.seek(0)
                    remaining = have
                    while remaining:
                        chunk = fh.read(min(CHUNK, remaining))
                        if not chunk:
                            break
                        sha.update(chunk)
                        remaining -= len(chunk)
            os.lseek(fd, have, os.SEEK_SET)
            if have < d.size:
                headers = {"Range": f"bytes={have}-"} if have else {}
                r = self.session.request("GET", f"/v2/{self.ref.path}/blobs/{d.digest}",
                                         scope=self.scope, what=f"layer {d.digest}",
                                         ok=(200, 206), stream=True, headers=headers)
                with contextlib.closing(r):
                    if have and r.status_code == 200:  # the server ignored Range: start over
                        os.ftruncate(fd, 0)
                        os.lseek(fd, 0, os.SEEK_SET)
                        sha = hashlib.sha256()
                        have = 0
                    current = have
                    last = -1
                    for chunk in r.iter_content(CHUNK):
                        current += len(chunk)
                        if current > d.size:
                            os.ftruncate(fd, 0)
                            raise RegistryError(f"{self.where}: layer {d.digest} is larger than "
                                                f"the {d.size} bytes its manifest declares")
                        sha.update(chunk)
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view):]
                        if current * 20 // max(d.size, 1) != last:
                            last = current * 20 // max(d.size, 1)
                            self.progress({"status": "Downloading", "id": sid, "progressDetail": {
                                "current": current, "total": d.size}})
                have = current
            if have != d.size:
                raise RegistryError(f"{self.where}: layer {d.digest}: got {have} of {d.size} "
                                    "bytes (connection cut; the next pull resumes)")
            self.progress({"status": "Verifying Checksum", "id": sid, "progressDetail": {}})
            got = "sha256:" + sha.hexdigest()
            if got != d.digest:
                os.ftruncate(fd, 0)
                raise RegistryError(f"{self.where}: layer {d.digest} failed verification: its "
                                    f"content hashes to {got}")
            os.fsync(fd)
            self.store.blobs.adopt(partial, d.digest)
            self.progress({"status": "Download complete", "id": sid, "progressDetail": {}})

