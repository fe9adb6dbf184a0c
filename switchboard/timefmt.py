"""Times as people read them: in the configured zone, with its abbreviation.

The API speaks RFC 3339 with offsets (for programs); the CLI prints
`2026-12-01 17:30 GMT`, to the second only where the second is not zero, and
never with microseconds.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC_ZONE = ZoneInfo("UTC")


def zone_named(name: str | None) -> ZoneInfo:
    """The zone the daemon announced; UTC when it did not (or names one unknown here)."""
    if not name:
        return UTC_ZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC_ZONE


def local(moment: datetime, zone: ZoneInfo) -> str:
    """`2026-12-01 17:30 GMT` (or `... 17:30:05 GMT` when the seconds matter)."""
    at = moment.astimezone(zone)
    shown = "%Y-%m-%d %H:%M" if at.second == 0 else "%Y-%m-%d %H:%M:%S"
    return f"{at.strftime(shown)} {_abbreviation(at)}"


def local_text(value: object, zone: ZoneInfo) -> str:
    """An API time (RFC 3339 text) for printing; anything else as it is, None as `-`."""
    if value is None:
        return "-"
    if not isinstance(value, str):
        return str(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        return value
    return local(moment, zone)


def _abbreviation(at: datetime) -> str:
    name = at.tzname() or ""
    # Zones without an abbreviation in the tz database name themselves `+03`, `-0330`.
    if name[:1] in "+-":
        return f"UTC{name}"
    return name
