"""`post`: schedule, send, list, show, edit, approve and reject posts; the calendar
(calendar.py) and the review of held posts (review.py) are `post` commands too."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

from switchboard.cli import calendar, review
from switchboard.cli.client import (
    OK,
    USAGE,
    WHEN,
    Adder,
    Client,
    Exit,
    key_option,
    output,
    shown_time,
    table,
    times_in,
)


def _post_rows(rows: list[dict[str, Any]]) -> str:
    return table([(p["id"], p["state"], p["channel"], p["kind"], shown_time(p["due_at"]),
                   p["incident_id"] or "-", p["text"][:50]) for p in rows],
                 ("ID", "STATE", "CHANNEL", "KIND", "DUE", "INCIDENT", "TEXT"))


def cmd_post(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "schedule":
        body = {"channel": args.channel, "at": args.at, "text": args.text, "kind": args.kind,
                "expires": args.expires, "link": args.link}
        data = client.call("POST", "/api/v1/posts", {k: v for k, v in body.items() if v},
                           keyed=True)
        return output(args, data, lambda p: f"post {p['id']} {p['state']} for {p['channel']} "
                                            f"at {shown_time(p['due_at'])}")
    if args.action == "import":
        return calendar.import_file(args, client)
    if args.action == "list":
        return _list_posts(args, client)
    if args.action in ("show", "edit", "calendar"):
        return {"show": _post_show, "edit": _post_edit,
                "calendar": calendar.show_calendar}[args.action](args, client)
    if args.action == "send":
        body = {"channel": args.channel, "text": args.text, "kind": args.kind}
        data = client.call("POST", "/api/v1/send", {k: v for k, v in body.items() if v},
                           keyed=True)
        return output(args, data, lambda p: f"post {p['id']} {p['state']} on {p['channel']} "
                                            f"at {shown_time(p['published_at'])}")
    if args.action in ("approve", "reject"):
        body = {"reason": args.reason} if args.action == "reject" else (
            {"at": args.at} if args.at else {})
        data = client.call("POST", f"/api/v1/posts/{args.id}/{args.action}", body)
        return output(args, data, lambda p: f"post {p['id']} {p['state']}")
    return review.review_posts(args, client)


def _post_show(args: argparse.Namespace, client: Client) -> int:
    data = client.call("GET", f"/api/v1/posts/{args.id}")
    def human(p: dict[str, Any]) -> str:
        lines = [f"post {p['id']}  {p['state']}  {p['kind']} on {p['channel']}",
                 f"  due:       {shown_time(p['due_at'])}",
                 f"  expires:   {shown_time(p['expires_at'])}",
                 f"  incident:  {p['incident_id'] or '-'}",
                 f"  created:   {shown_time(p['created_at'])} by {p['created_by']}",
                 f"  published: {shown_time(p['published_at'])}"
                 + (f" ({p['remote_id']})" if p["remote_id"] else "")]
        if p["error"]:
            lines.append(f"  error:     {p['error']}")
        lines += [f"  text:      {p['text']}", "", "history:"]
        for h in p["history"]:
            moved = h["to"] if h["from"] in (None, h["to"]) else f"{h['from']} -> {h['to']}"
            lines.append(f"  {shown_time(h['at'])}  {moved:<22} {h['actor']:<16} "
                         f"{times_in(h['reason'] or '')}".rstrip())
        return "\n".join(lines)
    return output(args, data, human)


def _post_edit(args: argparse.Namespace, client: Client) -> int:
    body = {k: v for k, v in (("text", args.text), ("at", args.at), ("channel", args.channel),
                              ("expires", args.expires)) if v is not None}
    if not body:
        raise Exit(USAGE, "post edit needs one or more of --text, --at, --channel, --expires")
    data = client.call("PATCH", f"/api/v1/posts/{args.id}", body)
    return output(args, data, lambda p: f"post {p['id']} {p['state']} for {p['channel']} "
                                        f"at {shown_time(p['due_at'])}")


def _list_posts(args: argparse.Namespace, client: Client) -> int:
    """One page (`--limit`, `--cursor`), or every page with `--all`; a page that
    has more after it says how to get them on stderr."""
    params = {k: v for k, v in (("state", args.state), ("channel", args.channel),
                                ("from", args.from_), ("to", args.to),
                                ("incident", args.incident),
                                ("limit", args.limit), ("cursor", args.cursor)) if v}
    rows: list[Any] = []
    following: str | None = None
    total: int | None = None
    for data, next_url, count in client.pages("/api/v1/posts", params, follow=args.all):
        rows.extend(data)
        following, total = next_url, count
    output(args, rows, _post_rows)
    if following is not None:
        cursor = parse_qs(urlsplit(following).query).get("cursor", [""])[0]
        print(f"switchboard: {len(rows)} of {total if total is not None else 'more'} posts "
              f"shown; the next page: --cursor {cursor} (or --all for every page)",
              file=sys.stderr)
    return OK


def add_parsers(p: argparse.ArgumentParser, command: Adder, client: Adder) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = client(command(sub, "schedule", "schedule one post"))
    s.add_argument("--channel", required=True, metavar="ID", help="channel to post to")
    s.add_argument("--at", required=True, metavar="WHEN", help=f"when: {WHEN}")
    s.add_argument("--text", required=True, help="the post's text")
    s.add_argument("--kind", choices=("marketing", "operational"),
                   help="marketing (default for the marketing role) or operational (ops)")
    s.add_argument("--expires", metavar="WHEN",
                   help=f"drop the post if it has not gone out by then: {WHEN}")
    s.add_argument("--link", metavar="URL", help="a link to attach")
    key_option(s)
    imp = client(command(sub, "import", "schedule a calendar of posts from a file: all rows "
                                        "or none"))
    imp.add_argument("file", help="CSV with a header row (channel,at,text[,kind,expires,link,"
                                  "key]; , or ; between fields) or JSON lines")
    imp.add_argument("--dry-run", action="store_true", help="check every row, store nothing")
    ls = client(command(sub, "list", "list posts, a page at a time"))
    ls.add_argument("--state", help="only posts in this state (scheduled, held, published, ...; "
                                    "comma-separated for several)")
    ls.add_argument("--channel", metavar="ID", help="only posts for this channel")
    ls.add_argument("--limit", metavar="N", help="posts per page, 1 to 1000 (default 100)")
    ls.add_argument("--cursor", "--page", metavar="CURSOR",
                    help="start at this page (printed when more exist)")
    ls.add_argument("--all", action="store_true", help="every page, not only the first")
    ls.add_argument("--from", dest="from_", metavar="WHEN",
                    help=f"only posts due at or after this time: {WHEN}")
    ls.add_argument("--to", metavar="WHEN", help=f"only posts due before this time: {WHEN}")
    ls.add_argument("--incident", metavar="INC", help="only posts tied to this incident "
                                                       "(held by it, or its statements)")
    review.add_parsers(sub, command, client)
    ap = client(command(sub, "approve", "approve a post pending approval (an approver of its "
                                        "team, not its author)"))
    ap.add_argument("id", help="post id")
    ap.add_argument("--at", metavar="WHEN",
                    help=f"a new time, needed when the post's own has passed: {WHEN}")
    rj = client(command(sub, "reject", "reject a post pending approval; it never goes out"))
    rj.add_argument("id", help="post id")
    rj.add_argument("--reason", required=True, metavar="TEXT",
                    help="why (kept in the post's history for its author)")
    snd = client(command(sub, "send", "publish a post now, through the gate"))
    snd.add_argument("--channel", required=True, metavar="ID", help="channel to post to")
    snd.add_argument("--text", required=True, help="the post's text")
    snd.add_argument("--kind", choices=("marketing", "operational"),
                     help="default: operational for ops, marketing otherwise")
    key_option(snd)
    client(command(sub, "show", "show a post and its history (each transition with time, "
                                "actor and reason)")).add_argument("id", help="post id")
    e = client(command(sub, "edit", "change a scheduled post: text, time, channel or expiry"))
    e.add_argument("id", help="post id")
    e.add_argument("--text", help="the new text")
    e.add_argument("--at", metavar="WHEN", help=f"the new time: {WHEN}")
    e.add_argument("--channel", metavar="ID", help="the new channel")
    e.add_argument("--expires", metavar="WHEN",
                   help=f"the new expiry ('' removes it): {WHEN}")
    cal = client(command(sub, "calendar", "show a week or a month of posts as a grid, in the "
                                          "configured zone"))
    span = cal.add_mutually_exclusive_group()
    span.add_argument("--week", action="store_true",
                      help="the week (Monday to Sunday) holding --date; the default")
    span.add_argument("--month", action="store_true", help="the month holding --date")
    cal.add_argument("--date", metavar="YYYY-MM-DD",
                     help="a day in the week or month to show (default today)")
    cal.add_argument("--channel", metavar="ID", help="only posts for this channel")
    p.set_defaults(func=cmd_post)
