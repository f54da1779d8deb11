"""Pull: manifest -> config and layers (in parallel) -> one atomic store update.

The order matters for "never half an image": blobs are downloaded into
``incoming/`` (resumable: a later pull continues a partial file with an HTTP
``Range`` request), verified against their digest, renamed into the blob store,
and unpacked into temporary layer dirs renamed into place. Only when every
layer is present does the store's index gain the image, in one atomic write.
A lease protects the blobs and layers being assembled from a concurrent
``prune``. Blobs and layers already in the store are skipped ("Already
exists"), so layers shared between images are fetched and unpacked once.

Each layer runs in its own worker thread and unpacks *while* it downloads
(one pass over the bytes): every layer at once, since hashing, decompression,
socket reads and file writes all release the GIL, and on two cores the layers'
Python work (tar headers, one call per file) is small beside them.

The compressed blob is written to its partial file with ``O_DIRECT`` where the
filesystem allows it (:class:`_PartialFile`): it is not read again soon, and
on a VM filling fresh page-cache pages costs more CPU than decompressing the
same bytes, while a direct write is DMA a thread just waits for -- a writer
thread of the partial file's own, which also hashes the blob, so that neither
the wait nor the hashing holds up the inflating. It also makes the blob's bytes
durable as they arrive, so the check before the rename is a cheap
``fdatasync`` rather than an ``fsync`` flushing megabytes. (kill -9 needs no
flush at all: a blob is renamed into place only after its digest checked out,
and the kernel keeps what a killed process wrote; the sync is for power loss.)

The bytes are copied as few times as Python allows: the socket is read
straight into ISA-L's input buffer (``http.client``'s ``readinto``), copied once
into the partial file's aligned stage, and inflated straight into the tar
reader's pool buffers. Threads hand work to each other through
:class:`~engine.images.tarstream.Channel`, whose wake-ups are made outside the GIL.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import http.client
import io
import mmap
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import requests
import urllib3

from engine.errors import ImageNotFound, LayerRejected, RegistryError
from engine.images import reference as refs
from engine.images.blobs import sha256_bytes
from engine.images.compression import CHUNK
from engine.images.store import ImageStore, Layer, chain_ids, host_platform, host_variant
from engine.images.tarstream import Channel
from engine.registry import manifest as mf
from engine.registry.transport import RegistrySession, read_capped

Progress = Callable[[dict], None]
PARALLEL_DOWNLOADS = 4
#: What a first look at a blob reads (at most): enough to tell its compression.
PEEK = 64 * 1024
#: O_DIRECT wants file offsets, lengths and buffer addresses in whole blocks.
ALIGN = 4096


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


class Puller:
    def __init__(self, store: ImageStore, session: RegistrySession, ref: refs.Reference,
                 progress: Progress, platform: str | None = None) -> None:
        #: (os, arch, variant) to choose from an index: the host's unless asked
        self.platform = mf.parse_platform(platform) if platform else (
            *host_platform(), host_variant())
        self.platform_asked = bool(platform)
        #: False once an index chose the entry for the platform (nothing left to check)
        self.check_platform = True
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
            os_name, arch, variant = self.platform
            chosen = mf.select_platform(doc, os_name, arch, self.where, variant)
            self.check_platform = False
            body, _digest, ctype = self._get_manifest(chosen.digest)
            mt, doc = mf.media_type_of(body, ctype)
            if mt not in mf.IMAGE_TYPES:
                raise RegistryError(f"{self.where}: index entry {chosen.digest} is not an image "
                                    "manifest")
        manifest = mf.parse_image_manifest(doc, mt, self.where)
        repo_digest = f"{ref.name}@{top_digest}"
        references = [ref.tagged] if ref.tag else []
        had = self._local_id(references[0] if references else repo_digest)
        with self.store.lease([manifest.config.digest] + [d.digest for d in manifest.layers]
                              ) as lease:
            config_bytes, layers = self._layers(manifest, lease)
            image = self.store.add_image(config_bytes, layers, references=references,
                                         manifest_bytes=body, repo_digests=[repo_digest])
        self.progress({"status": f"Digest: {top_digest}"})
        news = "Image is up to date" if had == image.id else "Downloaded newer image"
        self.progress({"status": f"Status: {news} for {ref.familiar()}"})
        return image.id

    def _local_id(self, reference: str) -> str | None:
        """The ID ``reference`` names here before the pull, for Docker's last line
        ("Image is up to date" when the pull changed nothing)."""
        try:
            return self.store.resolve(reference).id
        except ImageNotFound:
            return None

    def _small_blob(self, d: mf.Descriptor, limit: int, what: str) -> bytes:
        if self.store.blobs.has(d.digest):
            return self.store.blobs.read(d.digest)
        r = self.session.request("GET", f"/v2/{self.ref.path}/blobs/{d.digest}", scope=self.scope,
                                 what=f"{what} blob {d.digest}", stream=True)
        body = read_capped(r, min(limit, d.size), f"{self.where}: {what} {d.digest}")
        if sha256_bytes(body) != d.digest:
            raise RegistryError(f"{self.where}: {what} blob {d.digest} does not match its digest")
        return body

    def _config(self, manifest: mf.ImageManifest, lease: dict
                ) -> tuple[bytes, list[str], list[str]]:
        """The config blob, its diff IDs and their chain IDs (added to the lease)."""
        config_bytes = self._small_blob(manifest.config, mf.MAX_CONFIG, "config")
        config = mf.parse_config(config_bytes, len(manifest.layers), self.where)
        if self.check_platform:
            self._check_platform(config)
        diff_ids = config["rootfs"]["diff_ids"]
        chains = chain_ids(diff_ids)
        self.store.add_to_lease(lease, chain=chains)
        return config_bytes, diff_ids, chains

    def _check_platform(self, config: dict) -> None:
        """A single-platform image says its platform only in its config, checked here as
        Docker checks it: refused when another platform was asked for (``--platform``),
        pulled with a warning when the host's was only assumed."""
        os_name, arch, variant = self.platform
        got = (str(config.get("os") or ""), str(config.get("architecture") or ""),
               str(config.get("variant") or ""))
        fits = got[:2] == (os_name, arch) and (
            mf.variant_number(arch, got[2]) <= mf.variant_number(arch, variant))
        if fits:
            return
        actual = "/".join(filter(None, got)) or "unknown"
        wanted = "/".join(filter(None, self.platform))
        if self.platform_asked:
            raise ImageNotFound(f"image with reference {self.ref.familiar()} was found but "
                                f"does not match the specified platform: wanted {wanted}, "
                                f"actual: {actual}")
        self.progress({"status": f"WARNING: The requested image's platform ({actual}) does "
                                 f"not match the detected host platform ({wanted}) and no "
                                 "specific platform was requested"})

    # ------------------------------------------------------------------ layers
    def _layers(self, manifest: mf.ImageManifest, lease: dict) -> tuple[bytes, list[Layer]]:
        """The config and every layer, fetched at once (as Docker does).

        A layer whose blob is missing sends its request before the config has
        arrived; what needs the diff IDs (the "Already exists" check, the unpack)
        waits for it.
        """
        for d in manifest.layers:
            self.progress({"status": "Pulling fs layer", "id": _short(d.digest),
                           "progressDetail": {}})
        workers = min(PARALLEL_DOWNLOADS, len(manifest.layers)) + 1
        with ThreadPoolExecutor(workers, thread_name_prefix="pull") as pool:
            config = pool.submit(self._config, manifest, lease)
            futures = [pool.submit(self._one_layer, i, d, config)
                       for i, d in enumerate(manifest.layers)]
            errors = []
            results = []
            for f in futures:
                try:
                    results.append(f.result())
                except BaseException as err:
                    errors.append(err)
            if config.exception() is not None:
                raise config.exception()
            if errors:
                raise errors[0]
        return config.result()[0], results

    def _one_layer(self, i: int, d: mf.Descriptor, config: Future) -> Layer:
        sid = _short(d.digest)
        with contextlib.ExitStack() as stack:
            fetch = None
            if not self.store.blobs.has(d.digest):
                fetch = stack.enter_context(_BlobFetch(self, d, sid))
                if fetch.needed:  # else another process fetched it while we waited for the flock
                    fetch.start()
                else:
                    fetch = None
            _config, diff_ids, chains = config.result()
            diff_id, parent_chain = diff_ids[i], chains[i - 1] if i else None
            if fetch is None and self.store.has_layer(chains[i]):
                self.progress({"status": "Already exists", "id": sid, "progressDetail": {}})
                return self.store.unpack_layer(d.digest, diff_id, parent_chain, d.media_type)
            self.progress({"status": "Extracting", "id": sid,
                           "progressDetail": {"current": 0, "total": d.size}})
            if fetch is not None:
                layer = self._stream_unpack(fetch, d, diff_id, parent_chain)
            else:
                layer = self.store.unpack_layer(d.digest, diff_id, parent_chain, d.media_type)
        self.progress({"status": "Pull complete", "id": sid, "progressDetail": {}})
        return layer

    def _stream_unpack(self, fetch: _BlobFetch, d: mf.Descriptor, diff_id: str,
                       parent_chain: str | None) -> Layer:
        try:
            return self.store.unpack_layer(d.digest, diff_id, parent_chain, d.media_type,
                                           source=fetch, before_publish=fetch.complete)
        except LayerRejected:
            # Bad content may be a bad download: if the blob fails its digest, say that.
            try:
                fetch.drain()
                fetch.complete()
            except RegistryError as err:
                raise err from None
            except Exception:
                pass
            raise


