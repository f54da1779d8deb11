"""``docker save`` / ``docker load``: images as one tar file, in two dialects.

* **docker-archive** (what ``docker save`` has always written and skopeo
  reads as ``docker-archive:``): ``manifest.json`` lists, per image, its config
  file, its tags and its layer tars (uncompressed) in order; ``repositories``
  is the legacy tag map.
* **oci-archive**: an OCI image layout (``oci-layout``, ``index.json``,
  ``blobs/sha256/...``) packed in a tar, as skopeo's ``oci-archive:`` reads it.
  Each tag is an ``index.json`` entry with ``org.opencontainers.image.ref.name``
  (the tag) and ``io.containerd.image.name`` (the full name), like Docker 25.

Loading reads both (and Docker 25's combined form), treating the archive as
hostile: it is never extracted to disk. Only the members the manifests name are
read, every blob is checked against its digest, every layer goes through the
safe applier, and each layer's diff ID must match the config's
``rootfs.diff_ids``. Nothing is indexed until all of an image's layers are in.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO

from engine.errors import ImageNotFound, InvalidArgument, LayerRejected
from engine.images import reference as refs
from engine.images.blobs import DIGEST_RE, canonical_json, sha256_bytes
from engine.images.compression import CHUNK, open_decompressed
from engine.images.store import (
    IMAGE_NAME,
    MT_DOCKER_LAYER,
    MT_DOCKER_LIST,
    MT_OCI_CONFIG,
    MT_OCI_INDEX,
    MT_OCI_LAYER_GZIP,
    MT_OCI_MANIFEST,
    REF_NAME,
    Image,
    ImageStore,
    Layer,
    chain_ids,
    host_platform,
)

MAX_JSON = 8 * 1024 * 1024
FORMATS = ("docker-archive", "oci-archive")


# ---------------------------------------------------------------------------------- save
def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, mtime
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
    tar.addfile(info)


class _Counted(io.RawIOBase):
    """A readable view of a decompressed stream (tarfile.addfile needs .read)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.inner.read(len(b))
        b[:len(data)] = data
        return len(data)


def _uncompressed_size(store: ImageStore, layer: Layer) -> int:
    meta = store._layer_meta(layer.chain_id)
    if "tar_size" in meta:
        return int(meta["tar_size"])
    total = 0
    with store.blobs.open(layer.digest) as fh:
        stream = open_decompressed(io.BufferedReader(fh, CHUNK))
        while chunk := stream.read(CHUNK):
            total += len(chunk)
    return total


def _oci_manifest(store: ImageStore, image: Image) -> bytes:
    """The image's manifest, converted to OCI media types when it is Docker's schema2."""
    raw = store.blobs.read(image.manifest_digest)
    manifest = json.loads(raw)
    if manifest.get("mediaType", MT_OCI_MANIFEST) == MT_OCI_MANIFEST:
        return raw
    manifest["mediaType"] = MT_OCI_MANIFEST
    manifest["config"]["mediaType"] = MT_OCI_CONFIG
    for d in manifest["layers"]:
        if d["mediaType"] == MT_DOCKER_LAYER:
            d["mediaType"] = MT_OCI_LAYER_GZIP
    return canonical_json(manifest)


def save(store: ImageStore, references: list[str], dest, format: str = "docker-archive") -> None:
    """Write the images named by ``references`` to ``dest`` (a path or a binary stream)."""
    if format not in FORMATS:
        raise InvalidArgument(f"save: unknown format {format!r} (use one of {', '.join(FORMATS)})")
    if not references:
        raise InvalidArgument("save: no image given")
    images: list[tuple[Image, list[str]]] = []
    for r in references:
        img = store.resolve(r)
        try:
            parsed = refs.parse(r)
            tags = [parsed.tagged] if parsed.tag and not parsed.digest and parsed.tagged in \
                img.repo_tags else []
        except InvalidArgument:
            tags = []
        found = next((x for x in images if x[0].id == img.id), None)
        if found:
            found[1].extend(t for t in tags if t not in found[1])
        else:
            images.append((img, tags))
    own = isinstance(dest, (str, Path))
    out: IO[bytes] = open(dest, "wb") if own else dest  # noqa: SIM115
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            if format == "docker-archive":
                _save_docker(store, images, tar)
            else:
                _save_oci(store, images, tar)
    except BaseException:
        if own:
            out.close()
            Path(dest).unlink(missing_ok=True)
        raise
    if own:
        out.close()


