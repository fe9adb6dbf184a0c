"""The times people give for a post: RFC 3339, a local time in the configured
zone, `now` or an offset like `+10m`, read the same way by the API, the CLI
import and runbook steps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from switchboard import refusals
from switchboard.clock import rfc3339, to_datetime
from switchboard.yamldoc import MAX_DURATION, parse_duration

# A time this little in the past means "now" (a caller's clock a little behind,
# a request in flight); anything older would only be recorded `missed`.
PAST_GRACE = 5.0


def parse_when(value: str, now: float, tz: ZoneInfo) -> float:
    """RFC 3339 with offset, a local time in `tz`, `now`, or an offset like `+10m`.

    Local times are DST-safe: a time inside the spring-forward gap does not
    exist and is refused; an ambiguous one (autumn) means its first occurrence.
    """
    try:
        when = _when(value, now, tz)
        # Every time is stored, scheduled and shown as a UTC datetime: one that
        # cannot be (year 0, year 10000, +99999999d) would break the dispatcher,
        # every listing and the next start, so it is refused here.
        to_datetime(when)
    except (OverflowError, ValueError) as exc:
        raise refusals.bad_request(f"time {value!r} is out of range (years 1 to 9999 "
                                   "in UTC)") from exc
    return when


def parse_future(value: str, now: float, tz: ZoneInfo, what: str = "at") -> float:
    """A time to send at: `parse_when`, refused when it has passed (beyond PAST_GRACE)."""
    when = parse_when(value, now, tz)
    if when < now - PAST_GRACE:
        raise refusals.unprocessable(
            f"{what} {value.strip()!r} is in the past ({rfc3339(when)}, now is {rfc3339(now)}): "
            "the post would only be recorded missed; give a later time, 'now' or an offset "
            "like +10m")
    return max(when, now)


def _when(value: str, now: float, tz: ZoneInfo) -> float:
    text = value.strip()
    if text == "now":
        return now
    if text.startswith("+"):
        try:
            return now + parse_offset(text[1:]).total_seconds()
        except ValueError as exc:
            raise refusals.bad_request(f"bad time offset {value!r}: {exc}") from exc
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if " " in text else text)
    except ValueError as exc:
        raise refusals.bad_request(
            f"bad time {value!r}: use RFC 3339 (2026-12-01T09:00:00+00:00), a local time "
            f"(2026-12-01 09:00) or an offset (+10m)") from exc
    if parsed.tzinfo is not None:
        return parsed.timestamp()
    local = parsed.replace(tzinfo=tz, fold=0)
    round_trip = local.astimezone(UTC).astimezone(tz)
    if round_trip.replace(tzinfo=None) != parsed:
        raise refusals.bad_request(f"{value} does not exist in {tz.key} (the clocks skip it)")
    return local.timestamp()


_OFFSET_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_offset(text: str) -> timedelta:
    """`10m`, or parts in any order of units, like `2h30m` or `1d12h`."""
    compact = text.strip()
    parts = _OFFSET_PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"bad duration {text!r} (use numbers with s, m, h or d, "
                         "e.g. '10m', '2h30m')")
    total = sum((parse_duration(n + u) for n, u in parts), timedelta())
    if total > MAX_DURATION:
        raise ValueError(f"duration {text!r} is longer than {MAX_DURATION.days} days")
    return total