class _BlobFetch(io.RawIOBase):
    """One layer blob fetched into ``incoming/<hex>.partial``, readable as it arrives.

    Reading yields the blob from its start: first what an interrupted earlier
    attempt kept in the partial file, then the rest from the registry (an HTTP
    ``Range`` request). Every byte is appended to the partial file and hashed;
    :meth:`complete` verifies size and digest and renames the file into the
    blob store. An ``flock`` on the partial file keeps two processes from
    fetching the same blob at once.
    """

    def __init__(self, puller: Puller, d: mf.Descriptor, sid: str) -> None:
        super().__init__()
        self.p = puller
        self.d = d
        self.sid = sid
        self.partial = puller.store.incoming / (d.digest.split(":", 1)[1] + ".partial")
        self.fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.needed = not puller.store.blobs.has(d.digest)
        if not self.needed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.partial)
        self.kept = os.fstat(self.fd).st_size
        if self.kept > d.size:
            os.ftruncate(self.fd, 0)
            self.kept = 0
        self.pos = 0              # bytes handed to the reader so far
        self.sha = hashlib.sha256()  # updated by the partial file's writer thread
        self.out = _PartialFile(self.fd, self.kept, self.sha) if self.needed else None
        self.response = None
        self.chunks = None
        self.fp: http.client.HTTPResponse | None = None  # read into buffers when set
        self.skip = 0             # bytes to drop from a 200 answer that ignored Range
        self.pending = b""
        self.peeked = b""         # read by peek(), not yet by read()
        self.last = -1
        self.done = False
        self.synced = False

    def readable(self) -> bool:
        return True

    def start(self) -> None:
        """Send the request now, if bytes are missing (its answer is read later)."""
        if self.chunks is None and self.kept < self.d.size:
            self._open()

    def _open(self) -> None:
        headers = {"Range": f"bytes={self.kept}-"} if self.kept else {}
        self.response = self.p.session.request(
            "GET", f"/v2/{self.p.ref.path}/blobs/{self.d.digest}", scope=self.p.scope,
            what=f"layer {self.d.digest}", ok=(200, 206), stream=True, headers=headers)
        if self.kept and self.response.status_code == 200:
            self.skip = self.kept  # the server ignored Range: drop what we already have
        elif self.kept:
            self.p.progress({"status": "Resuming download", "id": self.sid,
                             "progressDetail": {"current": self.kept, "total": self.d.size}})
        encoding = self.response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            # Straight from http.client: one read, no copy into requests' and urllib3's buffers.
            raw = self.response.raw
            self.chunks = iter(lambda: raw.read(CHUNK, decode_content=False), b"")
            fp = getattr(raw, "_fp", None)  # urllib3's http.client response, for readinto
            if isinstance(fp, http.client.HTTPResponse) and not self.skip:
                self.fp = fp
        else:  # a proxy compressed the blob again for the wire: let requests undo that
            self.chunks = self.response.iter_content(CHUNK)

    def _network(self) -> bytes:
        if self.chunks is None:
            self._open()
        while True:
            try:
                chunk = next(self.chunks, b"")
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
                raise self._lost(err) from None
            if not chunk or not self.skip:
                return chunk
            drop = min(self.skip, len(chunk))
            self.skip -= drop
            chunk = chunk[drop:]
            if chunk:
                return chunk

    def peek(self, n: int = 1) -> bytes:
        """The next bytes without consuming them (what ``open_decompressed`` sniffs).

        From the socket, what has arrived (``read1``), not a whole chunk: the
        unpacking can start with the first packets instead of waiting for a MiB.
        """
        if not self.peeked:
            if self.chunks is None and self.kept <= self.pos < self.d.size:
                self._open()
            if (self.fp is not None and not self.pending and not self.skip
                    and self.kept <= self.pos < self.d.size):
                try:
                    data = self.fp.read1(min(PEEK, self.d.size - self.pos + 1))
                except (http.client.HTTPException, OSError) as err:
                    raise self._lost(err) from None
                self._account(data)
                self.peeked = data
            else:
                self.peeked = self._next(CHUNK)
        return self.peeked

    def read(self, n: int = -1) -> bytes:
        """The next piece of the blob, at most ``n`` bytes (b"" at its end).

        The bytes object a socket read made, as it is: no copy into a buffer of
        a BufferedReader and out again (two copies of every byte, under the GIL).
        """
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        if self.peeked:
            data = self.peeked
            if len(data) > n:
                data, self.peeked = data[:n], data[n:]
            else:
                self.peeked = b""
            return data
        return self._next(n)

    def readinto(self, b) -> int:
        """Into ``b`` (ISA-L's input buffer): from the socket itself, when nothing is pending,
        so the bytes are copied once (to the partial file's stage), not three times."""
        if self.chunks is None and self.kept <= self.pos < self.d.size:
            self._open()
        if (self.fp is None or self.peeked or self.pending or self.skip
                or self.pos < self.kept or self.pos >= self.d.size):
            data = self.read(len(b))
            b[:len(data)] = data
            return len(data)
        # One byte more than the manifest declares is asked for, to notice a longer blob.
        view = memoryview(b).cast("B")[:min(len(b), self.d.size - self.pos + 1)]
        try:
            n = self.fp.readinto(view)
        except (http.client.HTTPException, OSError) as err:
            raise self._lost(err) from None
        self._account(view[:n])
        return n

    def _lost(self, err: BaseException) -> RegistryError:
        return RegistryError(f"{self.p.where}: layer {self.d.digest}: connection lost "
                             f"after {self.pos} of {self.d.size} bytes "
                             f"({type(err).__name__}; the next pull resumes)")

    def _next(self, n: int) -> bytes:
        if self.pos < self.kept:  # replay the partial file
            data = os.pread(self.fd, min(n, self.kept - self.pos), self.pos)
            if not data:
                raise RegistryError(f"{self.p.where}: partial download of {self.d.digest} "
                                    "shrank while reading it")
            self.out.hash(data)
        elif self.pos >= self.d.size and not self.pending:
            data = b""  # all there (e.g. kept whole by an attempt killed before the rename)
        else:
            data = self.pending or self._network()
            self.pending = b""
            if len(data) > n:
                data, self.pending = data[:n], data[n:]
            self._account(data)
            return data
        self._advance(data)
        return data

    def _account(self, data: bytes | memoryview) -> None:
        """Bytes from the network: checked against the declared size, staged, counted."""
        if data:
            if self.pos + len(data) > self.d.size:
                self._discard()
                raise RegistryError(f"{self.p.where}: layer {self.d.digest} is larger than "
                                    f"the {self.d.size} bytes its manifest declares")
            self.out.write(data)
        elif self.pos != self.d.size:
            raise RegistryError(f"{self.p.where}: layer {self.d.digest}: got {self.pos} of "
                                f"{self.d.size} bytes (connection cut; the next pull "
                                "resumes)")
        self._advance(data)

    def _advance(self, data: bytes | memoryview) -> None:
        self.pos += len(data)
        if data and self.pos == self.d.size and self.pos > self.kept:
            # All here: the writer syncs now, while the unpacker finishes.
            self.out.finish()
            self.synced = True
        step = self.pos * 20 // max(self.d.size, 1)
        if data and step != self.last:
            self.last = step
            self.p.progress({"status": "Downloading", "id": self.sid, "progressDetail": {
                "current": self.pos, "total": self.d.size}})

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def complete(self) -> None:
        """Verify the whole blob and move it into the store (idempotent)."""
        if self.done:
            return
        if self.pos != self.d.size or self.peeked:
            self.drain()
        self.p.progress({"status": "Verifying Checksum", "id": self.sid, "progressDetail": {}})
        if not self.synced:  # cheap after direct writes; the rename must not outrun the data
            self.out.finish()
            self.synced = True
        self.out.wait()  # every byte hashed, written and synced
        got = "sha256:" + self.sha.hexdigest()
        if got != self.d.digest:
            self._discard()
            raise RegistryError(f"{self.p.where}: layer {self.d.digest} failed verification: "
                                f"its content hashes to {got}")
        self.p.store.blobs.adopt(self.partial, self.d.digest)
        self.done = True
        self.p.progress({"status": "Download complete", "id": self.sid, "progressDetail": {}})

    def release(self) -> None:
        """Close the connection and the partial file (which releases the flock).

        Not ``close()``: the BufferedReader the unpacker wraps around this
        object closes it when dropped, while the blob still has to be verified.
        """
        if self.response is not None:
            self.response.close()
            self.response = None
        if self.out is not None:
            if not self.done:
                with contextlib.suppress(OSError):  # keep what arrived, for the next pull
                    self.out.flush()
            self.out.close()
            self.out = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _discard(self) -> None:
        """Bad bytes: empty the partial file, so that no later pull resumes from them."""
        self.out.discard()
        os.ftruncate(self.fd, 0)

    def __exit__(self, *exc) -> None:
        self.release()
        self.close()