def _save_docker(store: ImageStore, images: list[tuple[Image, list[str]]],
                 tar: tarfile.TarFile) -> None:
    now = int(time.time())
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    for img, tags in images:
        config_name = img.id[7:] + ".json"
        if config_name not in written:
            _add_bytes(tar, config_name, store.blobs.read(img.id), now)
            written.add(config_name)
        layer_names = []
        for layer in img.layers:
            name = layer.diff_id[7:] + ".tar"
            layer_names.append(name)
            if name in written:
                continue
            written.add(name)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = _uncompressed_size(store, layer), 0o644, now
            with store.blobs.open(layer.digest) as fh:
                stream = open_decompressed(io.BufferedReader(fh, CHUNK))
                tar.addfile(info, io.BufferedReader(_Counted(stream), CHUNK))
        familiar = [refs.familiar(t) for t in tags]
        manifest.append({"Config": config_name, "RepoTags": familiar or None,
                         "Layers": layer_names})
        for t in familiar:
            name, _, tag = t.rpartition(":")
            repositories.setdefault(name, {})[tag] = layer_names[-1][:-4] if layer_names else ""
    _add_bytes(tar, "manifest.json", json.dumps(manifest).encode(), now)
    _add_bytes(tar, "repositories", json.dumps(repositories).encode(), now)


def _save_oci(store: ImageStore, images: list[tuple[Image, list[str]]],
              tar: tarfile.TarFile) -> None:
    now = int(time.time())
    _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', now)
    _add_dir(tar, "blobs", now)
    _add_dir(tar, "blobs/sha256", now)
    written: set[str] = set()
    entries = []

    def blob_file(digest: str) -> None:
        if digest in written:
            return
        written.add(digest)
        path = store.blobs.path(digest)
        info = tarfile.TarInfo("blobs/sha256/" + digest[7:])
        info.size, info.mode, info.mtime = path.stat().st_size, 0o644, now
        with open(path, "rb") as fh:
            tar.addfile(info, fh)

    for img, tags in images:
        manifest = _oci_manifest(store, img)
        mdigest = sha256_bytes(manifest)
        for layer in img.layers:
            blob_file(layer.digest)
        blob_file(img.id)
        if mdigest not in written:
            written.add(mdigest)
            _add_bytes(tar, "blobs/sha256/" + mdigest[7:], manifest, now)
        os_name, arch = img.config.get("os", "linux"), img.config.get("architecture", "amd64")
        base = {"mediaType": MT_OCI_MANIFEST, "digest": mdigest, "size": len(manifest),
                "platform": {"os": os_name, "architecture": arch}}
        if not tags:
            entries.append(base)
        for t in tags:
            r = refs.parse(t)
            entries.append(dict(base, annotations={IMAGE_NAME: r.familiar(),
                                                   REF_NAME: r.tag or "latest"}))
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries}
    _add_bytes(tar, "index.json", json.dumps(index).encode(), now)


