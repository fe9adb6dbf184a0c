"""`post calendar`: the week rows and the month grid."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from switchboard.calendar_grid import Entry, clip, month, week, window

LONDON = ZoneInfo("Europe/London")


def entry(post_id: int, when: datetime, text: str = "Offer", channel: str = "outbox",
          state: str = "scheduled") -> Entry:
    return Entry(post_id, when, channel, text, state)


def test_the_week_holds_monday_to_sunday_in_the_zone() -> None:
    start, end = window(date(2026, 12, 3), month=False, zone=LONDON)
    assert (start.isoformat(), end.isoformat()) == ("2026-11-30T00:00:00+00:00",
                                                    "2026-12-07T00:00:00+00:00")
    start, end = window(date(2026, 7, 15), month=True, zone=LONDON)
    assert (start.isoformat(), end.isoformat()) == ("2026-07-01T00:00:00+01:00",
                                                    "2026-08-01T00:00:00+01:00")


def test_a_post_sits_on_its_local_day_not_its_utc_day() -> None:
    # 23:30 UTC on 1 July is 00:30 on 2 July in London.
    late = entry(1, datetime(2026, 7, 1, 23, 30, tzinfo=UTC), "Midnight sale")
    out = week([late], date(2026, 6, 29), LONDON, width=60).splitlines()
    assert out[0] == "Week of Mon 29 Jun 2026 (Europe/London, BST)"
    assert out[4] == "Thu 02 Jul │ 00:30 outbox Midnight sale"
    assert out[3] == "Wed 01 Jul │ -"


def test_week_rows_list_posts_in_time_order_and_cut_long_texts() -> None:
    posts = [entry(2, datetime(2026, 12, 1, 15, 0, tzinfo=UTC), "Second " * 20),
             entry(1, datetime(2026, 12, 1, 9, 0, tzinfo=UTC), "First", state="held")]
    out = week(posts, date(2026, 11, 30), LONDON, width=50).splitlines()
    assert out[2] == "Tue 01 Dec │ 09:00 outbox [held] First"
    assert out[3].startswith("           │ 15:00 outbox Second Second")
    assert out[3].endswith("…") and len(out[3]) == 50


def test_the_month_is_seven_equal_columns_with_a_count_of_what_does_not_fit() -> None:
    busy = [entry(i, datetime(2026, 12, 4, 9 + i, 0, tzinfo=UTC), f"Post {i}")
            for i in range(5)]
    out = month(busy, date(2026, 12, 1), LONDON, width=100).splitlines()
    assert out[0] == "December 2026 (Europe/London)"
    assert {len(line) for line in out[1:]} == {1 + 7 * 13 + 7}
    rows = [line.strip("|").split("|") for line in out if line.startswith("|")]
    friday = [r[4].strip() for r in rows[1:5]]
    assert friday == ["4", "09:00 Post 0", "10:00 Post 1", "+3 more"]
    # 1 December 2026 is a Tuesday: Monday's cell of the first week is blank.
    assert (rows[1][0].strip(), rows[1][1].strip()) == ("", "1")
    assert rows[-2][3].strip() == "31"


def test_clip_flattens_whitespace_and_marks_the_cut() -> None:
    assert clip("a\nb   c", 10) == "a b c"
    assert clip("abcdefghijk", 5) == "abcd…"
    assert clip("abc", 0) == ""
