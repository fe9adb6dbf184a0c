"""The retry loop the network channels share, on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from switchboard.channels.base import ChannelError, Message
from switchboard.channels.remote import compose
from switchboard.channels.retry import RateLimited, Retrier, RetryPolicy


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def retrier(t: FakeTime, rand: float = 1.0, **options: float) -> Retrier:
    return Retrier(RetryPolicy.from_options(options), t.clock, sleep=t.sleep,
                   rand=lambda: rand)


def failing(*errors: ChannelError) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return calls, attempt


def test_backoff_doubles_from_the_base_and_is_capped() -> None:
    t = FakeTime()
    _, attempt = failing(*[ChannelError("503")] * 4)
    result = asyncio.run(retrier(t, max_retries=5, retry_base=1, retry_max=5).run(
        "publish", attempt))
    assert result == "ok"
    assert t.sleeps == [1, 2, 4, 5]


def test_jitter_keeps_each_delay_between_half_and_all_of_the_step() -> None:
    t = FakeTime()
    _, attempt = failing(ChannelError("503"), ChannelError("503"))
    asyncio.run(retrier(t, rand=0.0, retry_base=1).run("publish", attempt))
    assert t.sleeps == [0.5, 1.0]


def test_a_permanent_error_is_raised_at_once() -> None:
    t = FakeTime()
    calls, attempt = failing(ChannelError("bad token", permanent=True))
    with pytest.raises(ChannelError, match="bad token"):
        asyncio.run(retrier(t).run("publish", attempt))
    assert calls == [1] and t.sleeps == []


def test_a_rate_limit_sleeps_exactly_until_the_reset() -> None:
    t = FakeTime()
    _, attempt = failing(RateLimited("429", reset_at=t.now + 42))
    asyncio.run(retrier(t).run("publish", attempt))
    assert t.sleeps == [42]


def test_a_rate_limit_without_reset_waits_the_configured_time() -> None:
    t = FakeTime()
    _, attempt = failing(RateLimited("429", reset_at=None))
    asyncio.run(retrier(t, rate_limit_wait=7).run("publish", attempt))
    assert t.sleeps == [7]


def test_a_reset_beyond_the_longest_wait_fails_fast_and_is_remembered() -> None:
    t = FakeTime()
    r = retrier(t, rate_limit_max_wait=60)
    calls, attempt = failing(RateLimited("429", reset_at=t.now + 3600))
    for _ in range(2):
        with pytest.raises(ChannelError, match="rate limited until") as caught:
            asyncio.run(r.run("publish", attempt))
        assert caught.value.reason == "rate_limited" and not caught.value.permanent
    assert calls == [1], "the account is not asked again before its reset"
    assert r.blocked_until("publish") == t.now + 3600
    assert r.blocked_until("retract") is None
    t.now += 3600
    assert asyncio.run(r.run("publish", attempt)) == "ok"


def test_giving_up_keeps_the_last_reason() -> None:
    t = FakeTime()
    _, attempt = failing(*[ChannelError("read timed out", reason="timeout")] * 3)
    with pytest.raises(ChannelError) as caught:
        asyncio.run(retrier(t, max_retries=2).run("publish", attempt))
    assert caught.value.reason == "timeout"
    assert caught.value.message == "read timed out (gave up after 3 attempts)"


def test_options_fall_back_to_defaults() -> None:
    assert RetryPolicy.from_options({}) == RetryPolicy()
    policy = RetryPolicy.from_options({"max_retries": 0, "retry_base": "0.5"})
    assert policy.max_retries == 0 and policy.retry_base == 0.5


def test_compose_appends_the_link_once() -> None:
    def msg(text: str, link: str | None) -> Message:
        return Message("1", "c", "marketing", text, link, datetime.now(UTC))

    assert compose(msg("Hi", None)) == "Hi"
    assert compose(msg("Hi", "https://e.org")) == "Hi https://e.org"
    assert compose(msg("See https://e.org now", "https://e.org")) == "See https://e.org now"


def test_a_gate_closed_during_a_rate_limit_wait_stops_the_send() -> None:
    t = FakeTime()
    calls, attempt = failing(RateLimited("429", reset_at=t.now + 30))
    open_gate = [True]

    async def run() -> str:
        task = retrier(t).run("publish", attempt, lambda: open_gate[0])
        open_gate[0] = False  # an incident is declared while the post waits for the reset
        return await task

    with pytest.raises(ChannelError) as caught:
        asyncio.run(run())
    assert caught.value.reason == "gate_closed"
    assert len(calls) == 1, "no second attempt once the gate closed"


def test_a_retry_after_a_possibly_delivered_attempt_stops_at_a_closed_gate() -> None:
    # A timeout may have reached the platform: with the gate closed meanwhile the
    # post is neither retried (a webhook would show it twice) nor called failed.
    t = FakeTime()
    calls, attempt = failing(ChannelError("timeout", reason="timeout"))
    with pytest.raises(ChannelError) as caught:
        asyncio.run(retrier(t).run("publish", attempt, lambda: False))
    assert caught.value.maybe_sent and caught.value.reason == "gate_closed"
    assert len(calls) == 1


def test_a_post_waiting_out_another_posts_rate_limit_asks_the_gate_first() -> None:
    t = FakeTime()
    r = retrier(t, max_retries=0)
    _, limited = failing(RateLimited("429", reset_at=t.now + 30))
    with pytest.raises(ChannelError):
        asyncio.run(r.run("publish", limited))  # the account is now blocked for 30 s
    calls, attempt = failing()
    with pytest.raises(ChannelError) as caught:
        asyncio.run(r.run("publish", attempt, lambda: False))
    assert caught.value.reason == "gate_closed" and not caught.value.maybe_sent
    assert calls == [], "the post that waited never reached the platform"
    assert t.sleeps == [30]


def test_giving_up_after_a_possibly_delivered_attempt_says_so() -> None:
    t = FakeTime()
    _, attempt = failing(*[ChannelError("timeout", reason="timeout")] * 4)
    with pytest.raises(ChannelError) as caught:
        asyncio.run(retrier(t, max_retries=3).run("publish", attempt))
    assert caught.value.maybe_sent and not caught.value.permanent


def test_giving_up_on_rate_limits_alone_says_nothing_was_sent() -> None:
    t = FakeTime()
    _, attempt = failing(*[RateLimited("429", reset_at=None)] * 4)
    with pytest.raises(ChannelError) as caught:
        asyncio.run(retrier(t, max_retries=3, rate_limit_wait=1).run("publish", attempt))
    assert not caught.value.maybe_sent
