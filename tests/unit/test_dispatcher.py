"""The publisher in-process, on the fake timer: the store failing mid-batch loses no post."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from switchboard.channels.outbox import OutboxChannel
from switchboard.config import ChannelConfig
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.model import NewPost
from switchboard.publisher import Publisher
from switchboard.store import Store, StoreUnavailable
from switchboard.timer import FakeTimer

Failing = Callable[[Store], None]


class Rig:
    """A real store, gate, outbox and publisher on the running loop and a fake timer."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.timer = FakeTimer()
        self.channel = OutboxChannel(ChannelConfig("outbox", "outbox",
                                                   options={"path": tmp_path / "out.jsonl"}),
                                     clock=self.timer.now)

    async def open(self) -> tuple[Store, Publisher]:
        store = await Store.open(self.tmp_path / "switchboard.db")
        publisher = Publisher(store, Gate(), {"outbox": self.channel}, self.timer,
                              Metrics(CollectorRegistry()), timedelta(minutes=10))
        return store, publisher

    async def publish(self, count: int, failing: Failing) -> list[str]:
        """Schedule `count` posts due now, break the store as `failing` says, and
        return their states once published (the timer moved up to 10 s)."""
        store, publisher = await self.open()
        await self.channel.start()
        now = self.timer.now()
        ids = await store.add_posts([NewPost("outbox", "marketing", f"p{i}", now)
                                     for i in range(count)], "marketing", now)
        failing(store)
        await publisher.start()
        for _ in range(100):
            await self.timer.advance(0.1)
            await asyncio.sleep(0.005)  # the outbox writes in a thread of its own
            if all(p.state == "published" for p in await store.posts(ids)):
                break
        states = [p.state for p in await store.posts(ids)]
        await publisher.drain()
        await self.channel.close()
        await store.close()
        return states


def flaky(real: Callable[..., Awaitable[Any]], error: Exception,
          when: Callable[..., bool] = lambda *a, **k: True) -> Callable[..., Awaitable[Any]]:
    """`real`, failing once with `error` on the first call that `when` accepts."""
    left = {"n": 1}

    async def call(*args: Any, **kwargs: Any) -> Any:
        if left["n"] and when(*args, **kwargs):
            left["n"] -= 1
            raise error
        return await real(*args, **kwargs)
    return call


def test_a_store_error_mid_batch_gives_the_posts_back_to_a_later_tick(tmp_path: Path) -> None:
    def failing(store: Store) -> None:
        store.claim_sending = flaky(store.claim_sending,  # type: ignore[method-assign]
                                    OSError("disk I/O error"))

    assert asyncio.run(Rig(tmp_path).publish(3, failing)) == ["published"] * 3


@pytest.mark.parametrize("claim_error", [
    StoreUnavailable("busy", "another process holds the write lock"),
    OSError("disk I/O error")])
def test_a_store_that_refuses_the_claim_and_the_give_back_leaves_no_post_queued(
        tmp_path: Path, claim_error: Exception) -> None:
    def failing(store: Store) -> None:
        store.claim_sending = flaky(store.claim_sending,  # type: ignore[method-assign]
                                    claim_error)
        store.transition = flaky(  # type: ignore[method-assign]
            store.transition, StoreUnavailable("full", "the disk is full"),
            lambda ids, to_state, *a, **k: to_state == "scheduled")

    # The store recovers a moment later: the posts go out without a restart.
    assert asyncio.run(Rig(tmp_path).publish(3, failing)) == ["published"] * 3


def test_a_tick_that_hits_a_store_error_tries_again(tmp_path: Path) -> None:
    def failing(store: Store) -> None:
        store.claim_due_held = flaky(store.claim_due_held,  # type: ignore[method-assign]
                                     OSError("database is locked"))

    assert asyncio.run(Rig(tmp_path).publish(1, failing)) == ["published"]


def test_a_reload_keeps_the_worker_of_an_unchanged_channel(tmp_path: Path) -> None:
    async def run() -> tuple[bool, bool, list[str]]:
        rig = Rig(tmp_path)
        store, publisher = await rig.open()
        await rig.channel.start()
        await publisher.start()
        kept_worker = publisher.workers["outbox"]
        extra = OutboxChannel(ChannelConfig("extra", "outbox",
                                            options={"path": tmp_path / "extra.jsonl"}))
        await publisher.replace_channels({"outbox": rig.channel, "extra": extra})
        same = publisher.workers["outbox"] is kept_worker
        replacement = OutboxChannel(rig.channel.config)
        await publisher.replace_channels({"outbox": replacement})
        replaced = publisher.workers["outbox"] is not kept_worker
        names = sorted(publisher.workers)
        await publisher.drain()
        for channel in (rig.channel, extra, replacement):
            await channel.close()
        await store.close()
        return same, replaced, names

    assert asyncio.run(run()) == (True, True, ["outbox"])
