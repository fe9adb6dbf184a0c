"""The contract every channel kind keeps, run over all of them.

`any_kind` covers every kind (network kinds against their fake servers, the
local kinds as they are); `remote` covers the network kinds, whose failures
(refusals, 5xx, timeouts, rate limits) a fake can script.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from switchboard.channels.base import ChannelError, Receipt
from tests.channels.harness import HANG, MAX_RETRIES, NO_RESET_WAIT, TIMEOUT, Harness, message, run
from tests.fakes.server import Fail, Hang, Normal, RateLimit, Reset

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
        remote: Harness, failure: Fail | Reset) -> None:
    assert remote.fake is not None
    remote.fake.script(failure)
    msg = message()
    receipt = run(remote.publish(msg))
    assert remote.count(msg.text) == 1
    failed, retried = remote.requests
    assert failed.step != "normal" and retried.step == "normal"
    if remote.gives_ids:
        assert receipt.remote_id


def test_success_clears_the_last_error(remote: Harness) -> None:
    assert remote.fake is not None
    remote.fake.script(*[Fail(500)] * (MAX_RETRIES + 1))

    async def fail_then_succeed() -> None:
        async with remote.opened() as channel:
            with pytest.raises(ChannelError) as caught:
                await channel.publish(message("1", "first"))
            assert not caught.value.permanent
            assert channel.last_error is not None and not channel.last_error.permanent
            await channel.publish(message("2", "second"))
            assert channel.last_error is None

    run(fail_then_succeed())
    assert len(remote.requests) == MAX_RETRIES + 2


def test_retries_are_bounded(remote: Harness) -> None:
    assert remote.fake is not None
    remote.fake.script(*[Fail(502)] * 10)
    with pytest.raises(ChannelError) as caught:
        run(remote.publish(message()))
    assert not caught.value.permanent
    assert f"after {MAX_RETRIES + 1} attempts" in caught.value.message
    assert len(remote.requests) == MAX_RETRIES + 1


@pytest.mark.parametrize("apply", [True, False], ids=["applied-then-hung", "hung"])
def test_a_hung_request_times_out_and_is_retried_without_a_duplicate(
        remote: Harness, apply: bool) -> None:
    assert remote.fake is not None
    remote.fake.script(Hang(HANG, then="answer", apply=apply))
    msg = message()
    started = time.monotonic()
    run(remote.publish(msg))
    assert time.monotonic() - started < HANG, "the client's timeout must cut the hang short"
    first, second = remote.requests[:2]
    assert second.at - first.at >= TIMEOUT * 0.9
    assert remote.count(msg.text) == 1


def test_a_rate_limit_waits_for_the_reset_then_publishes(remote: Harness) -> None:
    assert remote.fake is not None
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
