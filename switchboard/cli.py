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
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO
from urllib.parse import parse_qs, urljoin, urlsplit
from zoneinfo import ZoneInfo

import requests

from switchboard import __version__

if TYPE_CHECKING:
    from switchboard.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8650"
DEFAULT_CONFIG = "config/switchboard.yaml"
OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3
# The incident severities (switchboard.config.SEVERITIES, not imported: the client
# stays light and needs no config module at start-up).
SEVERITIES = ("minor", "major", "critical")
# Requests that create something carry one Idempotency-Key per invocation and
# are retried with it after a dropped connection or a busy store.
RETRY_DELAYS = (0.5, 1.0, 2.0)


class Exit(Exception):
    """Ends the command: `code` is the exit status, `error` the API's error code (or
    `failed`, `usage`, `unreachable` for errors found here), for `--json`."""

    def __init__(self, code: int, message: str = "", error: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.error = error or {USAGE: "usage", UNREACHABLE: "unreachable"}.get(code, "failed")


# -- the daemon and offline tools ---------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from switchboard import app, logs
    from switchboard.listener import BadLimit
    from switchboard.store import StoreError
    logs.configure()
    settings = _settings(args.config, sys.stderr)
    try:
        return asyncio.run(app.serve(settings))
    except (StoreError, BadLimit) as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return FAILED
    except OSError as exc:
        print(f"switchboard: cannot start: {exc}", file=sys.stderr)
        return FAILED


def _settings(path: str, problems_to: TextIO, create_tokens: bool = True) -> Settings:
    """Config and runbooks, or every problem printed (FILE:LINE:COL: ...) and exit 1;
    only the daemon (`create_tokens`) writes the token files the config generates."""
    from switchboard.settings import load_settings
    from switchboard.yamldoc import InvalidFile
    try:
        return load_settings(Path(path), create_tokens)
    except InvalidFile as exc:
        for problem in exc.problems:
            print(problem, file=problems_to)
        raise Exit(FAILED, f"{len(exc.problems)} problem(s) found in {path} or its "
                           "runbooks") from exc


def cmd_check(args: argparse.Namespace) -> int:
    settings = _settings(args.config, sys.stdout, create_tokens=False)
    cfg = settings.config
    print(f"{args.config}: ok ({len(cfg.channels)} channels, {len(cfg.feeds)} feeds, "
          f"{len(settings.runbooks)} runbooks: {', '.join(sorted(settings.runbooks))})")
    return OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from switchboard import simulate
    from switchboard.runbooks import channel_infos
    from switchboard.yamldoc import parse_duration
    settings = _settings(args.config, sys.stderr, create_tokens=False)
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
        self.key = getattr(args, "idempotency_key", None) or str(uuid.uuid4())

    def call(self, method: str, path: str, body: Any = None,
             params: dict[str, str] | None = None, keyed: bool = False) -> Any:
        return self.exchange(method, self.url + path, body, params, keyed)[0]

    def pages(self, path: str, params: dict[str, str], follow: bool) -> Iterator[
            tuple[list[Any], str | None, int | None]]:
        """Each page of a list endpoint, with the next page's URL and the total;
        only the first unless `follow`."""
        url: str | None = self.url + path
        query: dict[str, str] | None = params
        while url is not None:
            data, response = self.exchange("GET", url, None, query)
            following = response.links.get("next", {}).get("url")
            following = None if following is None else urljoin(self.url + "/", following)
            total = response.headers.get("X-Total-Count")
            yield data, following, int(total) if total and total.isdigit() else None
            url, query = (following, None) if follow else (None, None)

    def exchange(self, method: str, url: str, body: Any = None,
                 params: dict[str, str] | None = None,
                 keyed: bool = False) -> tuple[Any, requests.Response]:
        response = self.request(method, url, keyed, json=body, params=params)
        return self.answer(response), response

    def request(self, method: str, url: str, keyed: bool, **kwargs: Any) -> requests.Response:
        """One request (`url` absolute, or a path on the daemon); a keyed one is
        retried with the same key, so a retry after a dropped connection never
        makes a second post or incident."""
        url = url if url.startswith(("http://", "https://")) else self.url + url
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if keyed:
            headers["Idempotency-Key"] = self.key
        for delay in (*RETRY_DELAYS, None) if keyed else (None,):
            try:
                response = requests.request(method, url, headers=headers, timeout=150,
                                            **kwargs)
            except requests.RequestException as exc:
                if delay is None:
                    hint = f" (Idempotency-Key {self.key}: repeat with --idempotency-key " \
                           f"{self.key} to be safe)" if keyed else ""
                    raise Exit(UNREACHABLE, f"cannot reach the daemon at {self.url}: "
                                            f"{type(exc).__name__}{hint}") from exc
            else:
                if response.status_code != 503 or delay is None:
                    return response
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def answer(response: requests.Response) -> Any:
        try:
            data = response.json()
        except ValueError:
            data = None
        _note_zone(response.headers.get("X-Switchboard-Timezone"))
        if response.status_code >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            error = error if isinstance(error, dict) else {}
            message = f"{response.status_code}: {error.get('message') or response.reason}"
            if response.status_code == 401:
                message += "; " + TOKEN_HELP
            raise Exit(FAILED, message, str(error.get("code") or response.status_code))
        return data


TOKEN_HELP = ("the token comes from --token-file FILE, SWITCHBOARD_TOKEN_FILE or "
              "SWITCHBOARD_TOKEN; the embedded default writes one per role under var/tokens/ "
              "(export SWITCHBOARD_TOKEN_FILE=$PWD/var/tokens/admin.token)")


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
    return _table([(i["id"], "cooldown" if i.get("in_cooldown") else i["state"], i["severity"],
                    i["runbook"], _channels_cell(i["channels"]), _when(i["declared_at"]),
                    _when(i["cooldown_until"]) if i.get("in_cooldown") else "-", i["title"])
                   for i in rows],
                  ("ID", "STATE", "SEVERITY", "RUNBOOK", "CHANNELS", "DECLARED",
                   "COOLDOWN ENDS", "TITLE"))


def _channels_cell(channels: list[str]) -> str:
    """A few channel names; `incident show --json` lists them all."""
    if len(channels) <= 3:
        return ",".join(channels)
    return f"{','.join(channels[:2])} +{len(channels) - 2} more"


def _voided(d: dict[str, Any]) -> str:
    lines = [f"{d['id']} voided: {', '.join(d['channels']) or 'no channels'} back with "
             f"marketing, no all-clear, no cooldown",
             f"retracted: {', '.join(f'post {i}' for i in d['retracted']) or 'nothing'}",
             f"back on the schedule: {len(d['rescheduled'])} post(s)"]
    if d["held"]:
        lines.append(f"waiting for review: {len(d['held'])} post(s): "
                     "switchboard post list --state held")
    lines += [f"could not retract: {f}" for f in d["retract_failed"]]
    return "\n".join(lines)


def cmd_incident(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "declare":
        body = {"runbook": args.runbook, "title": args.title, "severity": args.severity,
                "channels": args.channel or None, "reason": args.reason}
        data = client.call("POST", "/api/v1/incidents", body, keyed=True)
        return _print(args, data, lambda d: f"{d['id']} declared: {', '.join(d['channels'])} "
                                            f"under {d['runbook']}")
    if args.action == "list":
        # Incidents are few next to posts: every page, newest first.
        params = {"all": "true", "limit": "1000"} if args.all else {"limit": "1000"}
        data = [i for page, _, _ in client.pages("/api/v1/incidents", params, follow=True)
                for i in page]
        return _print(args, data, _incident_rows)
    if args.action == "show":
        data = client.call("GET", f"/api/v1/incidents/{args.id}")
        def human(d: dict[str, Any]) -> str:
            lines = [_incident_rows([d]), "", "timeline:"]
            for e in d["timeline"]:
                extra = {k: v for k, v in e.items() if k not in ("at", "event", "actor")}
                lines.append(f"  {_when(e['at'])}  {e['event']:<18} {e['actor']:<22} "
                             f"{_times_in(json.dumps(extra)) if extra else ''}")
            return "\n".join(lines)
        return _print(args, data, human)
    if args.action == "update":
        data = client.call("POST", f"/api/v1/incidents/{args.id}/update", {"text": args.text})
        return _print(args, data, lambda d: "\n".join(f"post {p['id']} {p['state']} on "
                                                      f"{p['channel']}" for p in d))
    if args.action == "void":
        data = client.call("POST", f"/api/v1/incidents/{args.id}/void", {"reason": args.reason})
        return _print(args, data, _voided)
    if args.action == "release":
        data = client.call("POST", f"/api/v1/incidents/{args.id}/release",
                           {"reason": args.reason})
        return _print(args, data, lambda d: f"{d['id']}: cooldown ended; channels back with "
                                            "marketing (held posts: switchboard post list "
                                            "--state held)")
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
        data = client.call("POST", "/api/v1/posts", {k: v for k, v in body.items() if v},
                           keyed=True)
        return _print(args, data, lambda p: f"post {p['id']} {p['state']} for {p['channel']} "
                                            f"at {_when(p['due_at'])}")
    if args.action == "import":
        return _import(args, client)
    if args.action == "list":
        return _list_posts(args, client)
    if args.action in ("show", "edit", "calendar"):
        return {"show": _post_show, "edit": _post_edit,
                "calendar": _post_calendar}[args.action](args, client)
    if args.action == "send":
        body = {"channel": args.channel, "text": args.text, "kind": args.kind}
        data = client.call("POST", "/api/v1/send", {k: v for k, v in body.items() if v},
                           keyed=True)
        return _print(args, data, lambda p: f"post {p['id']} {p['state']} on {p['channel']} "
                                            f"at {_when(p['published_at'])}")
    if args.action in ("approve", "reject"):
        body = {"reason": args.reason} if args.action == "reject" else (
            {"at": args.at} if args.at else {})
        data = client.call("POST", f"/api/v1/posts/{args.id}/{args.action}", body)
        return _print(args, data, lambda p: f"post {p['id']} {p['state']}")
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
    _print(args, rows, _post_rows)
    if following is not None:
        cursor = parse_qs(urlsplit(following).query).get("cursor", [""])[0]
        print(f"switchboard: {len(rows)} of {total if total is not None else 'more'} posts "
              f"shown; the next page: --cursor {cursor} (or --all for every page)",
              file=sys.stderr)
    return OK


def _import(args: argparse.Namespace, client: Client) -> int:
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
        return _print(args, result, lambda d: f"{path}: {d['rows']} row(s) ok (dry run, "
                                              "nothing stored)")
    return _print(args, result, lambda d: f"imported {d['created']} post(s) from {path}"
                                          f" ({d['existing']} already there)")


def _problems(response: requests.Response) -> list[str]:
    try:
        found = response.json()["error"]["problems"]
    except (ValueError, KeyError, TypeError):
        found = None
    return [str(p) for p in found] if isinstance(found, list) else [response.text[:500]]


# -- argument parsing ---------------------------------------------------------

EPILOG = """\
exit codes: 0 ok, 1 refused or failed (message on stderr; with --json an
{"error": {"code", "message"}} object on stdout), 2 usage error, 3 daemon unreachable.
Client commands find the daemon at --url or SWITCHBOARD_URL (default URL) and
take a bearer token from --token-file, SWITCHBOARD_TOKEN_FILE or SWITCHBOARD_TOKEN;
the embedded default config writes one token per role under var/tokens/.""".replace(
    "default URL", f"default {DEFAULT_URL}")

DESCRIPTION = """\
Hold an organisation's scheduled social posts, watch incident feeds, and hand
the channels to ops during an incident. `run` is the daemon; `check` and
`simulate` work offline; the other commands are clients of the daemon's API."""

WHEN = "RFC 3339 with offset, a local time in the configured zone, or an offset like +10m"


class _Parser(argparse.ArgumentParser):
    """Usage errors as JSON on stdout when the command line asked for --json."""

    def error(self, message: str) -> NoReturn:
        if "--json" in sys.argv[1:]:
            _print_error("usage", f"{self.prog}: {message}")
            self.exit(USAGE)
        super().error(message)


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="switchboard", epilog=EPILOG,
                  description=DESCRIPTION,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"switchboard {__version__}",
                     help="print the version and exit")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, summary: str,
                description: str | None = None) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(
            name, help=summary, description=description or summary[0].upper() + summary[1:] + ".")
        return p

    def client(p: argparse.ArgumentParser, json_flag: bool = True) -> argparse.ArgumentParser:
        p.add_argument("--url", help=f"daemon URL (env SWITCHBOARD_URL, default {DEFAULT_URL})")
        p.add_argument("--token-file", metavar="FILE",
                       help="file holding the bearer token (env SWITCHBOARD_TOKEN_FILE, or the "
                            "token itself in SWITCHBOARD_TOKEN; default config: var/tokens/)")
        if json_flag:
            p.add_argument("--json", action="store_true",
                           help="print the API's JSON instead of text (errors too)")
        return p

    def config_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="FILE",
                       help=f"config file (default {DEFAULT_CONFIG})")

    p = command(sub, "run", "run the daemon in the foreground (systemd runs this)")
    config_option(p)
    p.set_defaults(func=cmd_run)
    p = command(sub, "check", "validate config, runbooks and templates offline",
                "Validate the config file, every runbook and every template offline. Prints "
                "each problem as FILE:LINE:COL: key: message, sorted by file and line, and "
                "exits 1 if there is any.")
    config_option(p)
    p.set_defaults(func=cmd_check)
    p = command(sub, "simulate", "show a runbook's timeline on a fake clock",
                "Play a runbook against the configured channels on a fake clock: what it "
                "would post, notify and remind, and when. Touches nothing.")
    p.add_argument("runbook", help="runbook name (a file runbooks/NAME.yaml)")
    config_option(p)
    p.add_argument("--for", dest="for_", default="3h", metavar="DURATION",
                   help="how long the incident lasts in the simulation (default 3h)")
    p.add_argument("--signal", metavar="FILE",
                   help="JSON file with the declaring feed signal (default: declared by hand)")
    p.add_argument("--json", action="store_true", help="print the timeline as JSON")
    p.set_defaults(func=cmd_simulate)
    client(command(sub, "status", "show the daemon's state: incidents, channels under control, "
                                  "posts by state, a failed last reload")
           ).set_defaults(func=cmd_status)
    client(command(sub, "feeds", "list each feed's last success, last error, staleness and "
                                 "signals counted")).set_defaults(func=cmd_feeds)
    client(command(sub, "channels", "list channels, who controls them and their last errors")
           ).set_defaults(func=cmd_channels)
    _incident_parsers(command(sub, "incident", "declare, list, show, update, resolve, void "
                                               "and release incidents"), command, client)
    _post_parsers(command(sub, "post", "schedule, import, list, send and review posts"),
                  command, client)
    _user_parsers(command(sub, "user", "add, list and disable people; issue their tokens and "
                                       "passwords (admin)"), command, client)
    _audit_parser(command(sub, "audit", "show who did what, when, with which credential",
                          "Show the audit of writes: who (person, or none for a machine "
                          "token), with which credential, what and when. Admins see "
                          "everything; a team's approvers see their team's."), client)
    return top


