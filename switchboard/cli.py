"""`switchboard`: the daemon (`run`), offline tools (`check`, `simulate`) and a
thin client of the daemon's HTTP API for everything else.

Exit codes: 0 ok, 1 refused or failed (message on stderr), 2 usage error,
3 daemon unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO
from zoneinfo import ZoneInfo

import requests

from switchboard import __version__

if TYPE_CHECKING:
    from switchboard.app import Settings

DEFAULT_URL = "http://127.0.0.1:8650"
DEFAULT_CONFIG = "config/switchboard.yaml"
OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3
# The incident severities (switchboard.config.SEVERITIES, not imported: the client
# stays light and needs no config module at start-up).
SEVERITIES = ("minor", "major", "critical")
# A calendar import is sent in chunks that stay under the API's 1 MiB body limit.
IMPORT_CHUNK_BYTES = 900 * 1024


class Exit(Exception):
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- the daemon and offline tools ---------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from switchboard import app, logs
    from switchboard.store import StoreError
    logs.configure()
    settings = _settings(args.config, sys.stderr)
    try:
        return asyncio.run(app.serve(settings))
    except StoreError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return FAILED
    except OSError as exc:
        print(f"switchboard: cannot start: {exc}", file=sys.stderr)
        return FAILED


def _settings(path: str, problems_to: TextIO) -> Settings:
    """Config and runbooks, or every problem printed (FILE:LINE:COL: ...) and exit 1."""
    from switchboard.app import load_settings
    from switchboard.yamldoc import InvalidFile
    try:
        return load_settings(Path(path))
    except InvalidFile as exc:
        for problem in exc.problems:
            print(problem, file=problems_to)
        raise Exit(FAILED, f"{len(exc.problems)} problem(s) found in {path} or its "
                           "runbooks") from exc


def cmd_check(args: argparse.Namespace) -> int:
    settings = _settings(args.config, sys.stdout)
    cfg = settings.config
    print(f"{args.config}: ok ({len(cfg.channels)} channels, {len(cfg.feeds)} feeds, "
          f"{len(settings.runbooks)} runbooks: {', '.join(sorted(settings.runbooks))})")
    return OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from switchboard import simulate
    from switchboard.runbooks import channel_infos
    from switchboard.yamldoc import parse_duration
    settings = _settings(args.config, sys.stderr)
    runbook = settings.runbooks.get(args.runbook)
    if runbook is None:
        raise Exit(FAILED, f"no runbook named {args.runbook!r} "
                           f"(runbooks: {', '.join(sorted(settings.runbooks))})")
    try:
        duration = parse_duration(args.for_)
        signal = simulate.load_signal(Path(args.signal)) if args.signal else None
    except ValueError as exc:
        raise Exit(USAGE, str(exc)) from exc
    timeline = simulate.simulate(runbook, channel_infos(settings.config.channels),
                                 for_=duration, signal=signal,
                                 timezone=settings.config.timezone)
    if args.json:
        print(json.dumps(simulate.to_json(timeline), indent=2))
    else:
        print(simulate.format_text(timeline), end="")
    return OK


# -- the API client -----------------------------------------------------------

class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = (args.url or os.environ.get("SWITCHBOARD_URL") or DEFAULT_URL).rstrip("/")
        self.token = _token(args)

    def call(self, method: str, path: str, body: Any = None,
             params: dict[str, str] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = requests.request(method, self.url + path, json=body, params=params,
                                        headers=headers, timeout=150)
        except requests.RequestException as exc:
            raise Exit(UNREACHABLE, f"cannot reach the daemon at {self.url}: "
                                    f"{type(exc).__name__}") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        _note_zone(response.headers.get("X-Switchboard-Timezone"))
        if response.status_code >= 400:
            message = (data or {}).get("error", {}).get("message") if isinstance(data, dict) \
                else None
            raise Exit(FAILED, f"{response.status_code}: {message or response.reason}")
        return data


def _token(args: argparse.Namespace) -> str | None:
    path = args.token_file or os.environ.get("SWITCHBOARD_TOKEN_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise Exit(USAGE, f"cannot read token file {path}: {exc.strerror}") from exc
    return os.environ.get("SWITCHBOARD_TOKEN")


class _Shown:
    """The zone times are printed in: the daemon's configured one, as it announces it."""

    zone: ZoneInfo | None = None


def _note_zone(name: str | None) -> None:
    if name:
        from switchboard.timefmt import zone_named
        _Shown.zone = zone_named(name)


