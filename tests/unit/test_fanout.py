"""Fan-out in-process, on the fake timer: posts of many channels at once share
their store writes."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from switchboard.channels.base import Channel
from switchboard.channels.outbox import OutboxChannel
from switchboard.config import ChannelConfig
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.model import NewPost
from switchboard.publisher import Publisher
from switchboard.store import Store
from switchboard.timer import FakeTimer


class Counted:
    """Counts the calls of one store method, passing them on."""

    def __init__(self, store: Store, name: str) -> None:
        self.calls = 0
        real = getattr(store, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await real(*args, **kwargs)

        setattr(store, name, counted)


def outboxes(tmp_path: Path, count: int, timer: FakeTimer) -> dict[str, Channel]:
    return {f"c{i}": OutboxChannel(ChannelConfig(f"c{i}", "outbox",
                                                 options={"path": tmp_path / f"c{i}.jsonl"}),
                                   clock=timer.now)
            for i in range(count)}


def make_publisher(store: Store, channels: dict[str, Channel], timer: FakeTimer) -> Publisher:
    return Publisher(store, Gate(), channels, timer, Metrics(CollectorRegistry()),
                     timedelta(minutes=10))


async def publish_one_each(tmp_path: Path, count: int, before: Any = None,
                           counted: tuple[str, ...] = ()) -> tuple[list[str], dict[str, int]]:
    """One marketing post due now on each of `count` channels; their states once
    settled, and the calls of the `counted` store methods."""
    timer = FakeTimer()
    store = await Store.open(tmp_path / "switchboard.db")
    channels = outboxes(tmp_path, count, timer)
    if before is not None:
        await before(store, timer)
    counters = {name: Counted(store, name) for name in counted}
    publisher = make_publisher(store, channels, timer)
    for channel in channels.values():
        await channel.start()
    now = timer.now()
    ids = await store.add_posts([NewPost(cid, "marketing", f"for {cid}", now)
                                 for cid in channels], "marketing", now)
    await publisher.start()
    for _ in range(200):
        await timer.advance(0.1)
        await asyncio.sleep(0.005)  # the outboxes write in threads of their own
        if all(p.state in ("published", "suppressed") for p in await store.posts(ids)):
            break
    states = [p.state for p in await store.posts(ids)]
    await publisher.drain()
    for channel in channels.values():
        await channel.close()
    await store.close()
    return states, {name: c.calls for name, c in counters.items()}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_posts_due_together_on_many_channels_are_claimed_in_one_store_transaction(
        tmp_path: Path) -> None:
    states, calls = asyncio.run(publish_one_each(tmp_path, 50,
                                                 counted=("claim_sending", "record_sends")))
    assert states == ["published"] * 50
    # One `sending` commit (one fsync) for the 50 channels, not one per channel.
    assert calls == {"claim_sending": 1, "record_sends": 1}
    for i in range(50):
        assert [line["text"] for line in lines(tmp_path / f"c{i}.jsonl")] == [f"for c{i}"]


def test_a_shared_claim_still_suppresses_the_post_of_a_channel_the_store_holds(
        tmp_path: Path) -> None:
    declared: dict[str, int] = {}

    async def hold_c1(store: Store, timer: FakeTimer) -> None:
        # Held in the store only (another writer declared it): this process's gate is open.
        declared["id"] = await store.declare(
            title="t", runbook="r", severity="major", channels=["c1"], suppress=["marketing"],
            reason=None, source="manual", signal_key=None, signal=None, actor="ops",
            now=timer.now())

    states, _ = asyncio.run(publish_one_each(tmp_path, 3, before=hold_c1))
    assert states == ["published", "suppressed", "published"]
    assert lines(tmp_path / "c1.jsonl") == []

    async def held() -> list[tuple[str, int | None]]:
        store = await Store.open(tmp_path / "switchboard.db")
        posts = await store.list_posts(("suppressed",))
        await store.close()
        return [(p.channel, p.incident_id) for p in posts]

    assert asyncio.run(held()) == [("c1", declared["id"])]


def test_a_channel_with_nothing_to_send_has_no_worker_task(tmp_path: Path) -> None:
    async def run() -> tuple[int, int]:
        timer = FakeTimer()
        store = await Store.open(tmp_path / "switchboard.db")
        channels = outboxes(tmp_path, 200, timer)
        publisher = make_publisher(store, channels, timer)
        await publisher.start()
        await asyncio.sleep(0)
        before = sum(t.get_name().startswith("channel-") for t in asyncio.all_tasks())
        now = timer.now()
        posts = await store.posts(await store.add_posts(
            [NewPost("c7", "operational", "x", now, state="queued")], "ops", now))
        await channels["c7"].start()
        await publisher.route(posts)
        after = sum(t.get_name().startswith("channel-") for t in asyncio.all_tasks())
        await publisher.drain()
        await channels["c7"].close()
        await store.close()
        return before, after

    assert asyncio.run(run()) == (0, 1)
