"""CLI times: the configured zone with its abbreviation, never microseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from switchboard.timefmt import local, local_text, zone_named

LONDON = ZoneInfo("Europe/London")


def test_winter_and_summer_times_carry_their_abbreviation() -> None:
    assert local_text("2026-12-01T17:30:00.000000+00:00", LONDON) == "2026-12-01 17:30 GMT"
    assert local_text("2026-07-01T16:30:00+00:00", LONDON) == "2026-07-01 17:30 BST"


def test_seconds_show_only_when_they_are_not_zero_and_microseconds_never() -> None:
    assert local_text("2026-12-01T17:30:05.123456+00:00", LONDON) == "2026-12-01 17:30:05 GMT"


def test_a_zone_without_an_abbreviation_prints_its_offset_from_utc() -> None:
    moment = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert local(moment, ZoneInfo("Asia/Dubai")) == "2026-12-01 16:00 UTC+04"


def test_missing_or_unreadable_values_print_plainly() -> None:
    assert local_text(None, LONDON) == "-"
    assert local_text("soon", LONDON) == "soon"
    assert local_text("2026-12-01T17:30:00", LONDON) == "2026-12-01T17:30:00"


def test_an_unknown_or_missing_zone_falls_back_to_utc() -> None:
    assert zone_named(None).key == "UTC"
    assert zone_named("Nowhere/Atlantis").key == "UTC"
    assert zone_named("Europe/London") == LONDON
