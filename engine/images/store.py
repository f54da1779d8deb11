"""The image store: OCI blobs, an index of references, layers unpacked once.

On disk (``<engine root>/images``)::

    oci-layout, index.json     an OCI image layout (index.json lists each tag)
    blobs/sha256/<hex>         manifests, configs, compressed layers (blobs.py)
    layers/<chain hex>/diff    a layer unpacked: an overlay lower dir (unpack.py)
    layers/<chain hex>/meta.json
    state.json                 references -> image IDs, per-image bookkeeping
    tmp/, incoming/            writers' temp files, partial downloads

An image is its config blob (its ID is the config's digest, as in Docker), a
manifest listing compressed layer blobs, and the stack of unpacked layers.
Layers are keyed by *chain ID* — the digest of a layer together with all the
layers below it — because an overlay lower dir means "this diff applied on top
of exactly that stack". Two images built on the same base share the base's
directories, and a layer is deleted only when no image's chain contains it
(reference counts are computed from the images, so they cannot drift).

Crash safety (ARCHITECTURE.md rule 6): blobs and layer dirs are written under
temporary names and renamed into place; ``state.json`` is replaced atomically
and written last, under an ``flock``. So after a kill -9 the index only ever
names images whose every blob and layer is present; what remains is unreferenced
temp files (removed at the next opening when their writer's pid is dead) or
whole blobs a later pull reuses.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from engine.errors import Conflict, ImageNotFound, InvalidArgument, LayerRejected
from engine.images import reference as refs
from engine.images.blobs import (
    BlobStore,
    canonical_json,
    check_digest,
    pid_alive,
    pid_of_tmp,
    sha256_bytes,
    tmp_name,
)
from engine.images.compression import CHUNK, gzip_writer, open_decompressed
from engine.images.unpack import unpack_blob, unpack_stream

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
LAYER_MEDIA_TYPES = (MT_OCI_LAYER, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD, MT_DOCKER_LAYER,
                     "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                     "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
EMPTY_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def now_rfc3339() -> str:
    """Docker's timestamp format (nanoseconds, UTC, ``Z``)."""
    ns = time.time_ns()
    base = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ns % 1_000_000_000:09d}Z"


def parse_time(text: str | None) -> float:
    """Seconds since the epoch from an RFC 3339 string (0 when absent or malformed)."""
    if not text:
        return 0.0
    try:
        main, _, frac = text.rstrip("Z").partition(".")
        offset = ""
        for sign in ("+", "-"):
            if sign in frac:
                frac, offset = frac.split(sign, 1)[0], sign + frac.split(sign, 1)[1]
        if not frac and ("+" in main[10:] or main[10:].count("-")):
            idx = max(main.rfind("+"), main.rfind("-"))
            main, offset = main[:idx], main[idx:]
        dt = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S")
        secs = dt.replace(tzinfo=UTC).timestamp() + (float("0." + frac) if frac else 0.0)
        if offset:
            hh, mm = offset[1:].split(":") if ":" in offset else (offset[1:3], offset[3:] or "0")
            delta = int(hh) * 3600 + int(mm) * 60
            secs -= delta if offset[0] == "+" else -delta
        return secs
    except (ValueError, IndexError):
        return 0.0