def _when(value: object) -> str:
    """An API time as `2026-12-01 17:30 GMT` in the daemon's zone."""
    from switchboard.timefmt import UTC_ZONE, local_text
    return local_text(value, _Shown.zone or UTC_ZONE)


def _print(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> int:
    print(json.dumps(data, indent=2) if args.json else human(data))
    return OK


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)


def cmd_status(args: argparse.Namespace) -> int:
    data = Client(args).call("GET", "/api/v1/status")
    def human(d: dict[str, Any]) -> str:
        posts = ", ".join(f"{k} {v}" for k, v in sorted(d["posts"].items())) or "none"
        return (f"switchboard {d['version']} ({'ready' if d['ready'] else 'not ready'})\n"
                f"incidents active: {', '.join(d['incidents_active']) or 'none'}\n"
                f"channels under incident: {', '.join(d['channels_under_incident']) or 'none'}"
                f"\nposts: {posts}\nnext due: {_when(d['next_due'])}"
                f"{_reload_line(d.get('last_reload'))}")
    return _print(args, data, human)


def _reload_line(reload: dict[str, Any] | None) -> str:
    """A failed last reload, with its first problems; nothing while reloads succeed."""
    if not reload or reload.get("ok"):
        return ""
    count = reload.get("problem_count", len(reload["problems"]))
    lines = [f"\nlast reload FAILED at {_when(reload['at'])} ({count} problem(s); the "
             "previous configuration is still running):"]
    lines += [f"  {problem}" for problem in reload["problems"]]
    if count > len(reload["problems"]):
        lines.append(f"  ... and {count - len(reload['problems'])} more (switchboard check)")
    return "\n".join(lines)


