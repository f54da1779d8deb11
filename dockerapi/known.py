"""What the API server already knows about a container and that never changes.

``docker run --rm`` sends create, start, wait and remove, each naming the
container by the full ID the create answered. Asking the host's engine for the
container's inspect before each of them (only to learn its ID and whether the
API auto-removes it) costs a round trip to the worker every time. (``wait``
still inspects: it answers its status line before the engine's wait returns,
so only the inspect can still turn a vanished container into a 404.) A container's
full ID and its labels are fixed at create, so the server keeps them for the
containers it created or inspected, and a call naming one by its full ID skips
that inspect. Everything else — a name, a short ID, a container it never saw —
is looked up as before; ownership is still checked on every call, and a
container removed behind the server's back answers the engine's own 404 from
the action itself.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

FULL_ID = re.compile(r"^[0-9a-f]{64}$")
#: Enough for every container a host runs; the oldest are forgotten first.
MAX_KNOWN = 10_000


@dataclass(frozen=True)
class Facts:
    """A container's facts that cannot change after its create."""

    id: str
    autoremove: bool


class KnownContainers:
    """A bounded map from full container ID to its ``Facts`` (most recent last)."""

    def __init__(self, limit: int = MAX_KNOWN) -> None:
        self.limit = limit
        self._items: OrderedDict[str, Facts] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, facts: Facts) -> None:
        if not FULL_ID.match(facts.id):
            return
        with self._lock:
            self._items[facts.id] = facts
            self._items.move_to_end(facts.id)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def get(self, ref: str) -> Facts | None:
        """The facts for ``ref`` when it is a full ID the server knows (never a name)."""
        if not FULL_ID.match(ref):
            return None
        with self._lock:
            return self._items.get(ref)

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._items.pop(container_id, None)

    def __len__(self) -> int:
        return len(self._items)


#: The API server's one table (the route handlers share it).
containers = KnownContainers()
