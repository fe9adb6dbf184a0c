"""Mastodon specifics: the real Mastodon.py client against the fake server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchboard.channels.base import ChannelError, Receipt
from switchboard.channels.mastodon import MastodonChannel
from switchboard.config import ChannelConfig
from tests.channels.harness import Harness, message, run
from tests.fakes.fake_mastodon import FakeMastodon
from tests.fakes.server import Fail, Hold, Reset


def fake(h: Harness) -> FakeMastodon:
    assert isinstance(h.fake, FakeMastodon)
    return h.fake


def test_the_post_id_is_sent_as_idempotency_key(mastodon: Harness) -> None:
    run(mastodon.publish(message(post_id="4242")))
    (request,) = mastodon.requests
    assert request.header("Idempotency-Key") == "4242"
    assert request.fields()["status"] == message().text


@pytest.mark.parametrize("lost", [Hold(then="answer", apply=True), Reset(apply=True),
                                  Fail(502, apply=True)], ids=["hang", "reset", "502"])
def test_a_retry_after_a_lost_answer_returns_the_first_status(
        mastodon: Harness, lost: Hold | Reset | Fail) -> None:
    if isinstance(lost, Hold):
        mastodon.cutting_hangs_short()
    fake(mastodon).script(lost)
    receipt = run(mastodon.publish(message(text="Autumn timetable offer")))
    (status,) = fake(mastodon).statuses
    assert receipt == Receipt(remote_id=status.id)
    assert len(mastodon.requests) == 2


def test_building_the_channel_makes_no_request(mastodon: Harness) -> None:
    mastodon.channel()
    MastodonChannel(ChannelConfig(id="m", kind="mastodon",
                                  options={"api_base_url": "https://mastodon.invalid"},
                                  secrets={"access_token": "t"}))
    assert mastodon.requests == []


def test_a_validation_error_is_permanent_with_the_servers_message(mastodon: Harness) -> None:
    with pytest.raises(ChannelError) as caught:
        run(mastodon.publish(message(text="x" * 501)))
    assert caught.value.permanent and caught.value.reason == "rejected"
    assert "422" in caught.value.message
    assert "character limit of 500 exceeded" in caught.value.message


def test_a_wrong_token_is_a_permanent_auth_failure(mastodon: Harness) -> None:
    fake(mastodon).access_token = "rotated"
    with pytest.raises(ChannelError) as caught:
        run(mastodon.publish(message()))
    assert caught.value.permanent and caught.value.reason == "auth"
    assert "The access token is invalid" in caught.value.message


def test_retracting_a_status_that_is_already_gone_succeeds(mastodon: Harness) -> None:
    async def scenario() -> None:
        async with mastodon.opened() as channel:
            receipt = await channel.publish(message())
            for _ in range(2):
                await channel.retract("101", receipt.remote_id, datetime.now(UTC))
            assert channel.last_error is None

    run(scenario())
    assert fake(mastodon).texts == []