Adder = Callable[..., argparse.ArgumentParser]
INCIDENT_ID = "incident id (INC-<n> or <n>)"


def _incident_parsers(p: argparse.ArgumentParser, command: Adder, client: Adder) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    d = client(command(sub, "declare", "declare an incident: the gate closes on its channels",
                       "Declare an incident by hand. The runbook's channels come under ops "
                       "control before this returns; its steps (holding statement, reminders) "
                       "start."))
    d.add_argument("--runbook", required=True, metavar="NAME", help="runbook to follow")
    d.add_argument("--title", required=True, metavar="TEXT",
                   help="what is happening, as the public will read it in templates")
    d.add_argument("--severity", choices=SEVERITIES, metavar="S",
                   help="minor, major or critical (default: the runbook's)")
    d.add_argument("--channel", action="append", metavar="ID",
                   help="limit the scope to this channel (repeatable; default: the runbook's "
                        "scope)")
    d.add_argument("--reason", metavar="TEXT", help="why it is declared (kept on the timeline)")
    _key_option(d)
    ls = client(command(sub, "list", "list active incidents and those in cooldown"))
    ls.add_argument("--all", action="store_true", help="include resolved and voided incidents")
    client(command(sub, "show", "show one incident with its timeline")).add_argument(
        "id", help=INCIDENT_ID)
    u = client(command(sub, "update", "post an operational update to the incident's public "
                                      "channels, now"))
    u.add_argument("id", help=INCIDENT_ID)
    u.add_argument("--text", required=True, help="the update's text")
    r = client(command(sub, "resolve", "resolve: all-clear steps run, the cooldown starts",
                       "Resolve an incident: the runbook's resolve steps run (an all-clear "
                       "post, say), the channels stay held for the cooldown, then the held "
                       "posts follow the runbook's policy."))
    r.add_argument("id", help=INCIDENT_ID)
    r.add_argument("--note", metavar="TEXT", help="resolution note for the timeline")
    v = client(command(sub, "void", "void a false alarm: retract, no all-clear, no cooldown",
                       "Void an active incident declared by mistake: its holding statement "
                       "and updates are retracted where the channel can delete them, no "
                       "all-clear is posted, there is no cooldown, the channels return to "
                       "marketing at once, and the posts it held go back on the schedule if "
                       "their slot is still good (else to review)."))
    v.add_argument("id", help=INCIDENT_ID)
    v.add_argument("--reason", required=True, metavar="TEXT",
                   help="why it was a false alarm (kept on the timeline)")
    rel = client(command(sub, "release", "end a resolved incident's cooldown now",
                         "End a resolved incident's cooldown now: the held posts follow the "
                         "runbook's policy and the channels return to marketing."))
    rel.add_argument("id", help=INCIDENT_ID)
    rel.add_argument("--reason", required=True, metavar="TEXT",
                     help="why the cooldown ends early (kept on the timeline)")
    p.set_defaults(func=cmd_incident)


