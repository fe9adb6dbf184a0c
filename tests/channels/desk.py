"""The real dispatcher, gate and store in-process, over whatever channels a test builds.

    desk = Desk(tmp_path, {"x-1": channel})
    await desk.open()
    post_id = desk.post("x-1", "marketing", "Spring sale")
    await desk.settled(post_id)
    await desk.close()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from switchboard.channels.base import Channel
from switchboard.dispatcher import Dispatcher
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.model import NewPost, Post
from switchboard.store import Store

# Where a post is until the dispatcher is done with it.
UNSETTLED = ("scheduled", "queued", "sending")


class Desk:
    def __init__(self, state_dir: Path, channels: dict[str, Channel]) -> None:
        self.store = Store.open(state_dir / "switchboard.db")
        self.gate = Gate()
        self.channels = channels
        self.scheduler = AsyncIOScheduler()
        self.dispatcher = Dispatcher(self.store, self.gate, channels, self.scheduler,
                                     Metrics(CollectorRegistry()), time.time,
                                     timedelta(minutes=10))

    async def open(self) -> None:
        for channel in self.channels.values():
            await channel.start()
        self.scheduler.start()
        self.dispatcher.start()

    async def close(self) -> None:
        await self.dispatcher.drain()
        self.scheduler.shutdown(wait=False)
        for channel in self.channels.values():
            await channel.close()
        # The store stays open: the test reads the outcome from it afterwards.

    def post(self, channel: str, kind: str, text: str) -> int:
        now = time.time()
        (post_id,) = self.store.add_posts([NewPost(channel, kind, text, now)], "marketing",
                                          now)
        self.dispatcher.poke(now)
        return post_id

    def declare(self, channel: str) -> float:
        """As the incidents service does: store and gate in one loop step; the time
        the 201 would go out."""
        now = time.time()
        incident = self.store.declare(title="Signal failure", runbook="t", severity="major",
                                      channels=[channel], suppress=["marketing"], reason=None,
                                      source="api", signal_key=None, signal=None, actor="ops",
                                      now=now)
        self.gate.hold(channel, incident, ["marketing"])
        return time.time()

    def get(self, post_id: int) -> Post:
        post = self.store.post(post_id)
        assert post is not None
        return post

    def state(self, post_id: int) -> str:
        return self.get(post_id).state

    async def settled(self, *post_ids: int, timeout: float = 10.0) -> list[Post]:
        await until(lambda: all(self.state(p) not in UNSETTLED for p in post_ids), timeout)
        return [self.get(p) for p in post_ids]


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait, a loop step at a time, until `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0)
