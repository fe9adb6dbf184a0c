"""Post requests: times (RFC 3339, local, offsets, DST), limits, roles, calendars."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from switchboard.channels.x import weighted_length
from switchboard.posts import ChannelLimit, new_post, parse_calendar, parse_when, spaced_times
from switchboard.refusals import Refused

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC).timestamp()
CHANNELS = {"outbox": ChannelLimit("outbox", 280), "x-main": ChannelLimit("x-main", 280)}


def utc(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_rfc3339_with_an_offset_is_taken_as_given() -> None:
    assert parse_when("2026-12-01T09:00:00+01:00", NOW, LONDON) == utc("2026-12-01T08:00:00+00:00")
    assert parse_when("2026-12-01T09:00:00Z", NOW, LONDON) == utc("2026-12-01T09:00:00+00:00")


def test_a_local_time_is_read_in_the_configured_timezone() -> None:
    # London is on summer time (UTC+1) in July, on GMT in December.
    assert parse_when("2026-07-01 09:00", NOW, LONDON) == utc("2026-07-01T08:00:00+00:00")
    assert parse_when("2026-12-01T09:00", NOW, LONDON) == utc("2026-12-01T09:00:00+00:00")


def test_offsets_and_now() -> None:
    assert parse_when("+10m", NOW, LONDON) == NOW + 600
    assert parse_when("+1d", NOW, LONDON) == NOW + 86400
    assert parse_when("now", NOW, LONDON) == NOW


def test_a_time_in_the_spring_forward_gap_does_not_exist() -> None:
    with pytest.raises(Refused) as caught:
        parse_when("2026-03-29 01:30", NOW, LONDON)
    assert "does not exist in Europe/London" in caught.value.message


def test_an_ambiguous_autumn_time_means_its_first_occurrence() -> None:
    # 01:30 happens twice on 2026-10-25: first in BST (00:30 UTC), then in GMT.
    assert parse_when("2026-10-25 01:30", NOW, LONDON) == utc("2026-10-25T00:30:00+00:00")


def test_a_bad_time_names_the_accepted_forms() -> None:
    for bad in ("tomorrow", "+10 minutes", "2026-13-01 09:00"):
        with pytest.raises(Refused) as caught:
            parse_when(bad, NOW, LONDON)
        assert caught.value.status == 400


def test_text_over_the_channel_limit_is_refused_naming_the_limit() -> None:
    with pytest.raises(Refused) as caught:
        new_post({"channel": "outbox", "text": "x" * 281, "at": "+1h"}, role="marketing",
                 now=NOW, tz=LONDON, channels=CHANNELS)
    assert caught.value.status == 422
    assert "at most 280" in caught.value.message


def test_roles_create_their_own_kind_of_post() -> None:
    post = new_post({"channel": "outbox", "text": "Offer", "at": "+1h"}, role="marketing",
                    now=NOW, tz=LONDON, channels=CHANNELS)
    assert (post.kind, post.due_at) == ("marketing", NOW + 3600)
    with pytest.raises(Refused) as caught:
        new_post({"channel": "outbox", "text": "Update", "kind": "operational"},
                 role="marketing", now=NOW, tz=LONDON, channels=CHANNELS)
    assert caught.value.status == 403
    with pytest.raises(Refused):
        new_post({"channel": "outbox", "text": "Offer"}, role="ops", now=NOW, tz=LONDON,
                 channels=CHANNELS)
    assert new_post({"channel": "outbox", "text": "Update", "kind": "operational"},
                    role="admin", now=NOW, tz=LONDON, channels=CHANNELS).kind == "operational"


def test_unknown_channels_fields_and_bad_expiry_are_refused() -> None:
    cases = [({"channel": "nowhere", "text": "x"}, 404),
             ({"channel": "outbox", "text": "x", "colour": "red"}, 400),
             ({"channel": "outbox", "text": ""}, 400),
             ({"channel": "outbox", "text": "x", "at": "+2h", "expires": "+1h"}, 422)]
    for body, status in cases:
        with pytest.raises(Refused) as caught:
            new_post(body, role="marketing", now=NOW, tz=LONDON, channels=CHANNELS)
        assert caught.value.status == status, body


def test_a_calendar_in_csv_and_in_json_lines() -> None:
    csv = b"channel,at,text,kind\noutbox,+1h,Offer one,\nx-main,2026-12-01 09:00,Offer two,\n"
    assert parse_calendar(csv, "cal.csv") == [
        {"channel": "outbox", "at": "+1h", "text": "Offer one"},
        {"channel": "x-main", "at": "2026-12-01 09:00", "text": "Offer two"}]
    lines = b'{"channel": "outbox", "at": "+1h", "text": "a"}\n\n{"channel": "outbox", ' \
            b'"at": "+2h", "text": "b"}\n'
    assert [r["text"] for r in parse_calendar(lines, "cal.jsonl")] == ["a", "b"]
    with pytest.raises(Refused) as caught:
        parse_calendar(b'{"channel": "outbox"}\n{broken\n', "cal.jsonl")
    assert caught.value.message.startswith("cal.jsonl:2: bad JSON")


def test_rescheduled_posts_are_spaced() -> None:
    from datetime import timedelta
    assert spaced_times(100.0, 3, timedelta(minutes=5)) == [100.0, 400.0, 700.0]


def test_a_post_is_measured_with_its_link_by_the_channels_own_count() -> None:
    x = {"x-main": ChannelLimit("x-main", 280, weighted_length)}
    link = "https://example.org/" + "a" * 60
    ok = new_post({"channel": "x-main", "text": "a" * 256, "link": link, "at": "+1h"},
                  role="marketing", now=NOW, tz=LONDON, channels=x)
    assert ok.link == link  # 256 + 1 + 23 = 280: the link counts 23, however long
    with pytest.raises(Refused) as caught:
        new_post({"channel": "x-main", "text": "a" * 257, "link": link, "at": "+1h"},
                 role="marketing", now=NOW, tz=LONDON, channels=x)
    assert caught.value.status == 422
    assert "with its link is 281 characters" in caught.value.message
    # A link already in the text is not appended, so not counted twice.
    assert new_post({"channel": "x-main", "text": f"{'a' * 256} {link}", "link": link,
                     "at": "+1h"}, role="marketing", now=NOW, tz=LONDON, channels=x)