def _post_parsers(p: argparse.ArgumentParser, command: Adder, client: Adder) -> None:
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
    _key_option(s)
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
    _post_review_parsers(sub, command, client)
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
    _key_option(snd)
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


def _post_review_parsers(sub: Any, command: Adder, client: Adder) -> None:
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


TEAM_ROLE = "TEAM:ROLE (role marketing, approver or viewer)"


def _user_parsers(p: argparse.ArgumentParser, command: Adder, client: Adder) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = client(command(sub, "add", "add a person",
                       "Add a person with an organisation-wide role and roles per team. "
                       "Marketing on a team's channels needs a marketing or approver role "
                       "in that team; ops and admin reach every channel."))
    a.add_argument("name", help="the person's name (lower-case letters, digits, . _ -)")
    a.add_argument("--role", required=True, choices=("viewer", "marketing", "ops", "admin"),
                   help="organisation-wide role (marketing reaches only channels of no team)")
    a.add_argument("--team", action="append", default=[], metavar="TEAM:ROLE",
                   help=f"a role in a team, {TEAM_ROLE} (repeatable)")
    client(command(sub, "list", "list people, their roles and teams"))
    d = client(command(sub, "disable", "disable a person: their tokens stop at once"))
    d.add_argument("name", help="the person's name")
    e = client(command(sub, "enable", "enable a disabled person again"))
    e.add_argument("name", help="the person's name")
    t = client(command(sub, "token", "issue a personal token (printed once) or revoke them",
                       "Print a new personal token for the person, once: only its hash is "
                       "kept. With --revoke, every token of the person stops instead."))
    t.add_argument("name", help="the person's name")
    t.add_argument("--revoke", action="store_true", help="revoke all the person's tokens")
    pw = client(command(sub, "password", "set a person's console password",
                        "Set a person's password (at least 12 characters), read from the "
                        "terminal (asked twice) or the first line of standard input; "
                        "--generate makes one and prints it once."))
    pw.add_argument("name", help="the person's name")
    pw.add_argument("--generate", action="store_true",
                    help="generate a random password and print it once")
    p.set_defaults(func=cmd_user)


