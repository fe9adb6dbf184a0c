"""Threads specifics: container then publish, the daily allowance, emoji lengths."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from switchboard.channels.base import ChannelError
from tests.channels.harness import Harness, message, run
from tests.fakes.fake_threads import FakeThreads
from tests.fakes.server import Fail, Hold


def fake(h: Harness) -> FakeThreads:
    assert isinstance(h.fake, FakeThreads)
    return h.fake


def test_a_post_is_a_container_then_its_publication(threads: Harness) -> None:
    receipt = run(threads.publish(message(text="Bus times", link="https://ex.org/b")))
    [container] = fake(threads).containers.values()
    assert container.text == "Bus times https://ex.org/b"
    assert container.status == "PUBLISHED" and receipt.remote_id == container.media_id
    paths = [r.path.split("?")[0].rsplit("/", 1)[-1] for r in fake(threads).requests]
    assert paths == ["threads_publishing_limit", "threads", "threads_publish"]


def test_a_used_up_daily_allowance_holds_the_post_without_spending_a_call(
        threads: Harness) -> None:
    fake(threads).quota_usage = 250
    with pytest.raises(ChannelError) as caught:
        run(threads.publish(message()))
    assert caught.value.reason == "rate_limited" and not caught.value.permanent
    # Held for an hour, then the allowance is read again.
    until = datetime.fromisoformat(caught.value.message.split("until ")[1].split(";")[0])
    assert 3500 < until.timestamp() - time.time() <= 3601
    assert fake(threads).containers == {} and threads.requests == []


def test_an_unanswered_publish_is_not_published_again(threads: Harness) -> None:
    fake(threads.cutting_hangs_short()).script(Hold(then="drop", apply=True))
    receipt = run(threads.publish(message(text="Lift out of order")))
    [post] = fake(threads).posts
    assert receipt.already_existed and receipt.remote_id == post.id
    assert len(fake(threads).containers) == 1
    assert len(threads.requests) == 1, "the container was published once"


def test_a_container_not_yet_published_is_published_after_a_failure(threads: Harness) -> None:
    fake(threads).script(Fail(503))
    run(threads.publish(message(text="Lift back in service")))
    assert fake(threads).texts == ["Lift back in service"]
    assert len(fake(threads).containers) == 1


def test_emoji_count_as_their_utf8_bytes(threads: Harness) -> None:
    channel = threads.channel()
    assert channel.length("abc") == 3
    assert channel.length("🚆") == 4
    assert channel.length("🇬🇧") == 8
    assert channel.length("é") == 1


def test_a_refused_retraction_names_the_permission_it_needs(threads: Harness) -> None:
    async def publish_then_retract() -> None:
        async with threads.opened() as channel:
            receipt = await channel.publish(message())
            fake(threads).script(Fail(403, "Application does not have permission"))
            with pytest.raises(ChannelError) as caught:
                await channel.retract("101", receipt.remote_id, datetime.now(UTC))
            assert caught.value.permanent and caught.value.reason == "auth"
            assert "threads_delete" in caught.value.message

    run(publish_then_retract())
    assert len(fake(threads).live) == 1
