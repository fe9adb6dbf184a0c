"""`post calendar`: a week or a month of posts as a grid for the terminal.

A week prints one row per day (every post of the day, time, channel and
text cut to the width); a month prints the familiar seven columns, Monday
first, with each day's first posts and a count of the rest. Everything is
shown in the configured zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MIN_CELL = 12  # below this a month cell shows no text at all
PER_DAY_IN_MONTH = 3


@dataclass(frozen=True)
class Entry:
    id: int
    when: datetime  # aware
    channel: str
    text: str
    state: str


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def window(day: date, month: bool, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The aware start and end (exclusive) of the week or month holding `day`."""
    if month:
        first = day.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1)
    else:
        first = week_start(day)
        last = first + timedelta(days=7)
    return (datetime.combine(first, time(), zone), datetime.combine(last, time(), zone))


def clip(text: str, width: int) -> str:
    """One line of at most `width` characters, `…` marking a cut."""
    flat = " ".join(text.split())
    if width <= 0:
        return ""
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def _by_day(entries: Iterable[Entry], zone: ZoneInfo) -> dict[date, list[Entry]]:
    days: dict[date, list[Entry]] = {}
    for entry in sorted(entries, key=lambda e: (e.when, e.id)):
        days.setdefault(entry.when.astimezone(zone).date(), []).append(entry)
    return days


def _line(entry: Entry, zone: ZoneInfo, width: int, with_channel: bool) -> str:
    at = entry.when.astimezone(zone).strftime("%H:%M")
    state = "" if entry.state == "scheduled" else f"[{entry.state}] "
    head = f"{at} {entry.channel} " if with_channel else f"{at} "
    return clip(f"{head}{state}{entry.text}", width)


def week(entries: Sequence[Entry], first_day: date, zone: ZoneInfo, width: int = 80) -> str:
    """Seven rows, Monday to Sunday: `Mon 30 Nov │ 09:00 outbox Winter sale…`."""
    days = _by_day(entries, zone)
    label_width = 10
    text_width = max(20, width - label_width - 3)
    title = (f"Week of {first_day:%a %d %b %Y} ({zone.key}, "
             f"{datetime.combine(first_day, time(12), zone).tzname()})")
    lines = [title]
    for offset in range(7):
        day = first_day + timedelta(days=offset)
        label = f"{day:%a %d %b}".ljust(label_width)
        todays = days.get(day, [])
        if not todays:
            lines.append(f"{label} │ -")
            continue
        for i, entry in enumerate(todays):
            lines.append(f"{label if i == 0 else ' ' * label_width} │ "
                         f"{_line(entry, zone, text_width, True)}")
    return "\n".join(lines)


def month(entries: Sequence[Entry], first_day: date, zone: ZoneInfo, width: int = 80) -> str:
    """Seven columns, Monday first; each cell the day's number, its first posts, `+N more`."""
    days = _by_day(entries, zone)
    cell = max(MIN_CELL, (width - 8) // 7)
    first = first_day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    rule = "+" + "+".join("-" * cell for _ in range(7)) + "+"
    lines = [f"{first:%B %Y} ({zone.key})", rule,
             "|" + "|".join(name.center(cell) for name in DAY_NAMES) + "|", rule]
    start = week_start(first)
    while start < following:
        lines += _month_row(days, start, first, following, cell, zone)
        lines.append(rule)
        start += timedelta(days=7)
    return "\n".join(lines)


def _month_row(days: dict[date, list[Entry]], start: date, first: date, following: date,
               cell: int, zone: ZoneInfo) -> list[str]:
    columns: list[list[str]] = []
    for offset in range(7):
        day = start + timedelta(days=offset)
        if not first <= day < following:
            columns.append([])
            continue
        todays = days.get(day, [])
        column = [str(day.day)]
        shown = todays if len(todays) <= PER_DAY_IN_MONTH else todays[:PER_DAY_IN_MONTH - 1]
        column += [_line(e, zone, cell, False) for e in shown]
        if len(shown) < len(todays):
            column.append(f"+{len(todays) - len(shown)} more")
        columns.append(column)
    height = max(2, *(len(c) for c in columns))
    return ["|" + "|".join(clip(c[i], cell).ljust(cell) if i < len(c) else " " * cell
                           for c in columns) + "|" for i in range(height)]