class _PartialFile:
    """Appends to a partial download (and hashes it) on a writer thread, bypassing the page
    cache where it can.

    Bytes are staged in page-aligned buffers and written in whole blocks with
    ``O_DIRECT``, at block-aligned offsets; less than a block waits for the next
    append or :meth:`flush` (an ordinary write). A direct write returns only when
    the device has the data (about 2 ms a MiB here): on the thread that also
    inflates, that wait was a third of a layer's time. So one thread per file
    takes the staged buffers in order, hashes them (the blob's digest; hashlib
    releases the GIL) and writes them, while the caller goes on reading and
    inflating; a few buffers in flight bound the memory. One writer, one order:
    the file is always a prefix of the blob, lagging what was received.

    A partial file kept by an earlier attempt may end mid-block: its first block
    is completed with an ordinary write. A filesystem that refuses ``O_DIRECT``
    (tmpfs, some overlays) gets ordinary writes throughout. An error on the
    writer thread is raised by the next call here.
    """

    STAGE = CHUNK + ALIGN
    #: staged buffers per file: one filling, the others being hashed and written
    DEPTH = 3
    #: Buffers of finished downloads, for the next ones: touching a fresh mapping's pages
    #: costs a fault per 4 KiB, more than the copies into it.
    _spare: list[mmap.mmap] = []
    _spare_lock = threading.Lock()

    def __init__(self, fd: int, offset: int, sha) -> None:
        self.fd = fd            # the ordinary descriptor: heads, tails, truncation
        self.offset = offset    # where the first staged byte goes in the file
        self.sha = sha          # updated on the writer thread, in stream order
        self.buffers: list[mmap.mmap] = []
        self.free = Channel()     # buffers the writer is done with
        with self._spare_lock:
            while self._spare and len(self.buffers) < self.DEPTH:
                self.buffers.append(self._spare.pop())
        while len(self.buffers) < self.DEPTH:
            self.buffers.append(mmap.mmap(-1, self.STAGE,
                                          flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS))
        for buf in self.buffers[1:]:
            self.free.put(buf)
        self.stage = self.buffers[0]
        self.view = memoryview(self.stage)
        self.fill = 0
        try:  # the same open file again (not the path: it may be renamed), direct this time
            self.direct = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
        except OSError:
            self.direct = -1
        self.error: BaseException | None = None
        self.jobs = Channel()     # for the writer, in stream order
        self.done = Channel()     # the writer's answers to barriers
        self.thread = threading.Thread(target=self._run, name="blob-write", daemon=True)
        self.thread.start()

    # -- the caller's side ---------------------------------------------------------------
    def hash(self, data: bytes) -> None:
        """Hash bytes that are already in the file (an earlier attempt's), in order."""
        self._submit(("hash", data))

    def write(self, data: bytes) -> None:
        """Append ``data``; whole blocks are handed to the writer at once."""
        src = memoryview(data)
        while src:
            n = min(len(src), self.STAGE - self.fill)
            self.view[self.fill:self.fill + n] = src[:n]
            self.fill += n
            src = src[n:]
            self._drain(final=False)

    def flush(self) -> None:
        """Write out everything staged (the tail too) and wait until it is in the file."""
        self._drain(final=True)
        self.wait()

    def finish(self) -> None:
        """All bytes are here: write the tail and ``fdatasync`` on the writer, not waiting."""
        self._drain(final=True)
        self._submit(("sync",))

    def wait(self) -> None:
        """Until every job handed over is done; raise the writer's error if it had one."""
        if self.thread.is_alive():
            self.jobs.put(("barrier",))
            self.done.get()
        if self.error is not None:
            raise self.error

    def _submit(self, job: tuple) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put(job)

    def _drain(self, final: bool) -> None:
        while self.fill:
            head = -self.offset % ALIGN  # bytes up to the next block boundary
            if self.direct >= 0 and not head and self.fill >= ALIGN:
                n = self.fill - self.fill % ALIGN
                job = "direct"
            elif self.direct >= 0 and head:
                n = min(self.fill, head)
                job = "plain"
            elif final or self.direct < 0:
                n = self.fill
                job = "plain"
            else:
                return  # less than a block: it waits for more
            if self.error is not None:
                raise self.error
            nxt = self.free.get()  # a buffer back from the writer: memory stays bounded
            rest = self.fill - n
            if rest:  # the unaligned remainder starts the next buffer
                nxt[:rest] = self.view[n:self.fill]
            self._submit((job, self.stage, n, self.offset))
            self.view.release()
            self.stage, self.view = nxt, memoryview(nxt)
            self.offset += n
            self.fill = rest

    def discard(self) -> None:
        """Forget what is staged or in flight; the caller truncates the file."""
        with contextlib.suppress(Exception):
            self.wait()
        self.fill = 0
        self.offset = 0

    def close(self) -> None:
        """Stop the writer; release the buffers and the direct descriptor (not ``fd``)."""
        if self.thread.is_alive():
            self.jobs.put(None)
            self.thread.join()
        for channel in (self.jobs, self.free, self.done):
            channel.close()
        self.view.release()
        with self._spare_lock:
            for buf in self.buffers:
                if len(self._spare) < PARALLEL_DOWNLOADS * self.DEPTH:
                    self._spare.append(buf)
                else:
                    with contextlib.suppress(BufferError):
                        buf.close()
        self.buffers = []
        if self.direct >= 0:
            os.close(self.direct)
            self.direct = -1

    # -- the writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                if job[0] == "barrier":
                    self.done.put(True)
                elif self.error is None:
                    self._do(job)
            except BaseException as err:  # raised to the caller by its next call
                self.error = err.with_traceback(None)  # no frames holding the buffers
            finally:
                if job[0] in ("direct", "plain"):
                    self.free.put(job[1])

    def _do(self, job: tuple) -> None:
        kind = job[0]
        if kind == "hash":
            self.sha.update(job[1])
            return
        if kind == "sync":
            os.fdatasync(self.fd)
            return
        _kind, buf, n, offset = job
        data = memoryview(buf)[:n]
        self.sha.update(data)
        done = 0
        while done < n:
            if kind == "direct" and self.direct >= 0:
                try:
                    done += os.pwrite(self.direct, data[done:], offset + done)
                    continue
                except OSError as err:
                    if err.errno != errno.EINVAL:
                        raise
                    # The filesystem wants other alignment: plain writes from now on.
                    os.close(self.direct)
                    self.direct = -1
            done += os.pwrite(self.fd, data[done:], offset + done)
