"""Hung X accounts cannot open a leak or slow the healthy ones (design 7.1).

The real dispatcher, gate and store in-process, and real tweepy against one
fake X server per account. Six accounts hang on their sends. The loop's
shared thread pool is sized as on a two-core machine (2 + 4 threads): were
the sends queued there, a seventh account's marketing post would wait behind
the hung ones after the gate said yes, and reach X after the declaration.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from switchboard.channels import build_channel
from switchboard.channels.base import Channel
from switchboard.config import ChannelConfig
from switchboard.dispatcher import Dispatcher
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.store import NewPost, Store
from tests.fakes.fake_x import FakeX
from tests.fakes.server import Hang

HUNG = 6
HANG = 2.5         # each hung account's send stalls this long
TIMEOUT = 5.0      # longer than the hang: the sends wait it out
SHARED_POOL = 6    # asyncio's default on two cores: min(32, cpus + 4)


@pytest.fixture
def fakes() -> Iterator[list[FakeX]]:
    with ExitStack() as stack:
        yield [stack.enter_context(FakeX()) for _ in range(HUNG + 2)]


def x_channel(n: int, fake: FakeX) -> Channel:
    return build_channel(ChannelConfig(id=f"x-{n}", kind="x", timeout=TIMEOUT,
                                       options={"api_url": fake.url, "max_retries": 0},
                                       secrets=fake.credentials))


class Desk:
    """What the test drives: posts, a declaration, the store's view."""

    def __init__(self, tmp: Path, fakes: list[FakeX]) -> None:
        self.store = Store.open(tmp / "switchboard.db")
        self.gate = Gate()
        self.channels = {f"x-{n}": x_channel(n, f) for n, f in enumerate(fakes)}
        self.scheduler = AsyncIOScheduler()
        self.dispatcher = Dispatcher(self.store, self.gate, self.channels, self.scheduler,
                                     Metrics(CollectorRegistry()), time.time,
                                     timedelta(minutes=10))

    def post(self, channel: str, kind: str, text: str) -> int:
        now = time.time()
        (post_id,) = self.store.add_posts([NewPost(channel, kind, text, now)], "marketing",
                                          now)
        self.dispatcher.poke(now)
        return post_id

    def declare(self, channel: str) -> float:
        """As the incidents service does: store and gate in one loop step, then the 201."""
        now = time.time()
        incident = self.store.declare(title="Signal failure", runbook="t", severity="major",
                                      channels=[channel], suppress=["marketing"], reason=None,
                                      source="api", signal_key=None, signal=None, actor="ops",
                                      now=now)
        self.gate.hold(channel, incident, ["marketing"])
        return time.time()

    def state(self, post_id: int) -> str:
        post = self.store.post(post_id)
        assert post is not None
        return post.state


async def until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0)


def test_a_hung_account_never_delays_the_gate_or_the_sends_of_another(
        tmp_path: Path, fakes: list[FakeX]) -> None:
    hung, target, healthy = fakes[:HUNG], fakes[HUNG], fakes[HUNG + 1]
    for fake in hung:
        fake.script(Hang(HANG, then="answer", apply=True))

    async def scenario() -> tuple[Desk, int, int, float, float]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(SHARED_POOL))
        desk = Desk(tmp_path, fakes)
        for channel in desk.channels.values():
            await channel.start()
        desk.scheduler.start()
        desk.dispatcher.start()
        for n in range(HUNG):
            desk.post(f"x-{n}", "marketing", f"Offer {n}")
        await until(lambda: all(f.requests for f in hung))  # every hung send is in
        offered = time.time()
        offer = desk.post(f"x-{HUNG}", "marketing", "Spring sale on every line")
        notice = desk.post(f"x-{HUNG + 1}", "operational", "Lifts at Central work again")
        await until(lambda: desk.state(offer) != "queued" and desk.state(offer) != "scheduled")
        ack = desk.declare(f"x-{HUNG}")  # the gate said yes to the offer; the send follows
        await until(lambda: desk.state(offer) not in ("sending", "queued")
                    and desk.state(notice) == "published")
        await until(lambda: all(f.texts for f in hung))
        await desk.dispatcher.drain()
        desk.scheduler.shutdown(wait=False)
        for channel in desk.channels.values():
            await channel.close()
        return desk, offer, notice, offered, ack

    desk, offer, notice, offered, ack = asyncio.run(scenario())

    post = desk.store.post(offer)
    assert post is not None
    if post.state == "suppressed":
        assert target.requests == [], "a suppressed post reached X"
    else:
        # The send started before the declaration: then it really started then.
        assert post.state == "published", post.state
        assert post.published_at is not None and post.published_at <= ack
        (request,) = target.requests
        assert request.at - post.published_at < 0.5, (
            f"the offer reached X {request.at - ack:.2f}s after the declaration's 201, "
            f"{request.at - post.published_at:.2f}s after its stored sent_at")
    (arrived,) = healthy.requests
    assert arrived.at - offered < 1.0, (
        f"a healthy account's send waited {arrived.at - offered:.2f}s behind hung accounts")
    sent = desk.store.post(notice)
    assert sent is not None and sent.published_at is not None
    assert 0 <= arrived.at - sent.published_at < 0.5
