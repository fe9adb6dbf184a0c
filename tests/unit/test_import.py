"""Calendar files as `post import` reads them: every bad row named by its file line."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from switchboard.posts import ChannelLimit, check_import

NOW = 1_900_000_000.0  # 2030-03-17
LONDON = ZoneInfo("Europe/London")
CHANNELS = {"outbox": ChannelLimit("outbox", 280)}


def check(data: bytes, filename: str = "cal.csv", role: str = "marketing") -> tuple[int, list[str]]:
    rows, problems = check_import(data, filename, role=role, now=NOW, tz=LONDON,
                                  channels=CHANNELS)
    return len(rows), problems


def test_a_quoted_text_over_several_lines_keeps_the_line_numbers_of_the_rows_after_it() -> None:
    data = (b'channel,at,text\n'
            b'outbox,+1h,"Two\nlines"\n'
            b'outbox,+1h,\n'
            b'outbox,soon,Bad time\n')
    assert check(data) == (1, ["cal.csv:4: text is required and must be a non-empty string",
                               "cal.csv:5: bad time 'soon': use RFC 3339 "
                               "(2026-12-01T09:00:00+00:00), a local time (2026-12-01 09:00) "
                               "or an offset (+10m)"])


def test_header_names_in_any_case_and_semicolons_are_read() -> None:
    assert check(b"Channel;AT;TEXT;Kind\noutbox;+1h;Hello;marketing\n") == (1, [])


def test_an_unknown_column_is_named_with_the_header_line() -> None:
    assert check(b"\nchannel,at,txt\noutbox,+1h,Hello\n") == (
        0, ["cal.csv:2: unknown column(s) 'txt' (columns: channel, at, text, kind, expires, "
            "link, key)"])


def test_a_row_with_too_many_fields_and_a_role_that_may_not_post_are_both_reported() -> None:
    data = b"channel,at,text\noutbox,+1h,a,b\noutbox,+1h,fine\n"
    assert check(data, role="ops") == (0, [
        "cal.csv:2: 4 fields, the header has 3",
        "cal.csv:3: the ops role cannot create marketing posts"])


def test_bytes_that_are_not_utf8_are_named_by_their_line() -> None:
    assert check(b"channel,at,text\noutbox,+1h,caf\xe9\n") == (0, ["cal.csv:2: not UTF-8 text"])


def test_the_same_row_twice_in_one_file_is_one_post() -> None:
    rows, problems = check_import(b"channel,at,text\noutbox,2030-04-01 09:00,a\n"
                                  b"outbox,2030-04-01T08:00:00Z,a\n", "cal.csv",
                                  role="marketing", now=NOW, tz=LONDON, channels=CHANNELS)
    assert problems == [] and rows[0][0] == rows[1][0]  # 09:00 BST is 08:00 UTC
