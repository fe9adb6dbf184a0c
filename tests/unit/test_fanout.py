"""Fan-out in-process: posts of many channels at once share their store writes."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from switchboard.channels.base import Channel
from switchboard.channels.outbox import OutboxChannel
from switchboard.config import ChannelConfig
from switchboard.dispatcher import Dispatcher
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.model import NewPost
from switchboard.store import Store


class Counted:
    """Counts the calls of one store method, passing them on."""

    def __init__(self, store: Store, name: str) -> None:
        self.calls = 0
        real = getattr(store, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        setattr(store, name, counted)


def outboxes(tmp_path: Path, count: int) -> dict[str, Channel]:
    return {f"c{i}": OutboxChannel(ChannelConfig(f"c{i}", "outbox",
                                                 options={"path": tmp_path / f"c{i}.jsonl"}))
            for i in range(count)}


async def publish_one_each(store: Store, channels: dict[str, Channel],
                           dispatcher: Dispatcher) -> list[str]:
    """One marketing post due now on every channel; their states once settled."""
    for channel in channels.values():
        await channel.start()
    scheduler = dispatcher.scheduler
    scheduler.start()
    now = time.time()
    ids = store.add_posts([NewPost(cid, "marketing", f"for {cid}", now) for cid in channels],
                          "marketing", now)
    dispatcher.start()
    for _ in range(100):
        await asyncio.sleep(0.05)
        if all(p.state in ("published", "suppressed") for p in store.posts(ids)):
            break
    states = [p.state for p in store.posts(ids)]
    await dispatcher.drain()
    scheduler.shutdown(wait=False)
    for channel in channels.values():
        await channel.close()
    return states


def make_dispatcher(store: Store, channels: dict[str, Channel]) -> Dispatcher:
    return Dispatcher(store, Gate(), channels, AsyncIOScheduler(), Metrics(CollectorRegistry()),
                      time.time, timedelta(minutes=10))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_posts_due_together_on_many_channels_are_claimed_in_one_store_transaction(
        tmp_path: Path) -> None:
    store = Store.open(tmp_path / "switchboard.db")
    channels = outboxes(tmp_path, 50)
    claims, records = Counted(store, "claim_sending"), Counted(store, "record_sends")
    states = asyncio.run(publish_one_each(store, channels, make_dispatcher(store, channels)))
    assert states == ["published"] * 50
    # One `sending` commit (one fsync) for the 50 channels, not one per channel.
    assert claims.calls == 1
    assert records.calls == 1
    for cid in channels:
        assert [line["text"] for line in lines(tmp_path / f"{cid}.jsonl")] == [f"for {cid}"]


def test_a_shared_claim_still_suppresses_the_post_of_a_channel_the_store_holds(
        tmp_path: Path) -> None:
    store = Store.open(tmp_path / "switchboard.db")
    channels = outboxes(tmp_path, 3)
    # Held in the store only (another writer declared it): this process's gate is open.
    incident = store.declare(title="t", runbook="r", severity="major", channels=["c1"],
                             suppress=["marketing"], reason=None, source="manual",
                             signal_key=None, signal=None, actor="ops", now=time.time())
    states = asyncio.run(publish_one_each(store, channels, make_dispatcher(store, channels)))
    assert states == ["published", "suppressed", "published"]
    assert lines(tmp_path / "c1.jsonl") == []
    held = store.list_posts(("suppressed",))
    assert [(p.channel, p.incident_id) for p in held] == [("c1", incident)]


def test_a_channel_with_nothing_to_send_has_no_worker_task(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "switchboard.db")
    channels = outboxes(tmp_path, 200)

    async def run() -> tuple[int, int]:
        dispatcher = make_dispatcher(store, channels)
        dispatcher.scheduler.start()
        dispatcher.start()
        await asyncio.sleep(0)
        before = sum(t.get_name().startswith("channel-") for t in asyncio.all_tasks())
        now = time.time()
        [post] = store.posts(store.add_posts([NewPost("c7", "operational", "x", now,
                                                      state="queued")], "ops", now))
        await channels["c7"].start()
        dispatcher.route(post)
        after = sum(t.get_name().startswith("channel-") for t in asyncio.all_tasks())
        await dispatcher.drain()
        dispatcher.scheduler.shutdown(wait=False)
        await channels["c7"].close()
        return before, after

    assert asyncio.run(run()) == (0, 1)
