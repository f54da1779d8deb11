"""The project's channel layer against the real Redis: what a websocket consumer relies on."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.layers import get_channel_layer


@pytest.mark.slow
def test_a_consumer_idle_longer_than_5_s_still_gets_its_group_messages(web_env):
    """channels_redis blocks 5 s per BZPOPMIN; with redis-py 8's default 5 s socket timeout
    that read failed now and then, and the socket's consumer died with it."""

    async def idle_then_message() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add("estiba-test-idle", channel)
        try:
            receiving = asyncio.ensure_future(layer.receive(channel))
            await asyncio.sleep(12)  # two of the layer's blocking reads, and more
            assert not receiving.done(), receiving
            await layer.group_send("estiba-test-idle", {"type": "test.ping", "n": 1})
            return await asyncio.wait_for(receiving, 5)
        finally:
            await layer.group_discard("estiba-test-idle", channel)

    # a thread of its own: the browser tests leave an event loop marked running in this one
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, idle_then_message()).result()["n"] == 1
