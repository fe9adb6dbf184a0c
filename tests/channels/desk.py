"""The real publisher, gate and store in-process, over whatever channels a test builds,
on the system clock (these tests measure real sends against fake platforms).

    desk = Desk(tmp_path, {"x-1": channel})
    await desk.open()
    post_id = await desk.post("x-1", "marketing", "Spring sale")
    await desk.settled(post_id)
    await desk.close()
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from switchboard.channels.base import Channel
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.model import NewPost, Post
from switchboard.publisher import Publisher
from switchboard.store import SqliteStore, Store
from switchboard.timer import SchedulerTimer

# Where a post is until the publisher is done with it.
UNSETTLED = ("scheduled", "queued", "sending")


class Desk:
    def __init__(self, state_dir: Path, channels: dict[str, Channel]) -> None:
        self.path = state_dir / "switchboard.db"
        self.gate = Gate()
        self.channels = channels
        self.timer = SchedulerTimer()
        self.store: Store
        self.publisher: Publisher

    async def open(self) -> None:
        self.store = await Store.open(self.path)
        self.publisher = Publisher(self.store, self.gate, self.channels, self.timer,
                                   Metrics(CollectorRegistry()), timedelta(minutes=10))
        for channel in self.channels.values():
            await channel.start()
        self.timer.start()
        await self.publisher.start()

    async def close(self) -> None:
        await self.publisher.drain()
        self.timer.stop()
        for channel in self.channels.values():
            await channel.close()
        # The store's backend stays open: the test reads the outcome from it afterwards.

    @property
    def backend(self) -> SqliteStore:
        return self.store.backend

    async def post(self, channel: str, kind: str, text: str) -> int:
        now = time.time()
        (post_id,) = await self.store.add_posts([NewPost(channel, kind, text, now)],
                                                "marketing", now)
        self.publisher.poke(now)
        return post_id

    async def declare(self, channel: str) -> float:
        """As the incidents service does: committed, then the gate, then the answer;
        the time the 201 would go out."""
        now = time.time()
        incident = await self.store.declare(
            title="Signal failure", runbook="t", severity="major", channels=[channel],
            suppress=["marketing"], reason=None, source="api", signal_key=None, signal=None,
            actor="ops", now=now)
        self.gate.hold(channel, incident, ["marketing"])
        return time.time()

    async def fetch(self, post_id: int) -> Post:
        post = await self.store.post(post_id)
        assert post is not None
        return post

    async def state(self, post_id: int) -> str:
        return (await self.fetch(post_id)).state

    def get(self, post_id: int) -> Post:
        """A post as stored, read once the desk's loop is done."""
        post = self.backend.post(post_id)
        assert post is not None
        return post

    async def settled(self, *post_ids: int, timeout: float = 10.0) -> list[Post]:
        async def done() -> bool:
            states = [await self.state(p) for p in post_ids]
            return all(state not in UNSETTLED for state in states)

        await until(done, timeout)
        return [await self.fetch(p) for p in post_ids]


async def until(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait, a loop step at a time, until `predicate()` holds (it may be a coroutine)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = predicate()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0)
