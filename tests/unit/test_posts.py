"""Post requests: times (RFC 3339, local, offsets, DST), limits, roles, calendars."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from switchboard.posts import (
    ChannelLimit,
    new_post,
    parse_calendar,
    parse_future,
    parse_when,
    spaced_times,
)
from switchboard.refusals import Refused
from switchboard.textlength import weighted_length

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


# -- refusals instead of silent `missed` and 500s (design §7.1) ----------------------

def _refusal(body: dict[str, str], role: str = "marketing",
             channels: dict[str, ChannelLimit] | None = None) -> Refused:
    with pytest.raises(Refused) as caught:
        new_post(body, role=role, now=NOW, tz=LONDON, channels=channels or CHANNELS)
    return caught.value


def test_a_time_in_the_past_is_refused_instead_of_being_missed() -> None:
    refused = _refusal({"channel": "outbox", "text": "Offer", "at": "2026-03-28 11:59"})
    assert refused.status == 422
    assert refused.message == (
        "at '2026-03-28 11:59' is in the past (2026-03-28T11:59:00.000000+00:00, now is "
        "2026-03-28T12:00:00.000000+00:00): the post would only be recorded missed; give a "
        "later time, 'now' or an offset like +10m")


def test_a_time_a_few_seconds_ago_means_now() -> None:
    post = new_post({"channel": "outbox", "text": "Offer", "at": "2026-03-28T11:59:57Z"},
                    role="marketing", now=NOW, tz=LONDON, channels=CHANNELS)
    assert post.due_at == NOW
    with pytest.raises(Refused):
        parse_future("2026-03-28T11:59:54Z", NOW, LONDON)


def test_a_release_time_in_the_past_is_refused_naming_it() -> None:
    with pytest.raises(Refused) as caught:
        parse_future("2026-03-27 12:00", NOW, LONDON, what="release --at")
    assert caught.value.status == 422
    assert caught.value.message.startswith("release --at '2026-03-27 12:00' is in the past")


def test_a_marketing_post_on_an_internal_channel_is_refused() -> None:
    channels = {**CHANNELS, "ops-chat": ChannelLimit("ops-chat", 4000, "internal")}
    refused = _refusal({"channel": "ops-chat", "text": "Offer"}, channels=channels)
    assert (refused.status, refused.message) == (
        422, "channel ops-chat is internal: marketing posts go to public channels")
    update = new_post({"channel": "ops-chat", "text": "On it", "kind": "operational"},
                      role="ops", now=NOW, tz=LONDON, channels=channels)
    assert update.channel == "ops-chat"


@pytest.mark.parametrize("field", ["text", "link", "at"])
def test_a_lone_surrogate_in_a_post_is_refused_naming_the_field(field: str) -> None:
    body = {"channel": "outbox", "text": "Offer", "at": "+1h", field: "Offer \udc80"}
    refused = _refusal(body)
    assert (refused.status, refused.message) == (
        400, f"{field} is not valid Unicode text: it holds a lone surrogate (\\udc80 at "
             "character 7)")


def test_a_post_is_measured_with_its_link_by_the_channels_own_count() -> None:
    x = {"x-main": ChannelLimit("x-main", 280, length=weighted_length)}
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
