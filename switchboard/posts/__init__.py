"""Posts: what marketing and ops ask to publish, checked before it is stored.

Parsing of times (`--at`, `--expires`), text limits and role rules live here,
so the API, the CLI import and runbook steps all schedule the same way: times
(times.py), a new post (request.py), a calendar file (calendar.py), an edit
(edits.py) and the spacing of released posts (release.py).
"""

from __future__ import annotations

from switchboard.posts.calendar import (
    CALENDAR_COLUMNS,
    CalendarRow,
    check_import,
    parse_calendar,
    read_calendar,
    text_line,
)
from switchboard.posts.edits import EDIT_FIELDS, EDITABLE_STATES, describe_changes, post_edit
from switchboard.posts.release import release_times, spaced_times
from switchboard.posts.request import KIND_ROLES, KINDS, ChannelLimit, new_post, post_json
from switchboard.posts.times import PAST_GRACE, parse_future, parse_offset, parse_when

__all__ = ["CALENDAR_COLUMNS", "EDITABLE_STATES", "EDIT_FIELDS", "KINDS", "KIND_ROLES",
           "PAST_GRACE", "CalendarRow", "ChannelLimit", "check_import", "describe_changes",
           "new_post", "parse_calendar", "parse_future", "parse_offset", "parse_when",
           "post_edit", "post_json", "read_calendar", "release_times", "spaced_times",
           "text_line"]
