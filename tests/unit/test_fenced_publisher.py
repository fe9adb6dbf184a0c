"""The publisher of a leader that fenced itself, in-process on the fake timer: a
real store, its lease, the outbox; the keeper's monotonic clock a fake one."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from switchboard.channels.base import Message, Receipt
from switchboard.channels.outbox import OutboxChannel
from switchboard.config import ChannelConfig
from switchboard.gate import Gate
from switchboard.leadership import LeaseKeeper
from switchboard.metrics import Metrics
from switchboard.model import NewPost
from switchboard.publisher import Publisher
from switchboard.store import Store
from switchboard.timer import FakeTimer


class Monotonic:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.timer = FakeTimer()
        self.monotonic = Monotonic()
        self.out = tmp_path / "out.jsonl"
        self.channel = OutboxChannel(ChannelConfig("outbox", "outbox",
                                                   options={"path": self.out}),
                                     clock=self.timer.now)

    async def open(self) -> tuple[Store, Publisher]:
        store = await Store.open(self.tmp_path / "switchboard.db")
        metrics = Metrics(CollectorRegistry())
        keeper = LeaseKeeper(store, metrics, monotonic=self.monotonic)
        await keeper.step()
        assert keeper.may_act()
        publisher = Publisher(store, Gate(), {"outbox": self.channel}, self.timer, metrics,
                              timedelta(minutes=10), keeper)
        await self.channel.start()
        return store, publisher

    async def run(self, store: Store, publisher: Publisher, post: int) -> str:
        await publisher.start()
        for _ in range(20):
            await self.timer.advance(0.1)
            await asyncio.sleep(0.005)  # the outbox writes in a thread of its own
        found = await store.post(post)
        await publisher.drain()
        await self.channel.close()
        await store.close()
        assert found is not None
        return found.state

    def lines(self) -> int:
        return len(self.out.read_text().splitlines()) if self.out.exists() else 0


def test_a_leader_frozen_between_its_claim_and_the_start_of_the_send_never_starts_it(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)

    async def main() -> str:
        store, publisher = await rig.open()
        real = rig.channel.publish

        async def frozen_then_woken(message: Message) -> Receipt:
            rig.monotonic.now += 9.0  # claimed `sending`; the process stops for 9 s
            return await real(message)
        rig.channel.publish = frozen_then_woken  # type: ignore[method-assign]
        now = rig.timer.now()
        [post] = await store.add_posts([NewPost("outbox", "marketing", "offer", now)],
                                       "marketing", now)
        return await rig.run(store, publisher, post)

    # Never sent, and left `sending`: the next leader makes it `unknown`, never re-sends.
    assert asyncio.run(main()) == "sending"
    assert rig.lines() == 0


def test_a_leader_unrenewed_for_the_fence_time_claims_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path)

    async def main() -> str:
        store, publisher = await rig.open()
        now = rig.timer.now()
        [post] = await store.add_posts([NewPost("outbox", "marketing", "offer", now + 0.5)],
                                       "marketing", now)
        rig.monotonic.now += 8.0
        return await rig.run(store, publisher, post)

    assert asyncio.run(main()) == "scheduled"
    assert rig.lines() == 0


def test_a_leader_that_renews_sends_as_usual(tmp_path: Path) -> None:
    rig = Rig(tmp_path)

    async def main() -> str:
        store, publisher = await rig.open()
        now = rig.timer.now()
        [post] = await store.add_posts([NewPost("outbox", "marketing", "offer", now + 0.5)],
                                       "marketing", now)
        rig.monotonic.now += 7.9
        return await rig.run(store, publisher, post)

    assert asyncio.run(main()) == "published"
    assert rig.lines() == 1