def _audit_parser(p: argparse.ArgumentParser, client: Adder) -> None:
    client(p)
    p.add_argument("--person", metavar="NAME", help="only this person's actions")
    p.add_argument("--team", metavar="ID", help="only actions on this team's channels")
    p.add_argument("--since", metavar="WHEN",
                   help="only actions since then: a duration back (2h, 30m) or a time, RFC "
                        "3339 or local in the configured zone")
    p.set_defaults(func=cmd_audit)


def _user_rows(rows: list[dict[str, Any]]) -> str:
    return _table([(u["name"], u["role"], "disabled" if u["disabled"] else "active",
                    " ".join(f"{t}:{r}" for t, roles in u["teams"].items() for r in roles)
                    or "-") for u in rows], ("NAME", "ROLE", "STATE", "TEAMS"))


def cmd_user(args: argparse.Namespace) -> int:
    client = Client(args)
    path = f"/api/v1/users/{getattr(args, 'name', '')}"
    if args.action == "add":
        data = client.call("POST", "/api/v1/users", {"name": args.name, "role": args.role,
                                                     "teams": args.team})
        return _print(args, data, lambda u: f"added {u['name']} ({u['role']})")
    if args.action == "list":
        return _print(args, client.call("GET", "/api/v1/users"), _user_rows)
    if args.action in ("disable", "enable"):
        data = client.call("PATCH", path, {"disabled": args.action == "disable"})
        return _print(args, data, lambda u: f"{u['name']} {args.action}d")
    if args.action == "token":
        if args.revoke:
            data = client.call("PATCH", path, {"revoke_tokens": True})
            return _print(args, data, lambda u: f"revoked every token of {u['name']}")
        data = client.call("POST", path + "/tokens")
        return _print(args, data, lambda d: f"{d['token']}\n(shown once: store it now)")
    password = _new_password(args.generate)
    data = client.call("PATCH", path, {"password": password})
    return _print(args, data if not args.generate else {**data, "password": password},
                  lambda u: f"password set for {u['name']}" +
                  (f": {password}" if args.generate else ""))


