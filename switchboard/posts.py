"""Posts: what marketing and ops ask to publish, checked before it is stored.

Parsing of times (`--at`, `--expires`), text limits and role rules live here,
so the API, the CLI import and runbook steps all schedule the same way.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from switchboard import refusals
from switchboard.clock import rfc3339, to_datetime
from switchboard.model import NewPost, Post
from switchboard.poststates import PostOrigin, PostState
from switchboard.refusals import Refused
from switchboard.store import row_key
from switchboard.text import lone_surrogate, surrogate_message
from switchboard.yamldoc import MAX_DURATION, parse_duration

KINDS = ("marketing", "operational")
# Roles allowed to create each kind of post (admin holds both powers).
KIND_ROLES = {"marketing": {"marketing", "admin"}, "operational": {"ops", "admin"}}
_FIELDS = {"channel", "kind", "text", "link", "at", "due_at", "expires", "expires_at"}
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


@dataclass(frozen=True)
class ChannelLimit:
    id: str
    max_length: int
    audience: str = "public"
    # How the platform counts (X weighs CJK as 2 and any URL as 23); plain
    # characters where it counts those.
    length: Callable[[str], int] = len


def new_post(body: Mapping[str, Any], *, role: str, now: float, tz: ZoneInfo,
             channels: Mapping[str, ChannelLimit], default_kind: str = "marketing") -> NewPost:
    """Check one post request; raises Refused (400/403/404/422) naming what is wrong."""
    if not isinstance(body, Mapping):
        raise refusals.bad_request("a post must be a JSON object")
    unknown = set(body) - _FIELDS
    if unknown:
        raise refusals.bad_request(f"unknown post field(s): {', '.join(sorted(unknown))}")
    channel = _required_str(body, "channel")
    if channel not in channels:
        raise refusals.not_found(f"no channel named {channel!r} "
                                 f"(channels: {', '.join(sorted(channels))})")
    kind = str(body.get("kind") or default_kind)
    if kind not in KINDS:
        raise refusals.bad_request(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if role not in KIND_ROLES[kind]:
        raise refusals.forbidden(f"the {role} role cannot create {kind} posts")
    if kind == "marketing" and channels[channel].audience != "public":
        # Internal channels are ops' chat: marketing there is a wrong channel id.
        raise refusals.unprocessable(f"channel {channel} is {channels[channel].audience}: "
                                     "marketing posts go to public channels")
    text = _required_str(body, "text")
    link = body.get("link")
    link = None if link is None else _as_str(link, "link")
    _check_length(channels[channel], text, link)
    when = body.get("at", body.get("due_at"))
    due_at = now if when is None else parse_future(_as_str(when, "at"), now, tz)
    expires = body.get("expires", body.get("expires_at"))
    expires_at = None if expires is None else parse_when(_as_str(expires, "expires"), now, tz)
    if expires_at is not None and expires_at <= due_at:
        raise refusals.unprocessable("expires must be later than the due time")
    # No time given: the caller means now, and the post is not "late" while it waits.
    origin = PostOrigin.SEND_NOW if when is None else PostOrigin.SCHEDULE
    return NewPost(channel=channel, kind=kind, text=text, due_at=due_at,
                   link=link, expires_at=expires_at, origin=origin)


def _check_length(limit: ChannelLimit, text: str, link: str | None) -> None:
    """Judge the text as it will be published, the appended link included, so a post
    the platform would refuse is refused now rather than failing at its due time."""
    published = text if not link or link in text else f"{text} {link}"
    length = limit.length(published)
    if length > limit.max_length:
        with_link = " with its link" if published != text else ""
        raise refusals.unprocessable(f"text{with_link} is {length} characters as channel "
                                     f"{limit.id} counts them; it allows at most "
                                     f"{limit.max_length}")


def _required_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise refusals.bad_request(f"{key} is required and must be a non-empty string")
    return _as_str(value, key)


def _as_str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise refusals.bad_request(f"{key} must be a string")
    index = lone_surrogate(value)
    if index is not None:
        raise refusals.bad_request(f"{key} {surrogate_message(value, index)}")
    return value


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


def post_json(post: Post) -> dict[str, Any]:
    return {
        "id": post.id,
        "channel": post.channel,
        "kind": post.kind,
        "text": post.text,
        "link": post.link,
        # `queued` is the dispatcher's internal hand-off; users see scheduled.
        "state": PostState.SCHEDULED if post.state == PostState.QUEUED else post.state,
        "due_at": rfc3339(post.due_at),
        "expires_at": rfc3339(post.expires_at),
        "incident_id": None if post.incident_id is None else f"INC-{post.incident_id}",
        "remote_id": post.remote_id,
        "error": post.error,
        "created_by": post.created_by,
        "created_at": rfc3339(post.created_at),
        "published_at": rfc3339(post.published_at),
    }


def spaced_times(start: float, count: int, spacing: timedelta) -> Sequence[float]:
    """Due times for re-queued posts: one channel never gets a burst."""
    step = spacing.total_seconds()
    return [start + i * step for i in range(count)]


# What `post edit` may change, and the states in which a post may still change:
# `queued` only while it waits in its channel's queue (the caller checks that).
EDIT_FIELDS = {"text", "at", "due_at", "channel", "expires", "expires_at"}
EDITABLE_STATES = ("scheduled", "queued", "pending_approval")


def post_edit(post: Post, body: Mapping[str, Any], *, role: str, now: float, tz: ZoneInfo,
              channels: Mapping[str, ChannelLimit]) -> dict[str, Any]:
    """The changed columns of `post` (old values left out), checked like a new post.

    Raises Refused naming what is wrong; an empty result means nothing changes.
    """
    if not isinstance(body, Mapping) or not body:
        raise refusals.bad_request("an edit is a JSON object with text, at, channel or "
                                   "expires")
    unknown = set(body) - EDIT_FIELDS
    if unknown:
        raise refusals.bad_request(f"unknown or fixed post field(s): {', '.join(sorted(unknown))}"
                                   " (editable: text, at, channel, expires)")
    if role not in KIND_ROLES[post.kind]:
        raise refusals.forbidden(f"the {role} role cannot edit {post.kind} posts")
    if post.state not in EDITABLE_STATES:
        shown = "scheduled" if post.state == "queued" else post.state
        raise refusals.conflict(f"post {post.id} is {shown}; only scheduled posts (or posts "
                                "pending approval) can be edited")
    merged = {"channel": post.channel, "kind": post.kind, "text": post.text,
              "due_at": post.due_at, "expires_at": post.expires_at}
    if "channel" in body:
        merged["channel"] = _required_str(body, "channel")
    if "text" in body:
        merged["text"] = _required_str(body, "text")
    when = body.get("at", body.get("due_at"))
    if when is not None:
        merged["due_at"] = parse_future(_as_str(when, "at"), now, tz)
    if "expires" in body or "expires_at" in body:
        expires = body.get("expires", body.get("expires_at"))
        merged["expires_at"] = (None if expires in (None, "") else
                                parse_when(_as_str(expires, "expires"), now, tz))
    _check_edit(merged, channels)
    return {k: v for k, v in merged.items() if k != "kind" and getattr(post, k) != v}


def _check_edit(merged: dict[str, Any], channels: Mapping[str, ChannelLimit]) -> None:
    channel, kind, text = merged["channel"], merged["kind"], merged["text"]
    if channel not in channels:
        raise refusals.not_found(f"no channel named {channel!r} "
                                 f"(channels: {', '.join(sorted(channels))})")
    if kind == "marketing" and channels[channel].audience != "public":
        raise refusals.unprocessable(f"channel {channel} is {channels[channel].audience}: "
                                     "marketing posts go to public channels")
    limit = channels[channel].max_length
    if len(text) > limit:
        raise refusals.unprocessable(f"text is {len(text)} characters; channel {channel} "
                                     f"allows at most {limit}")
    if merged["expires_at"] is not None and merged["expires_at"] <= merged["due_at"]:
        raise refusals.unprocessable("expires must be later than the due time")


def describe_changes(post: Post, changes: Mapping[str, Any]) -> str:
    """`text 'old' -> 'new'; due_at ... -> ...`: what an edit changed, for the history."""
    parts = []
    for key in ("channel", "text", "due_at", "expires_at"):
        if key in changes:
            old, new = getattr(post, key), changes[key]
            if key.endswith("_at"):
                old, new = rfc3339(old) or "none", rfc3339(new) or "none"
                parts.append(f"{key} {old} -> {new}")
            else:
                parts.append(f"{key} {old!r} -> {new!r}")
    return "edited: " + "; ".join(parts)


def release_times(posts: Sequence[Post], start: float,
                  spacing: timedelta) -> dict[int, float]:
    """Due times for posts released together: the first of each channel at `start`,
    then one per `spacing` on that channel (channels do not wait for each other)."""
    by_channel: dict[str, list[Post]] = {}
    for post in sorted(posts, key=lambda p: (p.due_at, p.id)):
        by_channel.setdefault(post.channel, []).append(post)
    out: dict[int, float] = {}
    for channel_posts in by_channel.values():
        times = spaced_times(start, len(channel_posts), spacing)
        out.update({p.id: t for p, t in zip(channel_posts, times, strict=True)})
    return out
