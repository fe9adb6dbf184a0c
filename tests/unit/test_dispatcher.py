"""The dispatcher in-process: the store failing mid-batch loses no post."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from switchboard.channels.outbox import OutboxChannel
from switchboard.config import ChannelConfig
from switchboard.dispatcher import Dispatcher
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.model import NewPost
from switchboard.store import Store, StoreUnavailable


class Rig:
    """A real store, gate, outbox and dispatcher on the running loop."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = Store.open(tmp_path / "switchboard.db")
        self.channel = OutboxChannel(ChannelConfig("outbox", "outbox",
                                                   options={"path": tmp_path / "out.jsonl"}))
        self.scheduler = AsyncIOScheduler()
        self.dispatcher = Dispatcher(self.store, Gate(), {"outbox": self.channel},
                                     self.scheduler, Metrics(CollectorRegistry()), time.time,
                                     timedelta(minutes=10))

    async def publish(self, count: int) -> list[str]:
        """Schedule `count` posts due now and return their states once published
        (or after 5 s)."""
        await self.channel.start()
        self.scheduler.start()
        now = time.time()
        ids = self.store.add_posts([NewPost("outbox", "marketing", f"p{i}", now)
                                    for i in range(count)], "marketing", now)
        self.dispatcher.start()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if all(p.state == "published" for p in self.store.posts(ids)):
                break
        states = [p.state for p in self.store.posts(ids)]
        await self.dispatcher.drain()
        self.scheduler.shutdown(wait=False)
        await self.channel.close()
        return states


def test_a_store_error_mid_batch_gives_the_posts_back_to_a_later_tick(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    real = rig.store.claim_sending
    failures = {"left": 1}

    def flaky(ids: Any, now: float) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk I/O error")
        return real(ids, now)

    rig.store.claim_sending = flaky  # type: ignore[method-assign]
    assert asyncio.run(rig.publish(3)) == ["published"] * 3
    assert failures["left"] == 0


@pytest.mark.parametrize("claim_error", [
    StoreUnavailable("busy", "another process holds the write lock"),
    OSError("disk I/O error")])
def test_a_store_that_refuses_the_claim_and_the_give_back_leaves_no_post_queued(
        tmp_path: Path, claim_error: Exception) -> None:
    rig = Rig(tmp_path)
    claim, transition = rig.store.claim_sending, rig.store.transition
    failures = {"claim": 1, "give_back": 1}

    def claim_on_a_failing_store(ids: Any, now: float) -> Any:
        if failures["claim"]:
            failures["claim"] -= 1
            raise claim_error
        return claim(ids, now)

    def give_back_on_a_full_disk(ids: Any, to_state: str, *args: Any, **kwargs: Any) -> Any:
        if to_state == "scheduled" and failures["give_back"]:
            failures["give_back"] -= 1
            raise StoreUnavailable("full", "the disk is full")
        return transition(ids, to_state, *args, **kwargs)

    rig.store.claim_sending = claim_on_a_failing_store  # type: ignore[method-assign]
    rig.store.transition = give_back_on_a_full_disk  # type: ignore[method-assign]
    # The store recovers a moment later: the posts go out without a restart.
    assert asyncio.run(rig.publish(3)) == ["published"] * 3
    assert failures["claim"] == 0


def test_a_tick_that_hits_a_store_error_tries_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    real = rig.store.claim_due_held
    failures = {"left": 1}

    def flaky(now: float, limit: int) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("database is locked")
        return real(now, limit)

    rig.store.claim_due_held = flaky  # type: ignore[method-assign]
    assert asyncio.run(rig.publish(1)) == ["published"]


def test_a_reload_keeps_the_worker_of_an_unchanged_channel(tmp_path: Path) -> None:
    async def run() -> tuple[bool, bool, list[str]]:
        rig = Rig(tmp_path)
        await rig.channel.start()
        rig.dispatcher.start()
        kept_worker = rig.dispatcher.workers["outbox"]
        extra = OutboxChannel(ChannelConfig("extra", "outbox",
                                            options={"path": tmp_path / "extra.jsonl"}))
        await rig.dispatcher.replace_channels({"outbox": rig.channel, "extra": extra})
        same = rig.dispatcher.workers["outbox"] is kept_worker
        replacement = OutboxChannel(rig.channel.config)
        await rig.dispatcher.replace_channels({"outbox": replacement})
        replaced = rig.dispatcher.workers["outbox"] is not kept_worker
        names = sorted(rig.dispatcher.workers)
        await rig.dispatcher.drain()
        for channel in (rig.channel, extra, replacement):
            await channel.close()
        return same, replaced, names

    assert asyncio.run(run()) == (True, True, ["outbox"])
