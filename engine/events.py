"""The engine's single event stream.

Docker reports what happens to its objects as typed events (``container
start``, ``image pull``, ``network connect``...). estiba does the same, and
because the processes that witness an event are many — the worker, the
per-container supervisor that sees a process die while no worker runs, the
builder — the stream is a journal file: each event is one JSON line appended
with ``O_APPEND`` (a single ``write`` of a short line, so lines never
interleave). Readers follow the file from an offset. The worker publishes what
it reads to Redis; ``/events`` on the REST API and the dashboard's websockets
deliver the same events.

The event shape follows Docker's ``EventMessage`` (Type, Action, Actor.ID,
Actor.Attributes, time, timeNano) so the API can pass them through unchanged.
Progress events (pull per-layer progress, build step output) travel the same
way but are marked ``transient``: they are delivered to live listeners and not
written to the journal, which keeps it small.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Listener = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    """One thing that happened to one engine object."""

    type: str  # container, image, volume, network, build, exec
    action: str  # create, start, die, oom, pull, progress, step, ...
    actor_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    time_nano: int = field(default_factory=time.time_ns)
    transient: bool = False

    @property
    def time(self) -> int:
        return self.time_nano // 1_000_000_000

    def to_docker(self) -> dict[str, Any]:
        """The event as Docker's API shows it (``EventMessage``)."""
        attrs = {k: str(v) for k, v in self.attributes.items() if not isinstance(v, (dict, list))}
        return {
            "Type": self.type,
            "Action": self.action,
            "Actor": {"ID": self.actor_id, "Attributes": attrs},
            "scope": "local",
            "time": self.time,
            "timeNano": self.time_nano,
            # Docker's legacy fields, still read by older clients.
            "status": self.action,
            "id": self.actor_id,
            "from": attrs.get("image", ""),
        }

    def to_json(self) -> str:
        # the fields by hand: dataclasses.asdict deep-copies, on the path of every start
        return json.dumps({"action": self.action, "actor_id": self.actor_id,
                           "attributes": self.attributes, "time_nano": self.time_nano,
                           "transient": self.transient, "type": self.type},
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Event:
        data = json.loads(line)
        return cls(**data)


class EventBus:
    """Emit events to in-process listeners and to the on-disk journal."""

    def __init__(self, journal: Path) -> None:
        self.journal = Path(journal)
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every event emitted in this process; returns an unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def emit(
        self,
        type: str,
        action: str,
        actor_id: str,
        attributes: dict[str, Any] | None = None,
        *,
        transient: bool = False,
    ) -> Event:
        event = Event(type, action, actor_id, dict(attributes or {}), transient=transient)
        if not transient:
            append_to_journal(self.journal, event)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must never break the engine
                pass
        return event

    def follow(
        self, offset: int | None = None, *, stop: threading.Event | None = None, poll: float = 0.05
    ) -> Iterator[tuple[int, Event]]:
        """Yield ``(next_offset, event)`` from the journal, waiting for new lines.

        ``offset=None`` starts at the current end (only new events). The
        iterator ends when ``stop`` is set.
        """
        yield from follow_journal(self.journal, offset, stop=stop, poll=poll)

    def history(self, since_nano: int = 0, until_nano: int | None = None) -> list[Event]:
        """Events already in the journal within a time window (for ``/events?since=``)."""
        if not self.journal.exists():
            return []
        out = []
        with self.journal.open() as fh:
            for line in fh:
                try:
                    event = Event.from_json(line)
                except (ValueError, TypeError):
                    continue
                if event.time_nano < since_nano:
                    continue
                if until_nano is not None and event.time_nano > until_nano:
                    break
                out.append(event)
        return out

    def end_offset(self) -> int:
        try:
            return self.journal.stat().st_size
        except FileNotFoundError:
            return 0


def append_to_journal(journal: Path, event: Event) -> None:
    """Append one event as one line with a single O_APPEND write (usable from any process)."""
    data = (event.to_json() + "\n").encode()
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def follow_journal(
    journal: Path,
    offset: int | None = None,
    *,
    stop: threading.Event | None = None,
    poll: float = 0.05,
) -> Iterator[tuple[int, Event]]:
    journal = Path(journal)
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.touch(exist_ok=True)
    with journal.open("rb") as fh:
        fh.seek(0, os.SEEK_END) if offset is None else fh.seek(offset)
        pending = b""
        while stop is None or not stop.is_set():
            chunk = fh.readline()
            if not chunk:
                time.sleep(poll)
                continue
            pending += chunk
            if not pending.endswith(b"\n"):
                continue
            line, pending = pending, b""
            try:
                event = Event.from_json(line.decode())
            except (ValueError, TypeError):
                continue
            yield fh.tell(), event