# ---------------------------------------------------------------------------------- load
class _Archive:
    """Random access to a (hostile) tar's regular members by cleaned name."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in tar.getmembers():
            name = os.path.normpath(m.name.lstrip("/")) if m.name else ""
            if m.isreg() and not name.startswith(".."):
                self.members[name] = m

    def has(self, name: str) -> bool:
        return os.path.normpath(name.lstrip("/")) in self.members

    def open(self, name: str) -> IO[bytes]:
        key = os.path.normpath(str(name).lstrip("/"))
        m = self.members.get(key)
        if m is None:
            raise InvalidArgument(f"load: the archive has no file {name!r}")
        return self.tar.extractfile(m)  # type: ignore[return-value]

    def read(self, name: str, limit: int = MAX_JSON) -> bytes:
        key = os.path.normpath(str(name).lstrip("/"))
        m = self.members.get(key)
        if m is None:
            raise InvalidArgument(f"load: the archive has no file {name!r}")
        if m.size > limit:
            raise InvalidArgument(f"load: {name} is {m.size} bytes, more than {limit}")
        return self.open(name).read()

    def json(self, name: str):
        try:
            return json.loads(self.read(name))
        except ValueError:
            raise InvalidArgument(f"load: {name} in the archive is not JSON") from None


def load(store: ImageStore, src) -> list[Image]:
    """Load every image of a docker-archive or OCI archive (path or stream)."""
    tmpfile = None
    if isinstance(src, (str, Path)):
        path = Path(src)
    elif hasattr(src, "seek") and hasattr(src, "seekable") and src.seekable():
        path = None
    else:  # a pipe or an upload: spool it, since manifest.json may come last
        tmpfile = tempfile.NamedTemporaryFile(dir=store.tmp, prefix=".spool-", delete=False)  # noqa: SIM115
        with tmpfile:
            shutil.copyfileobj(src, tmpfile, CHUNK)
        path = Path(tmpfile.name)
    try:
        try:
            tar = tarfile.open(path, "r:*") if path else tarfile.open(  # noqa: SIM115
                fileobj=src, mode="r:*")
        except (tarfile.TarError, OSError) as err:
            raise InvalidArgument(f"load: not a tar archive ({err})") from None
        with tar:
            archive = _Archive(tar)
            if archive.has("manifest.json"):
                images = _load_docker(store, archive)
            elif archive.has("index.json"):
                images = _load_oci(store, archive)
            else:
                raise InvalidArgument("load: the archive has neither manifest.json (docker-archive)"
                                      " nor index.json (OCI)")
    finally:
        if tmpfile is not None:
            Path(tmpfile.name).unlink(missing_ok=True)
    for img in images:
        store._emit("load", img.id, name=(img.repo_tags or [img.id])[0])
    return images


def _layer_from_member(store: ImageStore, archive: _Archive, name: str, diff_id: str,
                       parent_chain: str | None) -> Layer:
    chain = diff_id if parent_chain is None else sha256_bytes(f"{parent_chain} {diff_id}".encode())
    if store.has_layer(chain):
        digest = store._layer_meta(chain).get("digest", "")
        if digest and store.blobs.has(digest):
            return store._layer_obj(chain, diff_id, digest, MT_OCI_LAYER_GZIP)
    layer = store._layer_from_stream(io.BufferedReader(archive.open(name), CHUNK), parent_chain)
    if layer.diff_id != diff_id:
        raise LayerRejected(f"load: layer {name} has diff ID {layer.diff_id}, the config says "
                            f"{diff_id}")
    return layer


def _load_docker(store: ImageStore, archive: _Archive) -> list[Image]:
    manifest = archive.json("manifest.json")
    if not isinstance(manifest, list):
        raise InvalidArgument("load: manifest.json is not a list")
    out = []
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise InvalidArgument("load: a manifest.json entry lacks Config or Layers")
        config_bytes = archive.read(entry["Config"])
        config = json.loads(config_bytes)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(entry["Layers"]) or not all(
                isinstance(d, str) and DIGEST_RE.match(d) for d in diff_ids):
            raise InvalidArgument(f"load: {entry['Config']}: rootfs.diff_ids do not match the "
                                  f"{len(entry['Layers'])} layers")
        tags = []
        for t in entry.get("RepoTags") or []:
            tags.append(str(refs.parse(t)))
        with store.lease(chain=chain_ids(diff_ids)) as lease:
            layers: list[Layer] = []
            for name, diff_id in zip(entry["Layers"], diff_ids, strict=True):
                layer = _layer_from_member(store, archive, name, diff_id,
                                           layers[-1].chain_id if layers else None)
                store.add_to_lease(lease, [layer.digest])
                layers.append(layer)
            out.append(store.add_image(config_bytes, layers, references=tags))
    return out


def _load_oci(store: ImageStore, archive: _Archive) -> list[Image]:
    index = archive.json("index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise InvalidArgument("load: index.json has no manifests list")
    out = []

    def blob(digest: str, limit: int = MAX_JSON) -> bytes:
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise InvalidArgument(f"load: bad digest {str(digest)[:80]!r}")
        data = archive.read(f"blobs/sha256/{digest[7:]}", limit)
        if sha256_bytes(data) != digest:
            raise InvalidArgument(f"load: blob {digest} does not match its digest")
        return data

    for desc in entries:
        if not isinstance(desc, dict):
            continue
        annotations = desc.get("annotations") or {}
        manifest_bytes = blob(desc.get("digest"))
        manifest = json.loads(manifest_bytes)
        mt = desc.get("mediaType") or manifest.get("mediaType")
        if mt in (MT_OCI_INDEX, MT_DOCKER_LIST):
            os_name, arch = host_platform()
            chosen = next((m for m in manifest.get("manifests", [])
                           if (m.get("platform") or {}).get("architecture") == arch
                           and (m.get("platform") or {}).get("os") == os_name), None)
            if chosen is None:
                raise InvalidArgument(f"load: no {os_name}/{arch} image in index "
                                      f"{desc.get('digest')}")
            manifest_bytes = blob(chosen.get("digest"))
            manifest = json.loads(manifest_bytes)
        config_bytes = blob(manifest["config"]["digest"])
        config = json.loads(config_bytes)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        layer_descs = manifest.get("layers") or []
        if len(diff_ids) != len(layer_descs):
            raise InvalidArgument("load: the manifest's layers and the config's diff_ids differ")
        name = annotations.get(IMAGE_NAME) or annotations.get(REF_NAME) or ""
        tags = []
        if name and ("/" in name or ":" in name) and refs.is_reference(name):
            tags = [str(refs.parse(name))]
        with store.lease(chain=chain_ids(diff_ids)) as lease:
            layers = []
            for d, diff_id in zip(layer_descs, diff_ids, strict=True):
                digest = d.get("digest")
                if not isinstance(digest, str) or not DIGEST_RE.match(digest):
                    raise InvalidArgument(f"load: bad layer digest {str(digest)[:80]!r}")
                if not store.blobs.has(digest):
                    with store.blobs.writer() as w, contextlib.closing(
                            archive.open(f"blobs/sha256/{digest[7:]}")) as fh:
                        while chunk := fh.read(CHUNK):
                            w.write(chunk)
                        try:
                            w.commit(digest)
                        except InvalidArgument:
                            raise InvalidArgument(f"load: layer blob {digest} does not match "
                                                  "its digest") from None
                store.add_to_lease(lease, [digest])
                layers.append(store.unpack_layer(digest, diff_id,
                                                 layers[-1].chain_id if layers else None,
                                                 d.get("mediaType", MT_OCI_LAYER_GZIP)))
            out.append(store.add_image(config_bytes, layers, references=tags,
                                       manifest_bytes=manifest_bytes))
    if not out:
        raise ImageNotFound("load: the archive holds no image")
    return out
