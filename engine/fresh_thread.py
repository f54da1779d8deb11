"""A throwaway thread for kernel state that is per thread: namespaces.

Linux keeps a task's namespaces per *thread*: a thread that calls ``unshare``
or ``setns`` changes only its own, and a process it starts (fork, vfork,
posix_spawn) inherits the thread's. So the engine, a multithreaded process,
works inside a container's network namespace or a private mount namespace
from a fresh thread that dies afterwards, taking its namespaces with it, while
every other thread stays in the host's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def in_fresh_thread(fn: Callable[[], T], name: str = "estiba-ns") -> T:
    """Run ``fn`` in a fresh thread that dies afterwards; its result or its exception."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
