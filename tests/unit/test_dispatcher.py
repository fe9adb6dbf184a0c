"""The dispatcher in-process: the store failing mid-batch loses no post."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from switchboard.channels.outbox import OutboxChannel
from switchboard.config import ChannelConfig
from switchboard.dispatcher import Dispatcher
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.store import NewPost, Store


def test_a_store_error_mid_batch_gives_the_posts_back_to_a_later_tick(tmp_path: Path) -> None:
    async def run() -> list[str]:
        store = Store.open(tmp_path / "switchboard.db")
        channel = OutboxChannel(ChannelConfig("outbox", "outbox",
                                              options={"path": tmp_path / "out.jsonl"}))
        await channel.start()
        scheduler = AsyncIOScheduler()
        scheduler.start()
        dispatcher = Dispatcher(store, Gate(), {"outbox": channel}, scheduler,
                                Metrics(CollectorRegistry()), time.time, timedelta(minutes=10))
        real = store.transition
        failures = {"left": 1}

        def flaky(ids: Any, to_state: str, *args: Any, **kwargs: Any) -> list[int]:
            if to_state == "sending" and failures["left"]:
                failures["left"] -= 1
                raise OSError("disk I/O error")
            return real(ids, to_state, *args, **kwargs)

        store.transition = flaky  # type: ignore[method-assign]
        now = time.time()
        ids = store.add_posts([NewPost("outbox", "marketing", f"p{i}", now) for i in range(3)],
                              "marketing", now)
        dispatcher.start()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if all(p.state == "published" for p in store.posts(ids)):
                break
        states = [p.state for p in store.posts(ids)]
        await dispatcher.drain()
        scheduler.shutdown(wait=False)
        await channel.close()
        return states

    assert asyncio.run(run()) == ["published"] * 3


def test_a_tick_that_hits_a_store_error_tries_again(tmp_path: Path) -> None:
    async def run() -> list[str]:
        store = Store.open(tmp_path / "switchboard.db")
        channel = OutboxChannel(ChannelConfig("outbox", "outbox",
                                              options={"path": tmp_path / "out.jsonl"}))
        await channel.start()
        scheduler = AsyncIOScheduler()
        scheduler.start()
        dispatcher = Dispatcher(store, Gate(), {"outbox": channel}, scheduler,
                                Metrics(CollectorRegistry()), time.time, timedelta(minutes=10))
        real = store.claim_due
        failures = {"left": 1}

        def flaky(now: float, limit: int) -> Any:
            if failures["left"]:
                failures["left"] -= 1
                raise OSError("database is locked")
            return real(now, limit)

        store.claim_due = flaky  # type: ignore[method-assign]
        now = time.time()
        ids = store.add_posts([NewPost("outbox", "marketing", "p", now)], "marketing", now)
        dispatcher.start()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if store.posts(ids)[0].state == "published":
                break
        states = [p.state for p in store.posts(ids)]
        await dispatcher.drain()
        scheduler.shutdown(wait=False)
        await channel.close()
        return states

    assert asyncio.run(run()) == ["published"]
