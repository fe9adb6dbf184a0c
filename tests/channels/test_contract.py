"""The contract every channel kind keeps, run over all of them.

`any_kind` covers every kind (network kinds against their fake servers, the
local kinds as they are); `remote` covers the network kinds, whose failures
(refusals, 5xx, timeouts, rate limits) a fake can script. `repeatable` are the
kinds whose platform recognises a repeated request (an idempotency key, a
record key, a duplicate check, a read-back), so an attempt that may have got
through is retried; `one_shot` the kinds whose platform cannot (Telegram,
Teams), where such an attempt is left for review instead; `gated` the kinds
that ask the gate before every request they write.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from switchboard.channels.base import ChannelError, GateClosed, Receipt
from tests.channels.harness import (
    HANG_TIMEOUT,
    MAX_RETRIES,
    NO_RESET_WAIT,
    Harness,
    message,
    run,
)
from tests.fakes.server import Fail, Hold, Normal, RateLimit, Reset

# -- every kind ---------------------------------------------------------------


def test_it_publishes_once_and_returns_a_receipt(any_kind: Harness) -> None:
    msg = message()
    receipt = run(any_kind.publish(msg))
    assert isinstance(receipt, Receipt)
    assert not receipt.already_existed
    assert any_kind.count(msg.text) == 1
    if any_kind.gives_ids:
        assert receipt.remote_id
    if any_kind.network:
        assert len(any_kind.requests) == 1


def test_it_retracts_a_published_post(any_kind: Harness) -> None:
    msg = message()

    async def publish_then_retract() -> Receipt:
        async with any_kind.opened() as channel:
            receipt = await channel.publish(msg)
            await channel.retract(msg.post_id, receipt.remote_id, datetime.now(UTC))
            assert channel.last_error is None
            return receipt

    receipt = run(publish_then_retract())
    assert any_kind.retracted(msg.post_id, receipt)


def test_a_fresh_channel_has_no_last_error(any_kind: Harness) -> None:
    channel = any_kind.channel()
    assert channel.last_error is None
    assert channel.describe()["kind"] == any_kind.kind
    assert channel.max_length > 0


# -- network kinds: the gate ------------------------------------------------------


def test_a_closed_gate_stops_the_send_before_any_request(gated: Harness) -> None:
    asked: list[int] = []

    def closed() -> bool:
        asked.append(1)
        return False

    msg = replace(message(), may_start=closed)
    with pytest.raises(GateClosed):
        run(gated.publish(msg))
    assert asked, "the gate was asked"
    assert gated.fake is not None and gated.fake.requests == [], "nothing reached the platform"


def test_the_gate_is_asked_before_every_request_of_a_send(gated: Harness) -> None:
    """A declaration between two requests of one post (a login and the post, a
    container and its publication) stops it before the post goes out."""
    fake = gated.fake
    assert fake is not None
    run(gated.publish(replace(message(), may_start=lambda: True)))
    needed = len(fake.requests)  # a fresh channel: login, reads and the post itself
    for allowed in range(needed):
        fake.clear_requests()
        answers = iter([True] * allowed + [False] * 10)
        msg = replace(message(f"gate-{allowed}", f"held {allowed}"),
                      may_start=lambda a=answers: next(a))
        with pytest.raises(GateClosed):
            run(gated.publish(msg))
        assert gated.count(f"held {allowed}") == 0
        assert len(fake.requests) == allowed, "each request had its own yes just before it"


# -- network kinds: how failures are told apart ----------------------------------


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_refusal_is_permanent_keeps_the_message_and_sets_last_error(
        remote: Harness, status: int) -> None:
    assert remote.fake is not None
    remote.fake.script(Fail(status, "Refused for this test (code 7731)"))
    msg = message()

    async def attempt() -> None:
        async with remote.opened() as channel:
            with pytest.raises(ChannelError) as caught:
                await channel.publish(msg)
            assert channel.last_error is not None
            assert channel.last_error.permanent
            assert "code 7731" in channel.last_error.message
            exc = caught.value
            assert exc.permanent
            assert "code 7731" in exc.message

    run(attempt())
    assert len(remote.requests) == 1, "a permanent error is not retried"
    assert remote.count(msg.text) == 0


@pytest.mark.parametrize("failure", [Fail(500), Fail(503), Reset()], ids=["500", "503", "reset"])
def test_a_transient_failure_is_retried_and_publishes_once(
        repeatable: Harness, failure: Fail | Reset) -> None:
    assert repeatable.fake is not None
    repeatable.fake.script(failure)
    msg = message()
    receipt = run(repeatable.publish(msg))
    assert repeatable.count(msg.text) == 1
    failed, retried = repeatable.requests
    assert failed.step != "normal" and retried.step == "normal"
    if repeatable.gives_ids:
        assert receipt.remote_id


def test_success_clears_the_last_error(remote: Harness) -> None:
    assert remote.fake is not None
    attempts = MAX_RETRIES + 1 if remote.repeats_safely else 1
    remote.fake.script(*[Fail(500)] * attempts)

    async def fail_then_succeed() -> None:
        async with remote.opened() as channel:
            with pytest.raises(ChannelError) as caught:
                await channel.publish(message("1", "first"))
            assert caught.value.maybe_sent
            assert channel.last_error is not None
            await channel.publish(message("2", "second"))
            assert channel.last_error is None

    run(fail_then_succeed())
    assert len(remote.requests) == attempts + 1


def test_retries_are_bounded(repeatable: Harness) -> None:
    assert repeatable.fake is not None
    repeatable.fake.script(*[Fail(502)] * 10)
    with pytest.raises(ChannelError) as caught:
        run(repeatable.publish(message()))
    assert not caught.value.permanent
    assert f"after {MAX_RETRIES + 1} attempts" in caught.value.message
    assert len(repeatable.requests) == MAX_RETRIES + 1


@pytest.mark.parametrize("apply", [True, False], ids=["applied-then-hung", "hung"])
def test_a_hung_request_times_out_and_is_retried_without_a_duplicate(
        repeatable: Harness, apply: bool) -> None:
    fake = repeatable.cutting_hangs_short().fake
    assert fake is not None
    fake.script(Hold(then="answer", apply=apply))
    msg = message()
    run(repeatable.publish(msg))
    # The platform never answered it: only the client's timeout can have ended it.
    assert fake.holding == 1, "the hung request was still unanswered when the send ended"
    # The next request of any kind (a retry, or a read of what the hung one did)
    # went out only once the client had given up on the hung one.
    everything = fake.requests
    hung = next(i for i, r in enumerate(everything) if r.step == "hold")
    assert everything[hung + 1].at - everything[hung].at >= HANG_TIMEOUT * 0.9
    assert repeatable.count(msg.text) == 1


@pytest.mark.parametrize("failure", [Fail(500, apply=True), Fail(503), Reset(apply=True),
                                     Hold(then="answer", apply=True),
                                     Hold(then="drop", apply=False)],
                         ids=["500-acted", "503", "reset-acted", "hang-acted", "hang-dropped"])
def test_a_failure_that_may_have_reached_a_platform_without_repeat_detection_is_not_repeated(
        one_shot: Harness, failure: Fail | Reset | Hold) -> None:
    """Telegram and Teams would show a repeated request twice: after an attempt that
    may have got through, the post is left for review (`maybe_sent`) instead."""
    if isinstance(failure, Hold):
        one_shot.cutting_hangs_short()
    assert one_shot.fake is not None
    one_shot.fake.script(failure)
    msg = message()
    with pytest.raises(ChannelError) as caught:
        run(one_shot.publish(msg))
    assert caught.value.maybe_sent and caught.value.permanent
    assert "left for review" in caught.value.message
    assert len(one_shot.requests) == 1
    assert one_shot.count(msg.text) == int(failure.apply)


def test_a_rate_limit_waits_for_the_reset_then_publishes(remote: Harness) -> None:
    assert remote.fake is not None
    if not remote.announces_resets:
        pytest.skip(f"{remote.kind} names no reset to the second (see its own tests)")
    reset_at = time.time() + 1.2
    remote.fake.script(RateLimit(reset_at))
    msg = message()
    run(remote.publish(msg))
    limited, after = remote.requests
    assert limited.step == "ratelimit"
    assert after.at >= reset_at, "no request may reach the platform before the reset"
    assert remote.count(msg.text) == 1


def test_a_rate_limit_without_a_reset_time_backs_off(remote: Harness) -> None:
    assert remote.fake is not None
    remote.fake.script(RateLimit(None))
    msg = message()
    run(remote.publish(msg))
    limited, after = remote.requests
    assert after.at - limited.at >= NO_RESET_WAIT * 0.9
    assert remote.count(msg.text) == 1


def test_a_distant_reset_fails_fast_and_holds_back_later_calls(remote: Harness) -> None:
    assert remote.fake is not None
    if remote.kind == "threads":
        pytest.skip("Threads names no reset time (see test_threads for its daily allowance)")
    remote.fake.script(RateLimit(time.time() + 60))

    async def attempt() -> None:
        async with remote.opened(rate_limit_max_wait=2) as channel:
            for n in range(2):
                started = time.monotonic()
                with pytest.raises(ChannelError) as caught:
                    await channel.publish(message(str(n), f"offer {n}"))
                assert caught.value.reason == "rate_limited"
                assert not caught.value.permanent
                assert time.monotonic() - started < 1

    run(attempt())
    assert len(remote.requests) == 1, "nothing is sent to an account until its reset"


def test_retract_after_a_server_error_is_retried(remote: Harness) -> None:
    fake = remote.fake
    assert fake is not None
    msg = message()

    async def publish_then_retract() -> Receipt:
        async with remote.opened() as channel:
            receipt = await channel.publish(msg)
            fake.script(Fail(500), Normal())
            await channel.retract(msg.post_id, receipt.remote_id, datetime.now(UTC))
            return receipt

    receipt = run(publish_then_retract())
    assert remote.retracted(msg.post_id, receipt)
    assert len(remote.requests) == 3


def test_an_unreachable_platform_is_retried_then_failed_never_unknown(remote: Harness) -> None:
    assert remote.fake is not None
    remote.fake.stop()  # nothing listens on its port now: every connection is refused
    with pytest.raises(ChannelError) as caught:
        run(remote.publish(message()))
    assert not caught.value.permanent
    assert f"after {MAX_RETRIES + 1} attempts" in caught.value.message
    assert not caught.value.maybe_sent, "no attempt reached the platform: failed, not unknown"