def cmd_feeds(args: argparse.Namespace) -> int:
    data = Client(args).call("GET", "/api/v1/feeds")
    def human(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "no feeds configured"
        return _table([(f["id"], f["kind"], f["mode"], _when(f["last_success"]),
                        _staleness(f["staleness_seconds"]), f["signals"],
                        _feed_error(f["last_error"])) for f in rows],
                      ("FEED", "KIND", "MODE", "LAST SUCCESS", "STALE", "SIGNALS",
                       "LAST ERROR"))
    return _print(args, data, human)


def _feed_error(error: dict[str, Any] | None) -> str:
    if error is None:
        return "-"
    return f"{_when(error['at'])} {error['reason']}: {error['message']}"


def _staleness(seconds: float) -> str:
    whole = int(seconds)
    if whole < 120:
        return f"{whole}s"
    if whole < 7200:
        return f"{whole // 60}m"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def cmd_channels(args: argparse.Namespace) -> int:
    data = Client(args).call("GET", "/api/v1/channels")
    def human(rows: list[dict[str, Any]]) -> str:
        return _table([(c["id"], c["kind"], c["audience"], c["control"],
                        ",".join(c["under_incident"]) or "-",
                        (c["last_error"] or {}).get("message", "-")) for c in rows],
                      ("CHANNEL", "KIND", "AUDIENCE", "CONTROL", "INCIDENT", "LAST ERROR"))
    return _print(args, data, human)


def _incident_rows(rows: list[dict[str, Any]]) -> str:
    return _table([(i["id"], i["state"], i["severity"], i["runbook"], ",".join(i["channels"]),
                    _when(i["declared_at"]), i["title"]) for i in rows],
                  ("ID", "STATE", "SEVERITY", "RUNBOOK", "CHANNELS", "DECLARED", "TITLE"))


def cmd_incident(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "declare":
        body = {"runbook": args.runbook, "title": args.title, "severity": args.severity,
                "channels": args.channel or None, "reason": args.reason}
        data = client.call("POST", "/api/v1/incidents", body)
        return _print(args, data, lambda d: f"{d['id']} declared: {', '.join(d['channels'])} "
                                            f"under {d['runbook']}")
    if args.action == "list":
        data = client.call("GET", "/api/v1/incidents", params={"all": "true"} if args.all
                           else None)
        return _print(args, data, _incident_rows)
    if args.action == "show":
        data = client.call("GET", f"/api/v1/incidents/{args.id}")
        def human(d: dict[str, Any]) -> str:
            lines = [_incident_rows([d]), "", "timeline:"]
            for e in d["timeline"]:
                extra = {k: v for k, v in e.items() if k not in ("at", "event", "actor")}
                lines.append(f"  {_when(e['at'])}  {e['event']:<18} {e['actor']:<22} "
                             f"{json.dumps(extra) if extra else ''}")
            return "\n".join(lines)
        return _print(args, data, human)
    if args.action == "update":
        data = client.call("POST", f"/api/v1/incidents/{args.id}/update", {"text": args.text})
        return _print(args, data, lambda d: "\n".join(f"post {p['id']} {p['state']} on "
                                                      f"{p['channel']}" for p in d))
    data = client.call("POST", f"/api/v1/incidents/{args.id}/resolve", {"note": args.note})
    return _print(args, data, lambda d: f"{d['id']} resolved; channels return to marketing "
                                        f"after {_when(d['cooldown_until'])}")


def _post_rows(rows: list[dict[str, Any]]) -> str:
    return _table([(p["id"], p["state"], p["channel"], p["kind"], _when(p["due_at"]),
                    p["incident_id"] or "-", p["text"][:50]) for p in rows],
                  ("ID", "STATE", "CHANNEL", "KIND", "DUE", "INCIDENT", "TEXT"))


def cmd_post(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "schedule":
        body = {"channel": args.channel, "at": args.at, "text": args.text, "kind": args.kind,
                "expires": args.expires, "link": args.link}
        data = client.call("POST", "/api/v1/posts", {k: v for k, v in body.items() if v})
        return _print(args, data, lambda p: f"post {p['id']} {p['state']} for {p['channel']} "
                                            f"at {_when(p['due_at'])}")
    if args.action == "import":
        return _import(args, client)
    if args.action == "list":
        params = {k: v for k, v in (("state", args.state), ("channel", args.channel),
                                    ("from", args.from_), ("to", args.to),
                                    ("incident", args.incident)) if v}
        data = client.call("GET", "/api/v1/posts", params=params)
        return _print(args, data, _post_rows)
    if args.action in ("show", "edit", "calendar"):
        return {"show": _post_show, "edit": _post_edit,
                "calendar": _post_calendar}[args.action](args, client)
    if args.action == "send":
        body = {"channel": args.channel, "text": args.text, "kind": args.kind}
        data = client.call("POST", "/api/v1/send", {k: v for k, v in body.items() if v})
        return _print(args, data, lambda p: f"post {p['id']} {p['state']} on {p['channel']} "
                                            f"at {_when(p['published_at'])}")
    where = _action_filter(args)
    if len(args.id) == 1 and where is None and not getattr(args, "spacing", None):
        body = {"at": args.at} if getattr(args, "at", None) else {}
        data = client.call("POST", f"/api/v1/posts/{args.id[0]}/{args.action}", body)
        return _print(args, data, lambda p: f"post {p['id']} {p['state']}")
    return _post_bulk(args, client, where)


def _post_show(args: argparse.Namespace, client: Client) -> int:
    data = client.call("GET", f"/api/v1/posts/{args.id}")
    def human(p: dict[str, Any]) -> str:
        lines = [f"post {p['id']}  {p['state']}  {p['kind']} on {p['channel']}",
                 f"  due:       {_when(p['due_at'])}",
                 f"  expires:   {_when(p['expires_at'])}",
                 f"  incident:  {p['incident_id'] or '-'}",
                 f"  created:   {_when(p['created_at'])} by {p['created_by']}",
                 f"  published: {_when(p['published_at'])}"
                 + (f" ({p['remote_id']})" if p["remote_id"] else "")]
        if p["error"]:
            lines.append(f"  error:     {p['error']}")
        lines += [f"  text:      {p['text']}", "", "history:"]
        for h in p["history"]:
            moved = h["to"] if h["from"] in (None, h["to"]) else f"{h['from']} -> {h['to']}"
            lines.append(f"  {_when(h['at'])}  {moved:<22} {h['actor']:<16} "
                         f"{_times_in(h['reason'] or '')}".rstrip())
        return "\n".join(lines)
    return _print(args, data, human)


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)")


def _times_in(text: str) -> str:
    """A stored reason (`due_at 2026-12-01T09:00:00+00:00 -> ...`) with its times local."""
    return _RFC3339.sub(lambda m: _when(m.group(0)), text)


def _post_edit(args: argparse.Namespace, client: Client) -> int:
    body = {k: v for k, v in (("text", args.text), ("at", args.at), ("channel", args.channel),
                              ("expires", args.expires)) if v is not None}
    if not body:
        raise Exit(USAGE, "post edit needs one or more of --text, --at, --channel, --expires")
    data = client.call("PATCH", f"/api/v1/posts/{args.id}", body)
    return _print(args, data, lambda p: f"post {p['id']} {p['state']} for {p['channel']} "
                                        f"at {_when(p['due_at'])}")


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
    _print(args, data, _bulk_summary)
    return FAILED if data["refused"] else OK


_DONE_WORDS = {"cancel": "cancelled", "release": "released", "drop": "dropped"}


def _bulk_summary(d: dict[str, Any]) -> str:
    done = d["done"]
    lines = [f"{_DONE_WORDS[d['action']]} {len(done)}: "
             f"{', '.join(map(str, done)) if done else 'none'}"]
    for post_id in done:
        if str(post_id) in d.get("due_at", {}):
            lines.append(f"  post {post_id} due {_when(d['due_at'][str(post_id)])}")
    if d["refused"]:
        lines.append(f"refused {len(d['refused'])}:")
        lines += [f"  {r['id']}: {r['reason']}" for r in d["refused"]]
    return "\n".join(lines)


def _post_calendar(args: argparse.Namespace, client: Client) -> int:
    import shutil
    from datetime import date, datetime

    from switchboard import calendar_grid
    from switchboard.timefmt import UTC_ZONE
    client.call("GET", "/healthz")  # learns the daemon's zone before drawing the days
    zone = _Shown.zone or UTC_ZONE
    try:
        day = date.fromisoformat(args.date) if args.date else datetime.now(zone).date()
    except ValueError as exc:
        raise Exit(USAGE, f"bad --date {args.date!r}: use YYYY-MM-DD") from exc
    start, end = calendar_grid.window(day, args.month, zone)
    params = {"from": start.isoformat(), "to": end.isoformat(), "limit": "1000"}
    if args.channel:
        params["channel"] = args.channel
    data = [p for p in client.call("GET", "/api/v1/posts", params=params)
            if p["state"] not in CALENDAR_HIDDEN]
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


def _import(args: argparse.Namespace, client: Client) -> int:
    from switchboard.posts import parse_calendar
    from switchboard.refusals import Refused
    path = Path(args.file)
    try:
        rows = parse_calendar(path.read_bytes(), path.name)
    except OSError as exc:
        raise Exit(USAGE, f"cannot read {path}: {exc.strerror}") from exc
    except Refused as exc:
        raise Exit(FAILED, exc.message) from exc
    created: list[dict[str, Any]] = []
    for chunk in _chunks(rows):
        created += client.call("POST", "/api/v1/posts", chunk)
    return _print(args, created, lambda d: f"imported {len(d)} post(s) from {path}")


def _chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for row in rows:
        row_size = len(json.dumps(row)) + 2
        if chunks[-1] and size + row_size > IMPORT_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(row)
        size += row_size
    return [c for c in chunks if c]


# -- argument parsing ---------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="switchboard", description=__doc__.split("\n")[0])
    top.add_argument("--version", action="version", version=f"switchboard {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    def client(p: argparse.ArgumentParser, json_flag: bool = True) -> argparse.ArgumentParser:
        p.add_argument("--url", help=f"daemon URL (env SWITCHBOARD_URL, default {DEFAULT_URL})")
        p.add_argument("--token-file", help="bearer token file (env SWITCHBOARD_TOKEN_FILE; "
                                            "or SWITCHBOARD_TOKEN)")
        if json_flag:
            p.add_argument("--json", action="store_true", help="print the API's JSON")
        return p

    p = sub.add_parser("run", help="the daemon, in the foreground")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="validate config, runbooks and templates offline")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("simulate", help="a runbook's timeline on a fake clock")
    p.add_argument("runbook")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.add_argument("--for", dest="for_", default="3h")
    p.add_argument("--signal", help="JSON file with the declaring signal")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_simulate)
    client(sub.add_parser("status", help="the daemon's state")).set_defaults(func=cmd_status)
    client(sub.add_parser("feeds", help="each feed's last success, last error, staleness and "
                                        "signals")).set_defaults(func=cmd_feeds)
    client(sub.add_parser("channels", help="channels, who controls them, last errors")
           ).set_defaults(func=cmd_channels)
    _incident_parsers(sub.add_parser("incident", help="declare, list, show, update, resolve"),
                      client)
    _post_parsers(sub.add_parser("post", help="schedule, import, list, send, review posts"),
                  client)
    return top


Adder = Callable[..., argparse.ArgumentParser]


def _incident_parsers(p: argparse.ArgumentParser, client: Adder) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    d = client(sub.add_parser("declare"))
    d.add_argument("--runbook", required=True)
    d.add_argument("--title", required=True)
    d.add_argument("--severity", choices=SEVERITIES)
    d.add_argument("--channel", action="append", help="limit the scope (repeatable)")
    d.add_argument("--reason")
    client(sub.add_parser("list")).add_argument("--all", action="store_true")
    client(sub.add_parser("show")).add_argument("id")
    u = client(sub.add_parser("update"))
    u.add_argument("id")
    u.add_argument("--text", required=True)
    r = client(sub.add_parser("resolve"))
    r.add_argument("id")
    r.add_argument("--note")
    p.set_defaults(func=cmd_incident)


def _post_parsers(p: argparse.ArgumentParser, client: Adder) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    s = client(sub.add_parser("schedule"))
    s.add_argument("--channel", required=True)
    s.add_argument("--at", required=True, help="RFC 3339, local time, or +10m")
    s.add_argument("--text", required=True)
    s.add_argument("--kind", choices=("marketing", "operational"))
    s.add_argument("--expires")
    s.add_argument("--link")
    client(sub.add_parser("import")).add_argument("file", help="CSV or JSON lines")
    ls = client(sub.add_parser("list"))
    ls.add_argument("--state")
    ls.add_argument("--channel")
    ls.add_argument("--from", dest="from_", help="due at or after (a time like --at takes)")
    ls.add_argument("--to", help="due before (a time like --at takes)")
    ls.add_argument("--incident", help="posts tied to an incident (INC-n)")
    _post_review_parsers(sub, client)
    snd = client(sub.add_parser("send"))
    snd.add_argument("--channel", required=True)
    snd.add_argument("--text", required=True)
    snd.add_argument("--kind", choices=("marketing", "operational"))
    client(sub.add_parser("show", help="a post and its history")).add_argument("id")
    e = client(sub.add_parser("edit", help="change a scheduled post (text, time, channel, "
                                           "expiry)"))
    e.add_argument("id")
    e.add_argument("--text")
    e.add_argument("--at", help="RFC 3339, local time, or an offset like +2h30m")
    e.add_argument("--channel")
    e.add_argument("--expires", help="a time, like --at; '' removes the expiry")
    cal = client(sub.add_parser("calendar", help="a week or a month of posts as a grid"))
    span = cal.add_mutually_exclusive_group()
    span.add_argument("--week", action="store_true", help="the week holding --date (default)")
    span.add_argument("--month", action="store_true", help="the month holding --date")
    cal.add_argument("--date", help="a day in the week or month to show (YYYY-MM-DD; "
                                    "default today)")
    cal.add_argument("--channel")
    p.set_defaults(func=cmd_post)


def _post_review_parsers(sub: Any, client: Adder) -> None:
    """cancel / release / drop: one or more ids, or a filter."""
    for action in ("cancel", "release", "drop"):
        a = client(sub.add_parser(action, help=f"{action} posts by id or by filter"))
        a.add_argument("id", nargs="*", help="post ids")
        a.add_argument("--filter", help="KEY=VALUE[,KEY=VALUE]: state, channel, incident, "
                                        "from, to")
        for key in _FILTER_KEYS:
            a.add_argument(f"--{key}", dest=f"filter_{key}", help=f"filter by {key}")
        if action == "release":
            a.add_argument("--at", help="when the first post of each channel goes (default "
                                        "now)")
            a.add_argument("--spacing", help="then one per channel every SPACING (e.g. 5m)")


# File names may be any bytes the file system holds; they are never sent.
_FILE_ARGS = frozenset({"config", "token_file", "file", "signal"})


def _check_text_args(args: argparse.Namespace) -> None:
    """Arguments holding bytes that are not UTF-8 (Python keeps them as lone
    surrogates) are refused here: the daemon could store or send none of them."""
    from switchboard.text import lone_surrogate
    for name, value in vars(args).items():
        if name in _FILE_ARGS:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and lone_surrogate(item) is not None:
                option = name.rstrip("_").replace("_", "-")
                raise Exit(USAGE, f"{option}: not valid UTF-8 text (check the terminal's "
                                  "or the script's encoding)")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = parser().parse_args(argv)
    try:
        _check_text_args(args)
        code = args.func(args)
    except Exit as exc:
        if exc.message:
            print(f"switchboard: {exc.message}", file=sys.stderr)
        code = exc.code
    except KeyboardInterrupt:
        code = FAILED
    sys.exit(code)
