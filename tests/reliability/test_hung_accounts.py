"""Hung X accounts cannot open a leak or slow the healthy ones (design 7.1).

The real dispatcher, gate and store in-process, and real tweepy against one
fake X server per account. Six accounts hang on their sends. The loop's
shared thread pool is sized as on a two-core machine (2 + 4 threads): were
the sends queued there, a seventh account's marketing post would wait behind
the hung ones after the gate said yes, and reach X after the declaration.
The second test does the same through the real daemon, its API and its own
default pool, with enough hung accounts to fill that pool on this machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from switchboard.channels import build_channel
from switchboard.channels.base import Channel
from switchboard.config import ChannelConfig
from tests.channels.desk import Desk, until
from tests.daemon import DaemonProcess, base_config, free_port
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
            await desk.post(f"x-{n}", "marketing", f"Offer {n}")
        await until(lambda: all(f.requests for f in hung))  # every hung send is in
        offered = time.time()
        offer = await desk.post(f"x-{HUNG}", "marketing", "Spring sale on every line")
        notice = await desk.post(f"x-{HUNG + 1}", "operational", "Lifts at Central work again")

        async def offer_taken() -> bool:
            return await desk.state(offer) not in ("queued", "scheduled")

        async def both_done() -> bool:
            return (await desk.state(offer) not in ("sending", "queued")
                    and await desk.state(notice) == "published")

        await until(offer_taken)
        ack = await desk.declare(f"x-{HUNG}")  # the gate said yes to the offer; the send follows
        await until(both_done)
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


# -- the same through the real daemon ---------------------------------------------

# Enough hung accounts to fill asyncio's shared pool on this machine.
DAEMON_HUNG = min(32, (os.cpu_count() or 1) + 4)
RUNBOOK = "name: drill\ntitle: Drill\nseverity: major\nsuppress: [marketing]\n"
CREDENTIALS = {"consumer_key_env": "SB_X_CK", "consumer_secret_env": "SB_X_CS",
               "access_token_env": "SB_X_AT", "access_token_secret_env": "SB_X_ATS"}


def x_account(n: int, fake: FakeX) -> dict[str, Any]:
    return {"id": f"x-{n}", "kind": "x", "api_url": fake.url, "timeout": TIMEOUT,
            "max_retries": 0, "credentials": CREDENTIALS}


@pytest.mark.integration
def test_a_declaration_on_the_daemon_holds_a_post_that_waited_behind_hung_accounts(
        tmp_path: Path) -> None:
    with ExitStack() as stack:
        fakes = [stack.enter_context(FakeX()) for _ in range(DAEMON_HUNG + 1)]
        hung, target = fakes[:DAEMON_HUNG], fakes[DAEMON_HUNG]
        for fake in hung:
            fake.script(Hang(HANG, then="answer", apply=True))
        secrets = fakes[0].credentials
        daemon = DaemonProcess(
            tmp_path, config=base_config(tmp_path, free_port(),
                                         [x_account(n, f) for n, f in enumerate(fakes)]),
            runbooks={"drill": RUNBOOK},
            env={"SB_X_CK": secrets["consumer_key"], "SB_X_CS": secrets["consumer_secret"],
                 "SB_X_AT": secrets["access_token"], "SB_X_ATS": secrets["access_token_secret"]})
        daemon.start()
        stack.callback(daemon.kill)
        at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        daemon.ok("POST", "/api/v1/posts", [{"channel": f"x-{n}", "text": f"Offer {n}", "at": at}
                                            for n in range(DAEMON_HUNG)], role="marketing")
        daemon.wait_for(lambda: all(f.requests for f in hung))  # every hung send is in
        (offer,) = daemon.ok("POST", "/api/v1/posts",
                             [{"channel": f"x-{DAEMON_HUNG}", "text": "Spring sale",
                               "at": datetime.now(UTC).isoformat()}], role="marketing")
        daemon.wait_for(lambda: daemon.ok("GET", f"/api/v1/posts/{offer['id']}")["state"]
                        not in ("scheduled", "queued"), every=0.005)
        declared = daemon.api("POST", "/api/v1/incidents",
                              {"runbook": "drill", "title": "Signal failure",
                               "channels": [f"x-{DAEMON_HUNG}"]}, role="ops")
        ack = time.time()
        assert declared.status_code == 201, declared.text
        daemon.wait_for(lambda: all(f.texts for f in hung), timeout=HANG + 10)
        post = daemon.wait_for(lambda: (p := daemon.ok("GET", f"/api/v1/posts/{offer['id']}"))
                               ["state"] not in ("sending", "queued", "scheduled") and p)
    late = [r for r in target.requests if r.at > ack]
    if post["state"] == "published":
        sent_at = datetime.fromisoformat(post["published_at"]).timestamp()
        assert sent_at <= ack, "a send started after the declaration's 201"
        assert all(r.at - sent_at < 0.5 for r in target.requests), (
            f"the offer reached X {late[0].at - ack:.2f}s after the declaration's 201")
    else:
        assert post["state"] == "suppressed", post
        assert target.requests == [], "a suppressed post reached X"