def host_platform() -> tuple[str, str]:
    """(os, architecture) in OCI's words: ("linux", "amd64")."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
            "armv5tel": "arm", "i686": "386"}.get(
        machine, machine)
    return "linux", arch


def host_variant() -> str:
    """The CPU variant OCI indexes name ("v8" on arm64, "v7" on ARMv7; "" on amd64)."""
    machine = platform.machine().lower()
    return {"aarch64": "v8", "armv7l": "v7", "armv6l": "v6", "armv5tel": "v5"}.get(machine, "")


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain IDs: ChainID(L0) = DiffID(L0);
    ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(sha256_bytes(f"{out[-1]} {diff_id}".encode()))
    return out


@dataclass
class Layer:
    chain_id: str
    diff_id: str
    digest: str       # the compressed blob's digest (as in the manifest)
    size: int         # bytes of unpacked file content
    path: Path        # the unpacked directory (an overlay lower dir)
    media_type: str = MT_OCI_LAYER_GZIP
    blob_size: int = 0


@dataclass
class Image:
    id: str
    config: dict
    repo_tags: list[str]
    repo_digests: list[str]
    layers: list[Layer]
    manifest_digest: str = ""
    parent: str = ""
    last_tag_time: str = ""

    def layer_dirs(self) -> list[Path]:
        """Unpacked layer directories, BASE FIRST (reverse them for overlay's lowerdir=)."""
        return [layer.path for layer in self.layers]

    @property
    def runtime_config(self) -> dict:
        return self.config.get("config") or {}

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def created(self) -> str:
        return self.config.get("created", "")

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    def to_docker_inspect(self) -> dict:
        cfg = self.config
        lower = [str(p) for p in reversed(self.layer_dirs())]
        return {
            "Id": self.id,
            "RepoTags": [refs.familiar(t) for t in self.repo_tags],
            "RepoDigests": [refs.familiar(d) for d in self.repo_digests],
            "Parent": self.parent,
            "Comment": _last_comment(cfg),
            "Created": cfg.get("created", ""),
            "Container": cfg.get("container", ""),
            "ContainerConfig": cfg.get("container_config") or _empty_container_config(),
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": _docker_config(self.runtime_config),
            "Architecture": cfg.get("architecture", ""),
            "Variant": cfg.get("variant") or None,
            "Os": cfg.get("os", ""),
            "Size": self.size,
            "VirtualSize": self.size,
            "GraphDriver": {"Name": "overlay2", "Data": {
                "LowerDir": ":".join(lower[1:]) or None,
                "UpperDir": lower[0] if lower else None,
                "MergedDir": None, "WorkDir": None}},
            "RootFS": {"Type": "layers", "Layers": list(cfg.get("rootfs", {}).get("diff_ids", []))},
            "Metadata": {"LastTagTime": self.last_tag_time or "0001-01-01T00:00:00Z"},
        }

    def to_docker_summary(self) -> dict:
        return {
            "Id": self.id,
            "ParentId": self.parent,
            "RepoTags": [refs.familiar(t) for t in self.repo_tags],
            "RepoDigests": [refs.familiar(d) for d in self.repo_digests],
            "Created": int(parse_time(self.created)),
            "Size": self.size,
            "SharedSize": -1,
            "VirtualSize": self.size,
            "Labels": self.runtime_config.get("Labels") or {},
            "Containers": -1,
        }


def _last_comment(cfg: dict) -> str:
    history = cfg.get("history") or []
    return history[-1].get("comment", "") if history else ""


def _empty_container_config() -> dict:
    return _docker_config({})


def _docker_config(c: dict) -> dict:
    """An OCI ``config`` object in Docker's ContainerConfig shape."""
    return {
        "Hostname": "", "Domainname": "", "User": c.get("User", ""),
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "ExposedPorts": c.get("ExposedPorts"), "Tty": False, "OpenStdin": False,
        "StdinOnce": False, "Env": c.get("Env"), "Cmd": c.get("Cmd"),
        "Healthcheck": c.get("Healthcheck"), "ArgsEscaped": c.get("ArgsEscaped"),
        "Image": "", "Volumes": c.get("Volumes"), "WorkingDir": c.get("WorkingDir", ""),
        "Entrypoint": c.get("Entrypoint"), "OnBuild": c.get("OnBuild"),
        "Labels": c.get("Labels"), "StopSignal": c.get("StopSignal"),
        "Shell": c.get("Shell"),
    }


class _TeeReader:
    """Reads from ``inner`` and copies every byte into ``sink`` (compress while unpacking)."""

    def __init__(self, inner: IO[bytes], sink: IO[bytes]) -> None:
        self.inner, self.sink = inner, sink

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        if data:
            self.sink.write(data)
        return data


class ImageStore:
    """Images, references and layers under one directory (see the module docstring)."""

    def __init__(self, root: str | Path, events=None,
                 in_use: Callable[[str], list[str]] | None = None) -> None:
        self.root = Path(root)
        self.events = events
        self.in_use = in_use
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.tmp = self.root / "tmp"
        self.incoming = self.root / "incoming"
        self.layers_dir = self.root / "layers"
        self.leases_dir = self.root / "leases"
        for d in (self.tmp, self.incoming, self.layers_dir, self.leases_dir):
            d.mkdir(exist_ok=True)
        self.blobs = BlobStore(self.root, self.tmp)
        self.state_path = self.root / "state.json"
        self._tlock = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._atomic_write(layout, b'{"imageLayoutVersion":"1.0.0"}')
        self._clean_leftovers()

    # ---------------------------------------------------------------- locking and state
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across threads (RLock) and processes (flock on ``.lock``)."""
        with self._tlock:
            if self._depth == 0:
                fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._lock_fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)  # closing releases the flock
                    self._lock_fd = None

    def _atomic_write(self, path: Path, data: bytes, durable: bool = True) -> None:
        """Replace ``path`` by rename; ``durable=False`` skips the fsync (a lease, which
        means nothing once its writer is gone, as it is after a power loss)."""
        tmp = path.with_name(tmp_name(path.name))
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)

    def _load(self) -> dict:
        try:
            state = json.loads(self.state_path.read_bytes())
        except FileNotFoundError:
            state = {}
        state.setdefault("version", 1)
        state.setdefault("refs", {})
        state.setdefault("images", {})
        return state

    def _save(self, state: dict) -> None:
        """Replace state.json atomically, then the OCI index.json derived from it."""
        self._atomic_write(self.state_path, json.dumps(state, indent=1, sort_keys=True).encode())
        manifests = []
        for ref, image_id in sorted(state["refs"].items()):
            meta = state["images"].get(image_id)
            if not meta:
                continue
            r = refs.parse(ref)
            manifests.append(self._descriptor(meta["manifest"], MT_OCI_MANIFEST, {
                IMAGE_NAME: ref, REF_NAME: r.tag or "latest"}))
        self._atomic_write(self.root / "index.json", canonical_json(
            {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests}))

    def _descriptor(self, digest: str, media_type: str, annotations: dict | None = None) -> dict:
        d: dict[str, Any] = {"mediaType": media_type, "digest": digest,
                             "size": self.blobs.size(digest)}
        if annotations:
            d["annotations"] = annotations
        return d

    def _clean_leftovers(self) -> None:
        """Remove temp files and dirs whose writer (pid in the name) is gone."""
        for folder in (self.tmp, self.layers_dir, self.root, self.leases_dir):
            for entry in folder.iterdir():
                if not entry.name.startswith("."):
                    continue
                pid = pid_of_tmp(entry.name)
                if pid is None or pid_alive(pid):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def _emit(self, action: str, actor: str, **attrs: Any) -> None:
        if self.events is not None:
            self.events.emit("image", action, actor, attrs)

    # ---------------------------------------------------------------- leases
    @contextlib.contextmanager
    def lease(self, digests: list[str] = (), chain: list[str] = ()) -> Iterator[dict]:
        """Protect blobs and layers a writer is still assembling from a concurrent prune."""
        path = self.leases_dir / tmp_name("lease")
        data = {"digests": list(digests), "chains": list(chain), "path": str(path)}
        self._atomic_write(path, json.dumps(data).encode(), durable=False)
        try:
            yield data
        finally:
            path.unlink(missing_ok=True)

    def add_to_lease(self, lease: dict, digests: list[str] = (), chain: list[str] = ()) -> None:
        lease["digests"].extend(digests)
        lease["chains"].extend(chain)
        self._atomic_write(Path(lease["path"]), json.dumps(lease).encode(), durable=False)

    def _leased(self) -> tuple[set[str], set[str]]:
        digests: set[str] = set()
        chains: set[str] = set()
        for p in self.leases_dir.iterdir():
            pid = pid_of_tmp(p.name)
            if pid is None or not pid_alive(pid):
                continue
            try:
                data = json.loads(p.read_bytes())
            except (OSError, ValueError):
                continue
            digests.update(data.get("digests", []))
            chains.update(data.get("chains", []))
        return digests, chains

    # ---------------------------------------------------------------- layers
    def layer_path(self, chain_id: str) -> Path:
        return self.layers_dir / check_digest(chain_id, "chain ID").split(":", 1)[1]

    def has_layer(self, chain_id: str) -> bool:
        return (self.layer_path(chain_id) / "meta.json").exists()

    def _layer_meta(self, chain_id: str) -> dict:
        try:
            return json.loads((self.layer_path(chain_id) / "meta.json").read_bytes())
        except (OSError, ValueError):
            return {}

    def _publish_layer(self, tmpdir: Path, chain_id: str, meta: dict) -> Path:
        """Rename an unpacked temp layer into place (or drop it if one won the race).

        meta.json needs neither a temp name nor an fsync: the directory holding it
        is still temporary, and the rename publishes both (the layer's files are
        not fsynced either; kill -9 loses nothing the kernel was given).
        """
        (tmpdir / "meta.json").write_bytes(json.dumps(meta).encode())
        final = self.layer_path(chain_id)
        try:
            os.rename(tmpdir, final)
        except OSError:
            if not self.has_layer(chain_id):
                # A dir without meta.json is debris of an interrupted removal: replace it.
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmpdir, final)
            else:
                shutil.rmtree(tmpdir, ignore_errors=True)
        return final / "diff"

    def _new_layer_tmp(self) -> Path:
        tmpdir = self.layers_dir / tmp_name("layer")
        (tmpdir / "diff").mkdir(parents=True)
        os.chmod(tmpdir / "diff", 0o755)
        return tmpdir

    def unpack_layer(self, blob_digest: str, diff_id: str, parent_chain: str | None,
                     media_type: str = MT_OCI_LAYER_GZIP, *, source: IO[bytes] | None = None,
                     before_publish: Callable[[], None] | None = None) -> Layer:
        """Unpack a layer blob (once) and return it; check its diff ID.

        By default the blob is read from the store. A puller may instead pass the
        download stream as ``source`` (unpacking while downloading) and a
        ``before_publish`` callback that verifies and stores the blob: it runs
        after the content checked out and before the layer dir is published.
        """
        check_digest(diff_id, "diff ID")
        chain_id = diff_id if not parent_chain else sha256_bytes(
            f"{parent_chain} {diff_id}".encode())
        if not self.has_layer(chain_id):
            tmpdir = self._new_layer_tmp()
            try:
                with contextlib.ExitStack() as stack:
                    if source is None:
                        source = stack.enter_context(self.blobs.open(blob_digest))
                    if not hasattr(source, "peek"):  # a download reads and peeks itself
                        source = io.BufferedReader(source, CHUNK)  # type: ignore[arg-type]
                    # No gzip CRC: the diff ID check below covers the same bytes.
                    result = unpack_blob(source, tmpdir / "diff",  # type: ignore[arg-type]
                                         what=f"layer {blob_digest}", check_crc=False)
                if result.diff_id != diff_id:
                    raise LayerRejected(f"layer {blob_digest}: its content has diff ID "
                                        f"{result.diff_id}, the image config says {diff_id}")
                if before_publish is not None:
                    before_publish()
                self._publish_layer(tmpdir, chain_id, {
                    "diff_id": diff_id, "size": result.size, "digest": blob_digest,
                    "tar_size": result.tar_size, "skipped_devices": result.skipped_devices[:50]})
            except BaseException:
                shutil.rmtree(tmpdir, ignore_errors=True)
                raise
        elif before_publish is not None:
            if source is not None:
                while source.read(CHUNK):
                    pass
            before_publish()
        return self._layer_obj(chain_id, diff_id, blob_digest, media_type)

    def _layer_obj(self, chain_id: str, diff_id: str, digest: str, media_type: str) -> Layer:
        meta = self._layer_meta(chain_id)
        blob_size = self.blobs.size(digest) if self.blobs.has(digest) else 0
        return Layer(chain_id=chain_id, diff_id=diff_id, digest=digest,
                     size=int(meta.get("size", 0)), path=self.layer_path(chain_id) / "diff",
                     media_type=media_type, blob_size=blob_size)

    def _layer_from_stream(self, src: IO[bytes], parent_chain: str | None) -> Layer:
        """Unpack an (any-compression) tar stream while storing it as a gzip blob."""
        tmpdir = self._new_layer_tmp()
        writer = self.blobs.writer()
        try:
            raw = src if hasattr(src, "peek") else io.BufferedReader(src, CHUNK)  # type: ignore[arg-type]
            plain = open_decompressed(raw)  # type: ignore[arg-type]
            gz = gzip_writer(writer)  # type: ignore[arg-type]
            result = unpack_stream(_TeeReader(plain, gz), tmpdir / "diff", what="imported layer")
            gz.close()
            digest = writer.commit()
            diff_id = result.diff_id
            chain_id = diff_id if not parent_chain else sha256_bytes(
                f"{parent_chain} {diff_id}".encode())
            if not self.has_layer(chain_id):
                self._publish_layer(tmpdir, chain_id, {
                    "diff_id": diff_id, "size": result.size, "digest": digest,
                    "tar_size": result.tar_size})
            else:
                shutil.rmtree(tmpdir, ignore_errors=True)
            return self._layer_obj(chain_id, diff_id, digest, MT_OCI_LAYER_GZIP)
        except BaseException:
            writer.abort()
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise

    # ---------------------------------------------------------------- images
    def add_image(self, config_bytes: bytes, layers: list[Layer], *, references: list[str] = (),
                  manifest_bytes: bytes | None = None, repo_digests: list[str] = (),
                  parent: str = "", action: str | None = None) -> Image:
        """Record an image whose layers are unpacked: the commit point of every writer.

        Writes the config (and the manifest, built here when not given), then
        updates the index under the lock. Returns the resolved image.
        """
        config = json.loads(config_bytes)
        config_digest = self.blobs.put(config_bytes)
        if manifest_bytes is None:
            manifest = {
                "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest,
                           "size": len(config_bytes)},
                "layers": [{"mediaType": la.media_type, "digest": la.digest,
                            "size": self.blobs.size(la.digest)} for la in layers],
            }
            manifest_bytes = canonical_json(manifest)
        manifest_digest = self.blobs.put(manifest_bytes)
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        if [la.diff_id for la in layers] != list(diff_ids):
            raise InvalidArgument(f"image {config_digest}: layers do not match rootfs.diff_ids")
        parsed = [refs.parse(r) for r in references]
        with self.locked():
            for la in layers:
                if not self.has_layer(la.chain_id) or not self.blobs.has(la.digest):
                    raise Conflict(f"image {config_digest}: layer {la.chain_id} vanished while "
                                   "the image was being written (a concurrent removal); retry")
            state = self._load()
            meta = state["images"].setdefault(config_digest, {
                "manifest": manifest_digest, "repo_digests": [], "parent": parent,
                "added": now_rfc3339()})
            for d in repo_digests:
                if d not in meta["repo_digests"]:
                    meta["repo_digests"].append(d)
            tagged = []
            for r in parsed:
                if r.tag:
                    old = state["refs"].get(r.tagged)
                    state["refs"][r.tagged] = config_digest
                    meta["last_tag_time"] = now_rfc3339()
                    tagged.append((r, old))
            self._save(state)
        image = self.resolve(config_digest)
        if action:
            self._emit(action, image.id, name=references[0] if references else image.id)
        for r, old in tagged:
            if old and old != config_digest:
                self._emit("untag", old, name=r.tagged)
            if action != "tag":
                self._emit("tag", config_digest, name=r.familiar())
        return image

    def _image(self, state: dict, image_id: str) -> Image:
        meta = state["images"][image_id]
        try:
            config = json.loads(self.blobs.read(image_id))
            manifest = json.loads(self.blobs.read(meta["manifest"]))
        except (InvalidArgument, ValueError) as err:
            raise ImageNotFound(f"image {image_id} is damaged in the store: {err}") from None
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        layers = []
        for chain, diff_id, desc in zip(chain_ids(diff_ids), diff_ids, manifest.get("layers", []),
                                        strict=False):
            layers.append(self._layer_obj(chain, diff_id, desc["digest"],
                                          desc.get("mediaType", MT_OCI_LAYER_GZIP)))
        tags = sorted(r for r, i in state["refs"].items() if i == image_id)
        return Image(id=image_id, config=config, repo_tags=tags,
                     repo_digests=list(meta.get("repo_digests", [])), layers=layers,
                     manifest_digest=meta["manifest"], parent=meta.get("parent", ""),
                     last_tag_time=meta.get("last_tag_time", ""))

    def _find_id(self, state: dict, ref_or_id: str) -> str:
        text = ref_or_id.strip()
        if not text:
            raise ImageNotFound("No such image: (empty reference)")
        try:
            r = refs.parse(text)
        except InvalidArgument:
            r = None
        if r is not None:
            if r.digest:
                for image_id, meta in state["images"].items():
                    if f"{r.name}@{r.digest}" in meta.get("repo_digests", []):
                        return image_id
                    if meta.get("manifest") == r.digest and any(
                            t.startswith(r.name + ":") for t, i in state["refs"].items()
                            if i == image_id):
                        return image_id
            elif r.tagged in state["refs"]:
                return state["refs"][r.tagged]
        hexpart = text[7:] if text.startswith("sha256:") else text
        if hexpart and all(c in "0123456789abcdef" for c in hexpart) and len(hexpart) <= 64:
            matches = [i for i in state["images"] if i[7:].startswith(hexpart)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(f"image ID prefix {text!r} is ambiguous "
                                      f"({len(matches)} images match)")
        raise ImageNotFound(f"No such image: {text}")

    def resolve(self, ref_or_id: str) -> Image:
        """An image by reference (``busybox``, ``x:y``, ``name@sha256:..``) or (short) ID."""
        state = self._load()
        return self._image(state, self._find_id(state, ref_or_id))

    def exists(self, ref_or_id: str) -> bool:
        try:
            self.resolve(ref_or_id)
            return True
        except ImageNotFound:
            return False

    # ---------------------------------------------------------------- list
    def list(self, filters: dict | None = None, all: bool = False) -> list[Image]:
        """Images newest first; Docker's filters: dangling, reference, label, before, since."""
        state = self._load()
        images = [self._image(state, i) for i in state["images"]]
        filters = _normalize_filters(filters)
        hidden = set() if all else _intermediate(state)
        out = []
        for img in images:
            if img.id in hidden:
                continue
            if not self._match(img, filters, state):
                continue
            out.append(img)
        out.sort(key=lambda i: parse_time(i.created), reverse=True)
        return out

    def _match(self, img: Image, filters: dict[str, list[str]], state: dict) -> bool:
        for value in filters.get("dangling", []):
            dangling = not img.repo_tags
            if value.lower() in ("true", "1") and not dangling:
                return False
            if value.lower() in ("false", "0") and dangling:
                return False
        if filters.get("reference"):
            import fnmatch

            names = [refs.familiar(t) for t in img.repo_tags]
            ok = False
            for pattern in filters["reference"]:
                for name in names:
                    repo = name.rsplit(":", 1)[0]
                    if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(repo, pattern):
                        ok = True
            if not ok:
                return False
        labels = img.runtime_config.get("Labels") or {}
        for want in filters.get("label", []):
            key, eq, value = want.partition("=")
            if key not in labels or (eq and labels[key] != value):
                return False
        for key, cmp in (("before", lambda a, b: a < b), ("since", lambda a, b: a > b)):
            for ref in filters.get(key, []):
                other = self._image(state, self._find_id(state, ref))
                if not cmp(parse_time(img.created), parse_time(other.created)):
                    return False
        return True

    # ---------------------------------------------------------------- import / commit
    def import_rootfs(self, src, reference: str | None, config: dict | None = None,
                      comment: str = "", changes: list[str] | None = None) -> Image:
        """A one-layer image from a rootfs tarball (path, bytes or stream; any compression)."""
        ref = refs.parse(reference) if reference else None
        runtime = copy.deepcopy(config or {})
        if changes:
            from engine.images.changes import apply_changes

            runtime = apply_changes(runtime, changes)
        opened = None
        if isinstance(src, (bytes, bytearray)):
            src = io.BytesIO(bytes(src))
        elif isinstance(src, (str, Path)):
            try:
                opened = open(src, "rb")  # noqa: SIM115
            except OSError as err:
                raise InvalidArgument(f"import: cannot read {src}: {err.strerror}") from None
            src = opened
        try:
            with self.lease() as lease:
                layer = self._layer_from_stream(src, None)
                self.add_to_lease(lease, [layer.digest], [layer.chain_id])
                os_name, arch = host_platform()
                created = now_rfc3339()
                image_config = {
                    "architecture": arch, "os": os_name, "created": created,
                    "config": runtime,
                    "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
                    "history": [{"created": created, "created_by": "",
                                 "comment": comment or "Imported from tarball"}],
                }
                return self.add_image(canonical_json(image_config), [layer],
                                      references=[str(ref)] if ref else [], action="import")
        finally:
            if opened:
                opened.close()

    def commit(self, parent: Image | None, upper_dir: Path | None, *, reference: str | None,
               config: dict, created_by: str, comment: str = "", author: str = "") -> Image:
        """A child image: ``parent`` plus the overlay ``upper_dir`` as a new layer.

        ``config`` is the new runtime config (``config["config"]``: Env, Cmd, ...).
        ``upper_dir=None`` records a history step without a layer (ENV, CMD, ...).
        """
        from engine.images.diff import write_layer_tar

        ref = refs.parse(reference) if reference else None
        base = copy.deepcopy(parent.config) if parent else {}
        layers = list(parent.layers) if parent else []
        os_name, arch = host_platform()
        created = now_rfc3339()
        image_config = {k: v for k, v in base.items() if k not in (
            "container", "container_config", "docker_version")}
        image_config.setdefault("architecture", arch)
        image_config.setdefault("os", os_name)
        image_config["created"] = created
        image_config["config"] = copy.deepcopy(config)
        if author:
            image_config["author"] = author
        history = list(image_config.get("history") or [])
        step: dict[str, Any] = {"created": created, "created_by": created_by}
        if comment:
            step["comment"] = comment
        if author:
            step["author"] = author
        with self.lease([la.digest for la in layers], [la.chain_id for la in layers]) as lease:
            if upper_dir is not None:
                r_fd, w_fd = os.pipe()
                reader = os.fdopen(r_fd, "rb", buffering=CHUNK)
                errors: list[BaseException] = []

                def produce() -> None:
                    try:
                        with os.fdopen(w_fd, "wb") as out:
                            write_layer_tar(Path(upper_dir), out)
                    except BaseException as err:  # reported after the join
                        errors.append(err)

                thread = threading.Thread(target=produce, name="layer-diff", daemon=True)
                thread.start()
                try:
                    layer = self._layer_from_stream(
                        reader, layers[-1].chain_id if layers else None)
                finally:
                    reader.close()
                    thread.join()
                if errors:
                    raise errors[0]
                self.add_to_lease(lease, [layer.digest], [layer.chain_id])
                layers.append(layer)
            else:
                step["empty_layer"] = True
            history.append(step)
            image_config["history"] = history
            image_config["rootfs"] = {"type": "layers",
                                      "diff_ids": [la.diff_id for la in layers]}
            return self.add_image(canonical_json(image_config), layers,
                                  references=[str(ref)] if ref else [],
                                  parent=parent.id if parent else "", action="commit")

    def add_repo_digest(self, image_id: str, repo_digest: str) -> None:
        """Remember ``name@digest`` for an image (after a push: Docker's RepoDigests)."""
        with self.locked():
            state = self._load()
            meta = state["images"].get(image_id)
            if meta is None:
                raise ImageNotFound(f"No such image: {image_id}")
            if repo_digest not in meta["repo_digests"]:
                meta["repo_digests"].append(repo_digest)
                self._save(state)

    # ---------------------------------------------------------------- tag / remove
    def tag(self, src: str, reference: str) -> None:
        r = refs.parse(reference)
        if r.digest:
            raise InvalidArgument(f"tag: refusing to create a tag with a digest: {reference!r}")
        with self.locked():
            state = self._load()
            image_id = self._find_id(state, src)
            old = state["refs"].get(r.tagged)
            state["refs"][r.tagged] = image_id
            state["images"][image_id]["last_tag_time"] = now_rfc3339()
            self._save(state)
        if old and old != image_id:
            self._emit("untag", old, name=r.familiar())
        self._emit("tag", image_id, name=r.familiar())

    def remove(self, ref: str, force: bool = False, prune_parents: bool = True) -> list[dict]:
        """Docker's ``rmi``: untag a reference; delete the image when no tag is left.

        Refused while a container uses the image, unless ``force``. A bare ID
        with several tags is refused unless ``force`` (then every tag goes).
        Untagged parents left without children go too (``prune_parents``), as
        with ``docker rmi`` (without ``--no-prune``).
        """
        out: list[dict] = []
        deleted: list[str] = []
        with self.locked():
            state = self._load()
            image_id = self._find_id(state, ref)
            tags = sorted(t for t, i in state["refs"].items() if i == image_id)
            try:
                r = refs.parse(ref)
            except InvalidArgument:
                r = None
            via_tag = r is not None and not r.digest and state["refs"].get(r.tagged) == image_id
            if via_tag and len(tags) > 1:
                del state["refs"][r.tagged]
                self._save(state)
                out.append({"Untagged": r.familiar()})
                self._emit("untag", image_id, name=r.familiar())
                return out
            users = self.in_use(image_id) if self.in_use else []
            if users and not force:
                raise Conflict(f"unable to remove image {ref} ({image_id[7:19]}): it is used by "
                               f"container {users[0][:12]}" + (
                                   f" and {len(users) - 1} more" if len(users) > 1 else ""))
            if not via_tag and len(tags) > 1 and not force:
                raise Conflict(f"unable to delete {image_id[7:19]} (must be forced): image is "
                               f"referenced in {len(tags)} repositories")
            children = [i for i, m in state["images"].items() if m.get("parent") == image_id]
            if children:
                if not via_tag:
                    raise Conflict(f"unable to delete {image_id[7:19]} (cannot be forced): image "
                                   "has dependent child images")
                # Docker: untag; the image stays as the (hidden) parent of its children.
                for t in tags:
                    del state["refs"][t]
                    out.append({"Untagged": refs.familiar(t)})
                self._save(state)
                for item in out:
                    self._emit("untag", image_id, name=item["Untagged"])
                return out
            current = image_id
            while current:
                for t in sorted(t for t, i in state["refs"].items() if i == current):
                    del state["refs"][t]
                    out.append({"Untagged": refs.familiar(t)})
                for d in state["images"][current].get("repo_digests", []):
                    out.append({"Untagged": refs.familiar(d)})
                meta = state["images"].pop(current)
                out.append({"Deleted": current})
                deleted.append(current)
                parent = meta.get("parent", "")
                if not prune_parents or parent not in state["images"]:
                    break
                if any(i == parent for i in state["refs"].values()) or any(
                        m.get("parent") == parent for m in state["images"].values()) or (
                        self.in_use and self.in_use(parent)):
                    break
                current = parent
            self._save(state)
            self._sweep(state)
        for item in out:
            if "Untagged" in item:
                self._emit("untag", image_id, name=item["Untagged"])
            elif "Deleted" in item:
                self._emit("delete", item["Deleted"])
        return out

    def _referenced(self, state: dict) -> tuple[set[str], set[str]]:
        blobs: set[str] = set()
        chains: set[str] = set()
        for image_id, meta in state["images"].items():
            blobs.add(image_id)
            blobs.add(meta["manifest"])
            try:
                manifest = json.loads(self.blobs.read(meta["manifest"]))
                config = json.loads(self.blobs.read(image_id))
            except (InvalidArgument, ValueError):
                continue
            blobs.update(d["digest"] for d in manifest.get("layers", []))
            chains.update(chain_ids(config.get("rootfs", {}).get("diff_ids", [])))
        return blobs, chains

    def _sweep(self, state: dict) -> int:
        """Delete blobs and layers no image references (and no live writer leases).

        Called under the lock with the state just saved. Layer dirs are first
        renamed to a temp name, so a crash mid-delete leaves no half layer under
        a chain ID.
        """
        blobs, chains = self._referenced(state)
        leased_blobs, leased_chains = self._leased()
        blobs |= leased_blobs
        chains |= leased_chains
        freed = 0
        for digest in self.blobs.all():
            if digest not in blobs:
                freed += self.blobs.remove(digest)
        for entry in self.layers_dir.iterdir():
            if entry.name.startswith("."):
                continue
            chain = "sha256:" + entry.name
            if chain in chains:
                continue
            freed += int(self._layer_meta(chain).get("size", 0))
            doomed = self.layers_dir / tmp_name("rm")
            try:
                os.rename(entry, doomed)
            except OSError:
                continue
            shutil.rmtree(doomed, ignore_errors=True)
        return freed

    def prune(self, dangling_only: bool = True, filters: dict | None = None) -> dict:
        """Remove dangling images (or every image no container uses); Docker's answer shape."""
        deleted: list[dict] = []
        reclaimed = 0
        f = _normalize_filters(filters)
        for image_id in list(self._load()["images"]):
            state = self._load()  # a removal may have taken untagged parents with it
            if image_id not in state["images"]:
                continue
            img = self._image(state, image_id)
            if dangling_only and img.repo_tags:
                continue
            if self.in_use and self.in_use(image_id):
                continue
            if f.get("label") and not self._match(img, {"label": f["label"]}, state):
                continue
            if f.get("until") and parse_time(img.created) >= _until(f["until"][0]):
                continue
            try:
                items = self.remove(image_id, force=True)
            except (Conflict, ImageNotFound):
                continue
            deleted.extend(items)
            reclaimed += img.size
        with self.locked():
            self._sweep(self._load())
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def disk_usage(self, users: dict[str, int] | None = None) -> dict:
        """Figures for ``docker system df``: images with shared and unique sizes.

        Like Docker's, the list leaves out intermediate build steps (``images -a``
        shows them); the layers' total counts every layer the store holds. ``users``
        (image ID -> containers made from it) spares asking ``in_use`` image by image
        when the caller has listed the containers already."""
        state = self._load()
        images = [self._image(state, i) for i in state["images"]]
        counts: dict[str, int] = {}
        for img in images:
            for la in img.layers:
                counts[la.chain_id] = counts.get(la.chain_id, 0) + 1
        hidden = _intermediate(state)
        out = []
        layers_size = 0
        seen: set[str] = set()
        for img in images:
            for la in img.layers:
                if la.chain_id not in seen:
                    seen.add(la.chain_id)
                    layers_size += la.size
            if img.id in hidden:
                continue
            summary = img.to_docker_summary()
            shared = sum(la.size for la in img.layers if counts[la.chain_id] > 1)
            summary["SharedSize"] = shared
            if users is not None:
                summary["Containers"] = users.get(img.id, 0)
            else:
                summary["Containers"] = len(self.in_use(img.id)) if self.in_use else 0
            out.append(summary)
        blobs_size = sum(self.blobs.size(d) for d in self.blobs.all())
        return {"LayersSize": layers_size, "Images": out, "BlobsSize": blobs_size}

    def layer_refcounts(self) -> dict[str, int]:
        """How many images stack each unpacked layer (chain ID -> count)."""
        state = self._load()
        counts: dict[str, int] = {}
        for image_id in state["images"]:
            try:
                config = json.loads(self.blobs.read(image_id))
            except (InvalidArgument, ValueError):
                continue
            for chain in chain_ids(config.get("rootfs", {}).get("diff_ids", [])):
                counts[chain] = counts.get(chain, 0) + 1
        return counts

    # ---------------------------------------------------------------- history
    def history(self, ref: str) -> list[dict]:
        """Docker's ``ImageHistoryResponseItem`` list, newest first."""
        img = self.resolve(ref)
        steps = img.config.get("history") or []
        layers = list(img.layers)
        out = []
        li = 0
        for step in steps:
            size = 0
            if not step.get("empty_layer") and li < len(layers):
                size = layers[li].size
                li += 1
            out.append({"Id": "<missing>", "Created": int(parse_time(step.get("created"))),
                        "CreatedBy": step.get("created_by", ""), "Tags": None, "Size": size,
                        "Comment": step.get("comment", "")})
        if not out:
            out = [{"Id": "<missing>", "Created": int(parse_time(img.created)), "CreatedBy": "",
                    "Tags": None, "Size": img.size, "Comment": ""}]
        out.reverse()
        out[0]["Id"] = img.id
        out[0]["Tags"] = [refs.familiar(t) for t in img.repo_tags] or None
        state = self._load()
        parent = img.parent
        i = 1
        while parent and parent in state["images"] and i < len(out):
            out[i]["Id"] = parent
            tags = [refs.familiar(t) for t, v in state["refs"].items() if v == parent]
            out[i]["Tags"] = tags or None
            parent = state["images"][parent].get("parent", "")
            i += 1
        return out

    # ---------------------------------------------------------------- save / load
    def save(self, refs_: list[str], dest, format: str = "docker-archive") -> None:
        from engine.images.archive import save

        save(self, refs_, dest, format)
        for r in refs_:
            self._emit("save", self.resolve(r).id, name=r)

    def load(self, src) -> list[Image]:
        from engine.images.archive import load

        return load(self, src)

    def file_digest(self, path: Path) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        return "sha256:" + h.hexdigest()


def _normalize_filters(filters: dict | None) -> dict[str, list[str]]:
    """Docker's filter forms: {"k": ["v"]}, {"k": {"v": True}} or {"k": "v"}."""
    out: dict[str, list[str]] = {}
    for key, value in (filters or {}).items():
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, (list, tuple)):
            out[key] = [str(v) for v in value]
        elif isinstance(value, bool):
            out[key] = ["true" if value else "false"]
        else:
            out[key] = [str(value)]
    unknown = set(out) - {"dangling", "reference", "label", "before", "since", "until"}
    if unknown:
        raise InvalidArgument(f"invalid filter {sorted(unknown)[0]!r} for images")
    return out


def _until(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return parse_time(value) or time.time()


def _intermediate(state: dict) -> set[str]:
    """IDs of the intermediate build steps: untagged images that are another's parent,
    which Docker hides from ``images`` (not ``images -a``) and from ``system df``."""
    parents = {m.get("parent") for m in state["images"].values() if m.get("parent")}
    return parents.intersection(state["images"]) - set(state["refs"].values())
