"""Editing posts, compound offsets and spaced releases: the pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from switchboard.model import Post
from switchboard.posts import (
    ChannelLimit,
    describe_changes,
    parse_offset,
    parse_when,
    post_edit,
    release_times,
)
from switchboard.refusals import Refused

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()
CHANNELS = {"outbox": ChannelLimit("outbox", 280), "short": ChannelLimit("short", 10),
            "ops-chat": ChannelLimit("ops-chat", 280, "internal")}


def post(post_id: int = 1, channel: str = "outbox", due: float = NOW + 3600,
         state: str = "scheduled", kind: str = "marketing") -> Post:
    return Post(post_id, channel, kind, "Winter sale", None, state, due, None, None, None,
                None, "marketing", NOW - 60, None, NOW - 60)


def edit(body: dict[str, object], target: Post | None = None,
         role: str = "marketing") -> dict[str, object]:
    return post_edit(target or post(), body, role=role, now=NOW, tz=LONDON, channels=CHANNELS)


def test_compound_offsets_add_their_parts() -> None:
    assert parse_offset("2h30m") == timedelta(hours=2, minutes=30)
    assert parse_offset("1d12h") == timedelta(days=1, hours=12)
    assert parse_offset("10m") == timedelta(minutes=10)
    assert parse_when("+2h30m", NOW, LONDON) == NOW + 9000


@pytest.mark.parametrize("bad", ["", "2h30", "h", "2h 30m", "30x", "-5m", "99999d"])
def test_malformed_offsets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_offset(bad)


def test_an_edit_returns_only_what_changes() -> None:
    changes = edit({"text": "Winter sale", "at": "2026-12-01 15:00"})
    assert changes == {"due_at": datetime(2026, 12, 1, 15, 0, tzinfo=UTC).timestamp()}


def test_an_edit_is_checked_against_the_new_channel() -> None:
    with pytest.raises(Refused) as too_long:
        edit({"channel": "short"})
    assert too_long.value.status == 422 and "at most 10" in too_long.value.message
    with pytest.raises(Refused) as internal:
        edit({"channel": "ops-chat"})
    assert internal.value.status == 422
    assert edit({"channel": "ops-chat"}, post(kind="operational"), role="ops") == {
        "channel": "ops-chat"}


def test_an_edit_refuses_past_times_and_expiry_before_the_due_time() -> None:
    with pytest.raises(Refused) as past:
        edit({"at": "2026-12-01 09:00"})
    assert past.value.status == 422 and "in the past" in past.value.message
    with pytest.raises(Refused) as expiry:
        edit({"expires": "+30m"})
    assert "expires must be later" in expiry.value.message


@pytest.mark.parametrize("state", ["sending", "published", "cancelled", "held", "suppressed"])
def test_only_pending_posts_can_be_edited(state: str) -> None:
    with pytest.raises(Refused) as refused:
        edit({"text": "New"}, post(state=state))
    assert refused.value.status == 409


def test_the_role_must_match_the_kind() -> None:
    with pytest.raises(Refused) as refused:
        edit({"text": "New"}, role="ops")
    assert refused.value.status == 403
    assert edit({"text": "New"}, role="admin") == {"text": "New"}


def test_the_history_line_names_each_field_old_and_new() -> None:
    before = post()
    line = describe_changes(before, {"text": "New", "due_at": NOW + 7200})
    assert line == ("edited: text 'Winter sale' -> 'New'; due_at "
                    "2026-12-01T13:00:00.000000+00:00 -> 2026-12-01T14:00:00.000000+00:00")


def test_a_spaced_release_starts_each_channel_at_the_start_and_steps_per_channel() -> None:
    posts = [post(1, "a", NOW), post(2, "b", NOW), post(3, "a", NOW - 10), post(4, "a", NOW)]
    times = release_times(posts, NOW + 60, timedelta(minutes=5))
    # On channel a, the post that was due first goes first.
    assert times == {3: NOW + 60, 1: NOW + 360, 4: NOW + 660, 2: NOW + 60}


def test_a_release_without_spacing_sends_all_at_the_start() -> None:
    times = release_times([post(1), post(2)], NOW, timedelta())
    assert times == {1: NOW, 2: NOW}


def test_an_empty_expiry_removes_it() -> None:
    expiring = post()
    expiring.expires_at = NOW + 7200
    assert edit({"expires": ""}, expiring) == {"expires_at": None}
    assert edit({"expires": "+3h"}, expiring) == {"expires_at": NOW + 3 * 3600}
