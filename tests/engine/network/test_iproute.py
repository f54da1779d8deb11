"""pyroute2 through engine.network.iproute works where an asyncio loop is running."""

from __future__ import annotations

import asyncio
import threading

from engine.network.iproute import iproute


def test_iproute_inside_a_running_loop_and_the_loop_survives():
    async def inside() -> list[str]:
        with iproute() as ipr:
            names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
        await asyncio.sleep(0)  # the outer loop still runs after the socket closed
        return names

    seen: list = []  # in a thread of its own: pytest's thread may hold Playwright's loop
    worker = threading.Thread(target=lambda: seen.append(asyncio.run(inside())))
    worker.start()
    worker.join(30)
    assert seen and "lo" in seen[0]
