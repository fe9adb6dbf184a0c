"""A marketing calendar file (CSV or JSON lines): read, and every row checked
as a post request, with every problem named by line in one pass."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from switchboard import refusals
from switchboard.model import NewPost
from switchboard.posts.request import ChannelLimit, new_post
from switchboard.refusals import Refused
from switchboard.store import row_key

CALENDAR_COLUMNS = ("channel", "at", "text", "kind", "expires", "link", "key")


@dataclass(frozen=True)
class CalendarRow:
    line: int  # where the row starts in its file, counting from 1
    fields: dict[str, Any]


def parse_calendar(data: bytes, filename: str) -> list[dict[str, Any]]:
    """A marketing calendar's rows as post requests; the first bad row is refused."""
    rows, problems = read_calendar(data, filename)
    if problems:
        raise refusals.bad_request(problems[0])
    return [row.fields for row in rows]


def read_calendar(data: bytes, filename: str) -> tuple[list[CalendarRow], list[str]]:
    """CSV with a header row (`,` or `;`, names in any case) or JSON lines (one post
    per line). Returns the rows and every problem as `FILE:LINE: message`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [f"{filename}:{text_line(data, exc.start)}: not UTF-8 text"]
    if filename.endswith((".jsonl", ".json", ".ndjson")) or text.lstrip().startswith("{"):
        return _json_lines(text, filename)
    return _csv_rows(text, filename)


def text_line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _csv_rows(text: str, filename: str) -> tuple[list[CalendarRow], list[str]]:
    header_line = next((ln for ln in text.splitlines() if ln.strip()), "")
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[CalendarRow] = []
    problems: list[str] = []
    header: list[str] | None = None
    try:
        while True:
            start = reader.line_num + 1
            record = next(reader, None)
            if record is None:
                break
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = [name.strip().lower() for name in record]
                problems += _header_problems(header, filename, start)
                if problems:
                    return [], problems
                continue
            if len(record) != len(header):
                problems.append(f"{filename}:{start}: {len(record)} fields, the header has "
                                f"{len(header)}")
                continue
            rows.append(CalendarRow(start, {k: v for k, v in zip(header, record, strict=True)
                                            if v != ""}))
    except csv.Error as exc:  # a stray carriage return inside a field, say
        problems.append(f"{filename}:{reader.line_num}: not readable as CSV: {exc}")
    if header is None:
        problems.append(f"{filename}: no posts (CSV needs a header row: "
                        "channel,at,text[,kind,expires,link,key])")
    return rows, problems


def _header_problems(header: list[str], filename: str, line: int) -> list[str]:
    unknown = [name for name in header if name not in CALENDAR_COLUMNS]
    if unknown:
        return [f"{filename}:{line}: unknown column(s) {', '.join(map(repr, unknown))} "
                f"(columns: {', '.join(CALENDAR_COLUMNS)})"]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        return [f"{filename}:{line}: column(s) {', '.join(repeated)} given twice"]
    return []


def _json_lines(text: str, filename: str) -> tuple[list[CalendarRow], list[str]]:
    rows: list[CalendarRow] = []
    problems: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{filename}:{number}: bad JSON: {exc.msg}")
            continue
        except RecursionError:
            problems.append(f"{filename}:{number}: bad JSON: nested too deeply")
            continue
        if not isinstance(item, dict):
            problems.append(f"{filename}:{number}: each line must be a JSON object")
            continue
        rows.append(CalendarRow(number, item))
    return rows, problems


def check_import(data: bytes, filename: str, *, role: str, now: float, tz: ZoneInfo,
                 channels: Mapping[str, ChannelLimit],
                 admit: Callable[[NewPost], None] | None = None,
                 ) -> tuple[list[tuple[str, NewPost]], list[str]]:
    """Every row of a calendar file checked as a post request: (key, post) for each,
    and every problem (`FILE:LINE: message`) in one pass. `admit` checks the caller's
    right to each post (its channel's team) and may set its state (approval)."""
    rows, problems = read_calendar(data, filename)
    out: list[tuple[str, NewPost]] = []
    for row in rows:
        fields = dict(row.fields)
        key = fields.pop("key", None)
        try:
            if key is not None and (not isinstance(key, str) or not key.strip()):
                raise refusals.bad_request("key must be a non-empty string")
            post = new_post(fields, role=role, now=now, tz=tz, channels=channels)
            if admit is not None:
                admit(post)
        except Refused as exc:
            problems.append(f"{filename}:{row.line}: {exc.message}")
            continue
        out.append((f"key:{key}" if key is not None else
                    row_key(post.channel, post.due_at, post.text), post))
    return out, problems
