"""X specifics: the real tweepy client against the fake X API."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from switchboard.channels.base import ChannelError, Receipt
from tests.channels.harness import HANG_TIMEOUT, Harness, message, run
from tests.fakes.fake_x import DUPLICATE_DETAIL, FakeX, duplicate
from tests.fakes.server import Fail, Hold, RateLimit, Reset


def fake(h: Harness) -> FakeX:
    assert isinstance(h.fake, FakeX)
    return h.fake


def test_a_duplicate_is_a_permanent_failure_with_xs_message(x: Harness) -> None:
    async def publish_twice() -> None:
        async with x.opened() as channel:
            await channel.publish(message("1", "Same words"))
            with pytest.raises(ChannelError) as caught:
                await channel.publish(message("2", "Same words"))
            assert caught.value.permanent
            assert caught.value.reason == "duplicate"
            assert DUPLICATE_DETAIL in caught.value.message
            assert channel.last_error is not None
            assert DUPLICATE_DETAIL in channel.last_error.message

    run(publish_twice())
    assert fake(x).texts == ["Same words"]


def test_a_scripted_duplicate_on_the_first_attempt_is_not_mistaken_for_success(
        x: Harness) -> None:
    fake(x).script(duplicate())
    with pytest.raises(ChannelError) as caught:
        run(x.publish(message()))
    assert caught.value.permanent and caught.value.reason == "duplicate"
    assert len(x.requests) == 1


def test_500_then_201_publishes_one_tweet(x: Harness) -> None:
    fake(x).script(Fail(500))
    receipt = run(x.publish(message(text="Half-term deals")))
    assert fake(x).texts == ["Half-term deals"]
    assert receipt == Receipt(remote_id=fake(x).tweets[0].id)
    assert [r.step for r in x.requests] == ["fail 500", "normal"]


def test_a_hung_create_that_got_through_is_published_once_not_twice(x: Harness) -> None:
    fake(x.cutting_hangs_short()).script(Hold(then="answer", apply=True))
    receipt = run(x.publish(message(text="Weekend sale")))
    assert receipt == Receipt(remote_id=None, already_existed=True)
    assert fake(x).texts == ["Weekend sale"]
    first, second = x.requests
    assert second.at - first.at >= HANG_TIMEOUT * 0.9


@pytest.mark.parametrize("lost", [Reset(apply=True), Fail(503, apply=True),
                                  Hold(then="drop", apply=True)],
                         ids=["reset", "503", "dropped"])
def test_a_lost_answer_then_duplicate_counts_as_published(
        x: Harness, lost: Reset | Fail | Hold) -> None:
    if isinstance(lost, Hold):
        x.cutting_hangs_short()
    fake(x).script(lost)
    receipt = run(x.publish(message(text="Flash sale")))
    assert receipt.already_existed
    assert fake(x).texts == ["Flash sale"]


def test_a_hung_create_that_did_not_get_through_is_retried(x: Harness) -> None:
    fake(x.cutting_hangs_short()).script(Hold(then="answer", apply=False))
    receipt = run(x.publish(message(text="Gift cards")))
    assert receipt == Receipt(remote_id=fake(x).tweets[0].id)
    assert fake(x).texts == ["Gift cards"]


def test_requests_go_to_api_url_signed_with_oauth1(x: Harness) -> None:
    run(x.publish(message()))
    (request,) = x.requests
    assert request.path == "/2/tweets"
    auth = request.header("Authorization") or ""
    assert auth.startswith("OAuth ")
    assert 'oauth_consumer_key="fake-consumer-key"' in auth
    assert "oauth_signature=" in auth


def test_wrong_credentials_are_a_permanent_auth_failure(x: Harness) -> None:
    fake(x).consumer_key = "another-key"
    with pytest.raises(ChannelError) as caught:
        run(x.publish(message()))
    assert caught.value.permanent and caught.value.reason == "auth"
    assert "401" in caught.value.message
    assert len(x.requests) == 1


def test_a_too_long_text_is_refused_with_xs_message(x: Harness) -> None:
    with pytest.raises(ChannelError) as caught:
        run(x.publish(message(text="x" * 300)))
    assert caught.value.permanent
    assert "too long" in caught.value.message


def test_the_link_is_appended_to_the_text(x: Harness) -> None:
    run(x.publish(message(text="Tickets", link="https://example.org/t")))
    assert fake(x).texts == ["Tickets https://example.org/t"]


def test_a_rate_limited_publish_does_not_hold_back_a_retraction(x: Harness) -> None:
    async def scenario() -> None:
        async with x.opened(rate_limit_max_wait=1) as channel:
            receipt = await channel.publish(message("1", "Offer"))
            fake(x).script(RateLimit(time.time() + 60))
            with pytest.raises(ChannelError):
                await channel.publish(message("2", "Another offer"))
            await channel.retract("1", receipt.remote_id, datetime.now(UTC))

    run(scenario())
    assert fake(x).texts == []


def test_retracting_a_tweet_that_is_already_gone_succeeds(x: Harness) -> None:
    async def scenario() -> None:
        async with x.opened() as channel:
            receipt = await channel.publish(message())
            await channel.retract("101", receipt.remote_id, datetime.now(UTC))
            await channel.retract("101", receipt.remote_id, datetime.now(UTC))
            assert channel.last_error is None

    run(scenario())


def test_retracting_without_a_tweet_id_is_a_permanent_failure(x: Harness) -> None:
    async def scenario() -> None:
        async with x.opened() as channel:
            with pytest.raises(ChannelError) as caught:
                await channel.retract("101", None, datetime.now(UTC))
            assert caught.value.permanent
            assert channel.last_error is not None

    run(scenario())
    assert x.requests == []