def _new_password(generate: bool) -> str:
    import getpass
    import secrets
    if generate:
        return secrets.token_urlsafe(18)
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise Exit(USAGE, "the two passwords differ")
    return first


def cmd_audit(args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("person", args.person), ("team", args.team)) if v}
    if args.since:
        params["since"] = args.since
    data = Client(args).call("GET", "/api/v1/audit", params=params)
    return _print(args, data, lambda rows: _table(
        [(_when(e["at"]), e["person"] or "-", e["credential"], e["action"], e["target"] or "-",
          ",".join(e["teams"]) or "-") for e in rows],
        ("AT", "PERSON", "CREDENTIAL", "ACTION", "TARGET", "TEAMS")))


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


def _print_error(code: str, message: str) -> None:
    print(json.dumps({"error": {"code": code, "message": message}}))


def _key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--idempotency-key", metavar="KEY",
                   help="repeat an earlier request safely (default: a new key, reused on this "
                        "command's own retries)")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = parser().parse_args(argv)
    try:
        try:
            _check_text_args(args)
            code = args.func(args)
        except Exit as exc:
            if getattr(args, "json", False):
                _print_error(exc.error, exc.message)
            elif exc.message:
                print(f"switchboard: {exc.message}", file=sys.stderr)
            code = exc.code
        # Inside the guard: a reader that went away (`| head`) shows up on this flush.
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's own flush at exit is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = FAILED
    except KeyboardInterrupt:
        code = FAILED
    sys.exit(code)
