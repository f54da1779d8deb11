"""The registry client the engine exposes: ``pull``, ``push``, ``login``.

It speaks the OCI distribution API (v2) over ``requests`` and keeps one
:class:`RegistrySession` per (registry, user), so bearer tokens are reused
across requests. Credentials given to ``login`` are remembered in memory only
for this client (the dashboard keeps each user's own, and passes them on each
call); they are never written to disk, to events or to messages.

Progress: each call takes a callback receiving Docker's JSON progress lines
(``{"status", "id", "progressDetail": {"current", "total"}}``); the same lines
go to the engine's event bus as transient ``image progress`` events, so the
dashboard can stream a pull started by anyone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from engine.errors import InvalidArgument
from engine.images import reference as refs
from engine.images.store import Image, ImageStore
from engine.registry.auth import Credentials
from engine.registry.pull import Puller
from engine.registry.push import Pusher
from engine.registry.transport import RegistrySession, is_insecure

__all__ = ["Credentials", "RegistryClient"]


class RegistryClient:
    def __init__(self, images: ImageStore, events=None, config=None) -> None:
        self.images = images
        self.events = events
        self.insecure: tuple[str, ...] = tuple(
            getattr(config, "insecure_registries", ("localhost", "127.0.0.1")))
        self._logins: dict[str, Credentials] = {}
        self._sessions: dict[tuple[str, str], RegistrySession] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sessions
    def session(self, registry: str, auth: Credentials | None = None) -> RegistrySession:
        creds = auth if auth is not None else self._logins.get(registry, Credentials())
        key = (registry, creds.username)
        with self._lock:
            s = self._sessions.get(key)
            if s is None or s.credentials != creds:
                s = RegistrySession(registry, insecure=is_insecure(registry, self.insecure),
                                    credentials=creds)
                self._sessions[key] = s
            return s

    def _progress(self, reference: str, progress: Callable[[dict], None] | None
                  ) -> Callable[[dict], None]:
        lock = threading.Lock()

        def emit(line: dict) -> None:
            with lock:  # layers report from several threads; callers see one line at a time
                if progress is not None:
                    try:
                        progress(line)
                    except Exception:
                        pass
                if self.events is not None:
                    self.events.emit("image", "progress", reference, dict(line), transient=True)

        return emit

    # ------------------------------------------------------------------ operations
    def pull(self, reference: str, auth: Credentials | None = None,
             progress: Callable[[dict], None] | None = None,
             platform: str | None = None) -> Image:
        """Pull ``reference`` (``busybox``, ``127.0.0.1:5000/x:y``, ``x@sha256:..``).

        ``platform`` (``linux/arm64``) chooses from an index instead of this host's.
        """
        ref = refs.parse(reference)
        emit = self._progress(ref.familiar(), progress)
        image_id = Puller(self.images, self.session(ref.registry, auth), ref, emit,
                          platform).pull()
        if self.events is not None:
            self.events.emit("image", "pull", image_id, {"name": ref.familiar()})
        return self.images.resolve(image_id)

    def push(self, reference: str, auth: Credentials | None = None,
             progress: Callable[[dict], None] | None = None, *, source: str | None = None,
             chunk_size: int | None = None) -> str:
        """Push the local image ``source`` (default: ``reference`` itself) as ``reference``."""
        target = refs.parse(reference)
        if target.digest:
            raise InvalidArgument(f"push: cannot push to a digest reference ({reference})")
        image = self.images.resolve(source or reference)
        emit = self._progress(target.familiar(), progress)
        kwargs = {}
        if chunk_size:
            kwargs = {"chunk_size": chunk_size, "monolithic_max": chunk_size}
        pusher = Pusher(self.images, self.session(target.registry, auth), image, target, emit,
                        **kwargs)
        digest, _size = pusher.push()
        self.images.add_repo_digest(image.id, f"{target.name}@{digest}")
        if self.events is not None:
            self.events.emit("image", "push", image.id, {"name": target.familiar()})
        return digest

    def check_login(self, registry: str, auth: Credentials) -> str:
        """Check ``auth`` against ``registry`` (``GET /v2/``) without keeping it.

        A worker serves many users: their credentials travel with each request
        and are never remembered by the shared client. Returns the registry's domain.
        """
        registry, _ = self._checked_session(registry, auth)
        return registry

    def login(self, registry: str, auth: Credentials) -> None:
        """Check ``auth`` and remember it for this client (one user's script or CLI)."""
        registry, s = self._checked_session(registry, auth)
        self._logins[registry] = auth
        with self._lock:
            self._sessions[(registry, auth.username)] = s

    def _checked_session(self, registry: str, auth: Credentials) -> tuple[str, RegistrySession]:
        registry = refs.parse(registry + "/x").domain if "/" not in registry else registry
        s = RegistrySession(registry, insecure=is_insecure(registry, self.insecure),
                            credentials=auth)
        r = s.request("GET", "/v2/", scope="", what="login", ok=(200,))
        r.close()
        return registry, s
