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


def test_a_consumer_that_goes_away_never_takes_another_ones_message(web_env):
    """A websocket closing cancels its consumer's read; in one server process the other
    consumers must still get every message sent to them (a page navigating away used to
    drop the message then on its way to any other page)."""

    async def cancel_one_while_sending_to_the_other() -> int:
        layer = get_channel_layer()
        lost = 0
        for n in range(20):
            leaving, staying = await layer.new_channel(), await layer.new_channel()
            reading = asyncio.ensure_future(layer.receive(leaving))
            await asyncio.sleep(0.02)  # its read is under way
            waiting = asyncio.ensure_future(layer.receive(staying))
            await asyncio.sleep(0.02)
            await layer.send(staying, {"type": "test.ping", "n": n})
            reading.cancel()  # the first page closes as the message arrives
            try:
                assert (await asyncio.wait_for(waiting, 3))["n"] == n
            except TimeoutError:
                lost += 1
        return lost

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, cancel_one_while_sending_to_the_other()).result() == 0
