"""`post import` (a calendar of posts from a file, all rows or none) and
`post calendar` (a week or a month of posts as a grid)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import requests

from switchboard.cli.client import FAILED, OK, USAGE, Client, Exit, Shown, output


def import_file(args: argparse.Namespace, client: Client) -> int:
    """The whole file in one request: the daemon checks every row and stores all of
    them or none; rows it already holds (same key) are not stored again."""
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Exit(USAGE, f"cannot read {path}: {exc.strerror}") from exc
    params = {"filename": path.name, **({"dry_run": "true"} if args.dry_run else {})}
    response = client.request("POST", "/api/v1/posts/import", True, data=data, params=params)
    if response.status_code == 422:
        problems = _problems(response)
        for problem in problems:
            print(problem, file=sys.stderr)
        raise Exit(FAILED, f"{len(problems)} problem(s) in {path}; nothing was imported")
    result = client.answer(response)
    if args.dry_run:
        return output(args, result, lambda d: f"{path}: {d['rows']} row(s) ok (dry run, "
                                              "nothing stored)")
    return output(args, result, lambda d: f"imported {d['created']} post(s) from {path}"
                                          f" ({d['existing']} already there)")


def _problems(response: requests.Response) -> list[str]:
    try:
        found = response.json()["error"]["problems"]
    except (ValueError, KeyError, TypeError):
        found = None
    return [str(p) for p in found] if isinstance(found, list) else [response.text[:500]]


def show_calendar(args: argparse.Namespace, client: Client) -> int:
    import shutil
    from datetime import date, datetime

    from switchboard import calendar_grid
    from switchboard.timefmt import UTC_ZONE
    client.call("GET", "/healthz")  # learns the daemon's zone before drawing the days
    zone = Shown.zone or UTC_ZONE
    try:
        day = date.fromisoformat(args.date) if args.date else datetime.now(zone).date()
    except ValueError as exc:
        raise Exit(USAGE, f"bad --date {args.date!r}: use YYYY-MM-DD") from exc
    start, end = calendar_grid.window(day, args.month, zone)
    params = {"from": start.isoformat(), "to": end.isoformat(), "limit": "1000"}
    if args.channel:
        params["channel"] = args.channel
    data = [p for page, _, _ in client.pages("/api/v1/posts", params, follow=True)
            for p in page if p["state"] not in CALENDAR_HIDDEN]
    if args.json:
        print(json.dumps(data, indent=2))
        return OK
    entries = [calendar_grid.Entry(p["id"], datetime.fromisoformat(p["due_at"]), p["channel"],
                                   p["text"], p["state"]) for p in data]
    width = shutil.get_terminal_size((100, 24)).columns
    draw = calendar_grid.month if args.month else calendar_grid.week
    print(draw(entries, start.date(), zone, width))
    return OK


# Posts that will not go out are left off the calendar (`post list` shows them).
CALENDAR_HIDDEN = frozenset({"cancelled", "dropped", "expired", "missed", "retracted"})
