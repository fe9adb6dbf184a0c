"""Telegram specifics: the Bot API envelope, the 48-hour deletion window."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchboard.channels.base import ChannelError, Receipt
from tests.channels.harness import Harness, message, run
from tests.fakes.fake_telegram import FakeTelegram


def fake(h: Harness) -> FakeTelegram:
    assert isinstance(h.fake, FakeTelegram)
    return h.fake


def test_a_retraction_after_48_hours_is_refused_and_says_why(telegram: Harness) -> None:
    async def publish_then_retract_late() -> None:
        async with telegram.opened() as channel:
            receipt = await channel.publish(message())
            assert receipt.remote_id is not None
            fake(telegram).age(int(receipt.remote_id), 49 * 3600)
            with pytest.raises(ChannelError) as caught:
                await channel.retract("101", receipt.remote_id, datetime.now(UTC))
            assert caught.value.permanent and caught.value.reason == "rejected"
            assert "only within 48 hours" in caught.value.message
            assert "delete it in the channel by hand" in caught.value.message

    run(publish_then_retract_late())
    assert len(fake(telegram).live) == 1


def test_retracting_a_message_already_deleted_succeeds(telegram: Harness) -> None:
    async def twice() -> Receipt:
        async with telegram.opened() as channel:
            receipt = await channel.publish(message())
            for _ in range(2):
                await channel.retract("101", receipt.remote_id, datetime.now(UTC))
            return receipt

    run(twice())
    assert fake(telegram).live == []


def test_the_bot_token_never_appears_in_an_error(telegram: Harness) -> None:
    fake(telegram).stop()  # nothing listens: the error names only host and port
    with pytest.raises(ChannelError) as caught:
        run(telegram.publish(message()))
    assert fake(telegram).bot_token not in caught.value.message
    assert "cannot reach Telegram" in caught.value.message


def test_length_is_counted_in_utf16_code_units(telegram: Harness) -> None:
    channel = telegram.channel()
    assert channel.length("Ab") == 2
    assert channel.length("🚆") == 2
