"""Bluesky specifics: the real atproto SDK against the fake PDS."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.channels.base import ChannelError
from switchboard.channels.bluesky import record_key
from switchboard.textlength import graphemes
from tests.channels.harness import Harness, message, run
from tests.fakes.fake_bluesky import FakeBluesky
from tests.fakes.server import Fail


def fake(h: Harness) -> FakeBluesky:
    assert isinstance(h.fake, FakeBluesky)
    return h.fake


def test_one_login_serves_many_posts(bluesky: Harness) -> None:
    async def three() -> None:
        async with bluesky.opened() as channel:
            for n in range(3):
                await channel.publish(message(str(n), f"offer {n}"))

    run(three())
    assert fake(bluesky).logins == 1
    assert fake(bluesky).texts == ["offer 0", "offer 1", "offer 2"]


def test_an_expired_session_is_replaced_by_one_new_login(bluesky: Harness) -> None:
    async def publish_across_expiry() -> None:
        async with bluesky.opened() as channel:
            await channel.publish(message("1", "before"))
            fake(bluesky).expire_sessions()
            await channel.publish(message("2", "after"))
            assert channel.last_error is None

    run(publish_across_expiry())
    assert fake(bluesky).logins == 2
    assert fake(bluesky).texts == ["before", "after"]


def test_a_wrong_app_password_is_permanent_and_names_the_account(bluesky: Harness) -> None:
    config = bluesky.config
    bluesky.config = replace(config, secrets={"app_password": "wrong-pass-word-here"})

    async def attempt() -> None:
        async with bluesky.opened() as channel:
            with pytest.raises(ChannelError) as caught:
                await channel.publish(message())
            assert caught.value.permanent and caught.value.reason == "auth"
            assert "council.example.org" in caught.value.message
            assert "Invalid identifier or password" in caught.value.message

    run(attempt())
    assert fake(bluesky).records == []


def test_a_retry_after_a_lost_answer_rewrites_the_same_record(bluesky: Harness) -> None:
    fake(bluesky).script(Fail(502, apply=True))
    receipt = run(bluesky.publish(message("7", "Timetable change")))
    [record] = fake(bluesky).records
    assert record.writes == 2, "both attempts wrote, under one record key"
    assert receipt.remote_id == record.uri


def test_the_record_key_is_a_tid_fixed_per_send_and_distinct_per_install() -> None:
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    key = record_key("install-a", "42", at)
    assert key == record_key("install-a", "42", at)
    assert len(key) == 13 and key[0] in "234567abcdefghij"
    assert record_key("install-b", "42", at) != key, "a second store cannot take this post's key"
    assert record_key("install-a", "43", at) != key


def test_posts_made_by_one_request_never_share_a_record_key() -> None:
    """A bulk schedule stores thousands of posts at one creation time: a key shared
    by two of them would make the second send overwrite the first post."""
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    keys = {record_key("install-a", str(post_id), at) for post_id in range(1, 20_001)}
    assert len(keys) == 20_000
    later = datetime(2026, 12, 1, 9, 30, 0, 3_000, tzinfo=UTC)  # 3 ms on, ids after
    assert not keys & {record_key("install-a", str(post_id), later)
                       for post_id in range(20_001, 40_001)}


def test_requests_whose_ids_were_drawn_out_of_time_order_never_share_a_record_key() -> None:
    """Two requests stored side by side: the later one drew the smaller ids (four
    writers, or two daemons, draw from one sequence in any order)."""
    first = datetime(2026, 12, 1, 9, 30, 0, 500_000, tzinfo=UTC)
    earlier_ids = {record_key("i", str(post_id), first) for post_id in range(6_000, 7_000)}
    for gap in range(0, 400_000, 97):
        later = first + timedelta(microseconds=gap)
        assert not earlier_ids & {record_key("i", str(post_id), later)
                                  for post_id in range(5_000, 6_000, 7)}, gap


def test_a_released_post_sent_again_rewrites_its_record_instead_of_adding_one(
        bluesky: Harness) -> None:
    # The first send landed but its answer was lost (`unknown`); someone released it.
    created = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    first = replace(message("9", "Bridge closed"), created_at=created)
    again = replace(first, sent_at=datetime(2026, 12, 1, 11, 0, tzinfo=UTC))
    run(bluesky.publish(first))
    run(bluesky.publish(again))
    [record] = fake(bluesky).records
    assert record.writes == 2 and fake(bluesky).texts == ["Bridge closed"]


def test_links_become_facets_at_their_utf8_byte_offsets(bluesky: Harness) -> None:
    link = "https://example.org/fares"
    run(bluesky.publish(message(text="Neue Fahrpläne 🚆 ab Montag", link=link)))
    [record] = fake(bluesky).records
    text = record.value["text"]
    assert text == f"Neue Fahrpläne 🚆 ab Montag {link}"
    [facet] = record.value["facets"]
    start = len(text[:text.index(link)].encode("utf-8"))
    assert facet["index"] == {"byteStart": start, "byteEnd": start + len(link),
                              "$type": "app.bsky.richtext.facet#byteSlice"}
    assert facet["features"][0]["uri"] == link


def test_length_is_counted_in_graphemes_as_bluesky_counts() -> None:
    assert graphemes("🇬🇧👨‍👩‍👧é") == 3
    assert graphemes("a" * 300) == 300


def test_a_used_up_window_holds_the_next_call_until_its_reset(bluesky: Harness) -> None:
    pds = fake(bluesky)
    reset = time.time() + 1.2
    pds.window.remaining, pds.window.reset_at = 2, reset  # the login and one post

    async def two() -> None:
        async with bluesky.opened() as channel:
            await channel.publish(message("1", "first"))
            await channel.publish(message("2", "second"))

    run(two())
    first, second = bluesky.requests
    assert first.step == second.step == "normal", "no 429 was needed"
    assert second.at >= reset, "the second post waited for the announced reset"
    assert pds.texts == ["first", "second"]
