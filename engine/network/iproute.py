"""pyroute2's ``IPRoute``, opened safely from any thread.

pyroute2 0.9 drives netlink with asyncio even behind its synchronous facade:
each call is ``run_until_complete`` on the loop it finds running in the
thread, or on a new one. A thread where a loop is *marked* running but is not
driving this code — Playwright's sync API, a notebook kernel, a greenlet-based
server — makes every call fail with "This event loop is already running".
Netlink itself needs no loop at all, so while the socket is in use the
thread's running-loop marker is set aside and put back afterwards.

Importing pyroute2 costs 0.1-0.4 s, and a container's supervisor that only
tears a sandbox down never needs it: it is imported on first use.
"""

from __future__ import annotations

import asyncio.events
import contextlib
from collections.abc import Iterator
from typing import Any


def netlink_error() -> type[Exception]:
    """pyroute2's NetlinkError class (imported on first use)."""
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


@contextlib.contextmanager
def iproute() -> Iterator[Any]:
    """An open ``IPRoute`` in the calling thread's network namespace."""
    from pyroute2 import IPRoute

    running = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(None)
    try:
        with IPRoute() as ipr:
            yield ipr
    finally:
        asyncio.events._set_running_loop(running)
