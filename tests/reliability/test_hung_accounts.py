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
from pathlib import Path

import pytest

from switchboard.channels import build_channel
from switchboard.channels.base import Channel
from switchboard.config import ChannelConfig
from tests.channels.desk import Desk, until
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


def test_a_hung_account_never_delays_the_gate_or_the_sends_of_another(
        tmp_path: Path, fakes: list[FakeX]) -> None:
    hung, target, healthy = fakes[:HUNG], fakes[HUNG], fakes[HUNG + 1]
    for fake in hung:
        fake.script(Hang(HANG, then="answer", apply=True))

    async def scenario() -> tuple[Desk, int, int, float, float]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(SHARED_POOL))
        desk = Desk(tmp_path, {f"x-{n}": x_channel(n, f) for n, f in enumerate(fakes)})
        await desk.open()
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
        await desk.close()
        return desk, offer, notice, offered, ack

    desk, offer, notice, offered, ack = asyncio.run(scenario())

    post = desk.get(offer)
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
    sent = desk.get(notice)
    assert sent.published_at is not None
    assert 0 <= arrived.at - sent.published_at < 0.5
