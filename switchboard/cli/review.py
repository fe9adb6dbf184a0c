"""`post cancel`, `post release`, `post drop`: held, failed, missed or unknown posts
reviewed by id or by filter, with a summary of what was done."""

from __future__ import annotations

import argparse
from typing import Any

from switchboard.cli.client import FAILED, OK, USAGE, WHEN, Adder, Client, Exit, output, shown_time

_FILTER_KEYS = ("state", "channel", "incident", "from", "to")


def _action_filter(args: argparse.Namespace) -> dict[str, str] | None:
    """`--filter state=held,channel=x` merged with the separate flags; None if neither."""
    where: dict[str, str] = {}
    for item in (args.filter or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in _FILTER_KEYS or not value.strip():
            raise Exit(USAGE, f"bad filter {item.strip()!r}: use KEY=VALUE with KEY one of "
                              f"{', '.join(_FILTER_KEYS)}")
        where[key] = value.strip()
    for key in _FILTER_KEYS:
        value = getattr(args, f"filter_{key}", None)
        if value:
            where[key] = value
    if where and args.id:
        raise Exit(USAGE, "give post ids or a filter, not both")
    if not where and not args.id:
        raise Exit(USAGE, f"post {args.action} needs post ids or a filter "
                          "(--filter state=held,channel=x)")
    return where or None


def _post_bulk(args: argparse.Namespace, client: Client, where: dict[str, str] | None) -> int:
    body: dict[str, Any] = {"action": args.action}
    if where is None:
        try:
            body["ids"] = [int(i) for i in args.id]
        except ValueError as exc:
            raise Exit(USAGE, f"post ids are numbers: {exc}") from exc
    else:
        body["filter"] = where
    for key in ("at", "spacing"):
        if getattr(args, key, None):
            body[key] = getattr(args, key)
    data = client.call("POST", "/api/v1/posts/actions", body)
    output(args, data, _bulk_summary)
    return FAILED if data["refused"] else OK


def review_posts(args: argparse.Namespace, client: Client) -> int:
    """cancel, release or drop: one post by id, or several (by ids or a filter) at once."""
    where = _action_filter(args)
    if len(args.id) == 1 and where is None and not getattr(args, "spacing", None):
        body = {"at": args.at} if getattr(args, "at", None) else {}
        data = client.call("POST", f"/api/v1/posts/{args.id[0]}/{args.action}", body)
        return output(args, data, lambda p: f"post {p['id']} {p['state']}")
    return _post_bulk(args, client, where)


_DONE_WORDS = {"cancel": "cancelled", "release": "released", "drop": "dropped"}


def _bulk_summary(d: dict[str, Any]) -> str:
    done = d["done"]
    lines = [f"{_DONE_WORDS[d['action']]} {len(done)}: "
             f"{', '.join(map(str, done)) if done else 'none'}"]
    for post_id in done:
        if str(post_id) in d.get("due_at", {}):
            lines.append(f"  post {post_id} due {shown_time(d['due_at'][str(post_id)])}")
    if d["refused"]:
        lines.append(f"refused {len(d['refused'])}:")
        lines += [f"  {r['id']}: {r['reason']}" for r in d["refused"]]
    return "\n".join(lines)


_REVIEW_SUMMARIES = {
    "cancel": "cancel scheduled posts, by id or by filter",
    "release": "put held, failed, missed or unknown posts back on the schedule, by id or by "
               "filter",
    "drop": "drop held, failed, missed, suppressed or unknown posts, by id or by filter",
}
_FILTER_HELP = {"state": "only posts in this state", "channel": "only posts for this channel",
                "incident": "only posts tied to this incident (INC-n)",
                "from": "only posts due at or after this time",
                "to": "only posts due before this time"}


def add_parsers(sub: Any, command: Adder, client: Adder) -> None:
    """cancel / release / drop: one or more ids, or a filter; a summary of what was done."""
    for action, summary in _REVIEW_SUMMARIES.items():
        a = client(command(sub, action, summary))
        a.add_argument("id", nargs="*", help="post ids (or give a filter instead)")
        a.add_argument("--filter", metavar="KEY=VALUE,...",
                       help="select posts by state, channel, incident, from, to "
                            "(e.g. state=held,channel=outbox)")
        for key in _FILTER_KEYS:
            a.add_argument(f"--{key}", dest=f"filter_{key}", metavar=key.upper(),
                           help=f"{_FILTER_HELP[key]} (same as --filter {key}=...)")
        if action == "release":
            a.add_argument("--at", metavar="WHEN", help="when the first post of each channel "
                                                        f"goes (default now): {WHEN}")
            a.add_argument("--spacing", metavar="DURATION",
                           help="then one post per channel every DURATION (e.g. 5m)")
