"""Manifests from a registry: recognise, validate and pick a platform.

Four documents can answer ``GET /v2/<name>/manifests/<ref>``:

* an OCI image index or a Docker manifest list — one entry per platform; we
  choose the host's (``linux/amd64`` here), as ``docker pull`` does;
* an OCI image manifest or a Docker schema2 manifest — a config blob and
  the ordered layer blobs.

Everything in them is checked before it is used: the media type, digests
(``sha256:<64 hex>``, so a digest can never be a path), sizes (non-negative
integers, bounded), and the layer media types we know how to unpack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine.errors import InvalidArgument, RegistryError
from engine.images.blobs import DIGEST_RE
from engine.images.store import (
    LAYER_MEDIA_TYPES,
    MT_DOCKER_CONFIG,
    MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST,
    MT_OCI_CONFIG,
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
)

MANIFEST_ACCEPT = ", ".join([MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST])
MAX_MANIFEST = 4 * 1024 * 1024
MAX_CONFIG = 8 * 1024 * 1024
MAX_LAYERS = 256
MAX_LAYER_SIZE = 64 * 1024**3
LIST_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
IMAGE_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
CONFIG_TYPES = (MT_OCI_CONFIG, MT_DOCKER_CONFIG)
#: An uncompressed layer in a Docker schema2 manifest, as containers/image (skopeo,
#: podman, buildah) names it when it does not compress. The unpacker tells
#: compression by its magic bytes, so it takes this as it takes an OCI ``tar``.
MT_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
PULL_LAYER_TYPES = (*LAYER_MEDIA_TYPES, MT_DOCKER_LAYER_TAR)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None
    urls: tuple[str, ...] = ()


def _descriptor(raw: object, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: a descriptor is not an object")
    digest, size, mt = raw.get("digest"), raw.get("size"), raw.get("mediaType", "")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise RegistryError(f"{where}: bad or unsupported digest {str(digest)[:80]!r}")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_LAYER_SIZE:
        raise RegistryError(f"{where}: bad size {str(size)[:30]!r} for {digest}")
    if not isinstance(mt, str):
        raise RegistryError(f"{where}: bad media type for {digest}")
    platform = raw.get("platform") if isinstance(raw.get("platform"), dict) else None
    return Descriptor(mt, digest, size, platform)


def media_type_of(body: bytes, header: str) -> tuple[str, dict]:
    """The document and its media type (the body's own field wins over the header)."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise RegistryError("manifest is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError("manifest is not a JSON object")
    mt = doc.get("mediaType") or header.split(";")[0].strip()
    if not mt:
        mt = MT_OCI_INDEX if "manifests" in doc else MT_OCI_MANIFEST
    if doc.get("schemaVersion") != 2:
        raise RegistryError(f"unsupported manifest schemaVersion {doc.get('schemaVersion')!r} "
                            "(only schema 2 and OCI manifests are supported)")
    if mt not in LIST_TYPES + IMAGE_TYPES:
        raise RegistryError(f"unsupported manifest media type {mt!r}")
    return mt, doc


_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "i386": "386"}


def parse_platform(text: str) -> tuple[str, str, str]:
    """``os/arch[/variant]`` (``docker pull --platform``) -> its three parts, normalized."""
    parts = [p.strip().lower() for p in (text or "").split("/")]
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform {text!r}: write it as os/arch[/variant], "
                              "e.g. linux/arm64 or linux/arm/v7")
    os_name, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
    return os_name, arch, parts[2] if len(parts) == 3 else ""


#: The variant a bare architecture means (OCI image-index spec, containerd's matcher).
_DEFAULT_VARIANT = {"arm64": "v8", "amd64": "v1", "arm": "v7"}


def variant_number(arch: str, variant: str) -> int:
    """A CPU variant as a number to compare (``v7`` is 7; a bare architecture its default)."""
    text = (variant or _DEFAULT_VARIANT.get(arch, "")).lower().lstrip("v")
    return int(text) if text.isdigit() else 0


def select_platform(doc: dict, os_name: str, arch: str, where: str,
                    variant: str = "") -> Descriptor:
    """The entry of an index / manifest list for ``os_name/arch[/variant]``.

    As containerd chooses: the host's own variant first, then the newest older
    one it can still run (an ARMv7 host runs v6 and v5 images; a bare ``amd64``
    means v1); an entry that needs a newer variant than the host's is never
    chosen. Among equals the index's order decides.
    """
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise RegistryError(f"{where}: index has no manifests list")
    host_level = variant_number(arch, variant)
    ranked: list[tuple[int, int, Descriptor]] = []
    for position, raw in enumerate(entries):
        d = _descriptor(raw, where)
        if d.media_type not in IMAGE_TYPES:
            continue
        p = d.platform or {}
        if p.get("os") != os_name or p.get("architecture") != arch:
            continue
        level = variant_number(arch, str(p.get("variant") or ""))
        if level > host_level:
            continue  # built for a newer CPU than this one
        ranked.append((host_level - level, position, d))
    if not ranked:
        found = sorted({"/".join(filter(None, (str(pl.get("os")), str(pl.get("architecture")),
                                               str(pl.get("variant") or ""))))
                        for e in entries if isinstance(e, dict)
                        for pl in [e.get("platform") or {}]})
        wanted = "/".join(filter(None, (os_name, arch, variant)))
        raise RegistryError(f"{where}: no image for {wanted} "
                            f"(the index has {', '.join(found) or 'nothing'})")
    return min(ranked, key=lambda r: (r[0], r[1]))[2]


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


def parse_image_manifest(doc: dict, media_type: str, where: str) -> ImageManifest:
    config = _descriptor(doc.get("config"), where)
    if config.media_type and config.media_type not in CONFIG_TYPES:
        raise RegistryError(f"{where}: config media type {config.media_type!r} is not an image "
                            "config (is this an artifact, not an image?)")
    if config.size > MAX_CONFIG:
        raise RegistryError(f"{where}: config of {config.size} bytes exceeds {MAX_CONFIG}")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise RegistryError(f"{where}: manifest has no layers list")
    if len(raw_layers) > MAX_LAYERS:
        raise RegistryError(f"{where}: {len(raw_layers)} layers is more than {MAX_LAYERS}")
    layers = []
    for raw in raw_layers:
        d = _descriptor(raw, where)
        if d.media_type not in PULL_LAYER_TYPES:
            raise RegistryError(f"{where}: layer {d.digest} has unsupported media type "
                                f"{d.media_type!r}")
        layers.append(d)
    return ImageManifest(media_type, config, tuple(layers))


def parse_config(body: bytes, n_layers: int, where: str) -> dict:
    try:
        config = json.loads(body)
    except ValueError:
        raise RegistryError(f"{where}: image config is not JSON") from None
    if not isinstance(config, dict):
        raise RegistryError(f"{where}: image config is not an object")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(
            isinstance(d, str) and DIGEST_RE.match(d) for d in diff_ids):
        raise RegistryError(f"{where}: image config has no valid rootfs.diff_ids")
    if len(diff_ids) != n_layers:
        raise RegistryError(f"{where}: the manifest has {n_layers} layers but the config lists "
                            f"{len(diff_ids)} diff IDs")
    if config.get("config") is not None and not isinstance(config.get("config"), dict):
        raise RegistryError(f"{where}: image config's 'config' is not an object")
    return config
