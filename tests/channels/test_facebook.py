"""Facebook specifics: the Graph API shapes, usage headers and token errors."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from switchboard.channels.base import ChannelError
from tests.channels.harness import NO_RESET_WAIT, Harness, message, run
from tests.fakes.fake_facebook import FakeFacebook, PagePost
from tests.fakes.server import Fail, RateLimit, Reply


def fake(h: Harness) -> FakeFacebook:
    assert isinstance(h.fake, FakeFacebook)
    return h.fake


def test_the_link_goes_as_a_link_preview_beside_the_message(facebook: Harness) -> None:
    receipt = run(facebook.publish(message(text="Spring fares", link="https://ex.org/f")))
    [post] = fake(facebook).posts
    assert (post.message, post.link) == ("Spring fares", "https://ex.org/f")
    assert receipt.remote_id == post.id and post.id.startswith(fake(facebook).page_id + "_")


def test_a_page_near_its_usage_limit_spaces_its_calls(facebook: Harness) -> None:
    fake(facebook).usage = 95  # percent of the Page's allowance, in X-Page-Usage

    async def two() -> None:
        async with facebook.opened() as channel:
            await channel.publish(message("1", "first"))
            await channel.publish(message("2", "second"))

    run(two())
    first, second = facebook.requests
    # 75% slows down; at 95% the pause is 80% of rate_limit_wait.
    assert second.at - first.at >= NO_RESET_WAIT * 0.8 * 0.9
    assert fake(facebook).texts == ["first", "second"]


def test_a_page_with_room_to_spare_is_not_slowed(facebook: Harness) -> None:
    fake(facebook).usage = 20

    async def two() -> None:
        async with facebook.opened() as channel:
            await channel.publish(message("1", "first"))
            await channel.publish(message("2", "second"))

    run(two())
    first, second = facebook.requests
    assert second.at - first.at < NO_RESET_WAIT * 0.5


def test_an_expired_page_token_is_permanent_and_says_what_to_do(facebook: Harness) -> None:
    fake(facebook).script(Reply(400, {"error": {
        "message": "Error validating access token: Session has expired on Tuesday.",
        "type": "OAuthException", "code": 190, "error_subcode": 463, "fbtrace_id": "Ax"}}))
    with pytest.raises(ChannelError) as caught:
        run(facebook.publish(message()))
    assert caught.value.permanent and caught.value.reason == "auth"
    assert "Page token is expired or revoked" in caught.value.message
    assert "code 190, subcode 463" in caught.value.message
    assert len(facebook.requests) == 1


def test_a_throttled_page_waits_the_minutes_facebook_names(facebook: Harness) -> None:
    fake(facebook).script(RateLimit(time.time() + 90))  # "estimated_time_to_regain_access": 2
    started = time.time()

    async def attempt() -> None:
        async with facebook.opened(rate_limit_max_wait=30) as channel:
            with pytest.raises(ChannelError) as caught:
                await channel.publish(message())
            assert caught.value.reason == "rate_limited" and not caught.value.permanent
            assert "not waiting more than 30s" in caught.value.message

    run(attempt())
    assert time.time() - started < 5, "a two-minute block is not slept through"
    assert len(facebook.requests) == 1


def test_an_unanswered_post_is_found_on_the_page_instead_of_posted_again(
        facebook: Harness) -> None:
    fake(facebook).script(Fail(502, apply=True))
    receipt = run(facebook.publish(message(text="Timetable change")))
    [post] = fake(facebook).posts
    assert receipt.already_existed and receipt.remote_id == post.id
    assert [r.method for r in fake(facebook).requests] == ["POST", "GET"]


def test_a_throttling_code_is_a_transient_rate_limit(facebook: Harness) -> None:
    fake(facebook).script(Reply(400, {"error": {"message": "(#4) Application request limit "
                                                "reached", "type": "OAuthException",
                                                "code": 4, "fbtrace_id": "Ay"}}))
    run(facebook.publish(message()))
    limited, after = facebook.requests
    assert after.at - limited.at >= NO_RESET_WAIT * 0.9
    assert len(fake(facebook).live) == 1


def test_an_older_post_with_the_same_words_is_not_taken_for_this_one(
        facebook: Harness) -> None:
    page = fake(facebook)
    run(facebook.publish(message("1", "Lifts at Central are working again")))
    page.posts[0].created -= timedelta(hours=3)
    page.posts.append(PagePost(id=f"{page.page_id}_9", message="Something else", link=None))
    page.script(Fail(503))  # may have got through; it did not
    receipt = run(facebook.publish(message("2", "Lifts at Central are working again")))
    assert not receipt.already_existed
    assert page.texts.count("Lifts at Central are working again") == 2
