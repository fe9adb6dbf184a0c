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
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from switchboard import __version__

if TYPE_CHECKING:
    from switchboard.app import Settings

DEFAULT_URL = "http://127.0.0.1:8650"
DEFAULT_CONFIG = "config/switchboard.yaml"
OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3
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
        return self.exchange(method, self.url + path, body, params)[0]

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
                 params: dict[str, str] | None = None) -> tuple[Any, requests.Response]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = requests.request(method, url, json=body, params=params,
                                        headers=headers, timeout=150)
        except requests.RequestException as exc:
            raise Exit(UNREACHABLE, f"cannot reach the daemon at {self.url}: "
                                    f"{type(exc).__name__}") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            message = (data or {}).get("error", {}).get("message") if isinstance(data, dict) \
                else None
            raise Exit(FAILED, f"{response.status_code}: {message or response.reason}")
        return data, response


def _token(args: argparse.Namespace) -> str | None:
    path = args.token_file or os.environ.get("SWITCHBOARD_TOKEN_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise Exit(USAGE, f"cannot read token file {path}: {exc.strerror}") from exc
    return os.environ.get("SWITCHBOARD_TOKEN")


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
                f"\nposts: {posts}\nnext due: {d['next_due'] or '-'}")
    return _print(args, data, human)


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
                    i["declared_at"], i["title"]) for i in rows],
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
                lines.append(f"  {e['at']}  {e['event']:<18} {e['actor']:<22} "
                             f"{json.dumps(extra) if extra else ''}")
            return "\n".join(lines)
        return _print(args, data, human)
    if args.action == "update":
        data = client.call("POST", f"/api/v1/incidents/{args.id}/update", {"text": args.text})
        return _print(args, data, lambda d: "\n".join(f"post {p['id']} {p['state']} on "
                                                      f"{p['channel']}" for p in d))
    data = client.call("POST", f"/api/v1/incidents/{args.id}/resolve", {"note": args.note})
    return _print(args, data, lambda d: f"{d['id']} resolved; channels return to marketing "
                                        f"after {d['cooldown_until']}")


def _post_rows(rows: list[dict[str, Any]]) -> str:
    return _table([(p["id"], p["state"], p["channel"], p["kind"], p["due_at"],
                    p["incident_id"] or "-", p["text"][:50]) for p in rows],
                  ("ID", "STATE", "CHANNEL", "KIND", "DUE", "INCIDENT", "TEXT"))


def cmd_post(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "schedule":
        body = {"channel": args.channel, "at": args.at, "text": args.text, "kind": args.kind,
                "expires": args.expires, "link": args.link}
        data = client.call("POST", "/api/v1/posts", {k: v for k, v in body.items() if v})
        return _print(args, data, lambda p: f"post {p['id']} {p['state']} for {p['channel']} "
                                            f"at {p['due_at']}")
    if args.action == "import":
        return _import(args, client)
    if args.action == "list":
        return _list_posts(args, client)
    if args.action == "send":
        body = {"channel": args.channel, "text": args.text, "kind": args.kind}
        data = client.call("POST", "/api/v1/send", {k: v for k, v in body.items() if v})
        return _print(args, data, lambda p: f"post {p['id']} {p['state']} on {p['channel']} "
                                            f"at {p['published_at']}")
    body = {"at": args.at} if getattr(args, "at", None) else {}
    data = client.call("POST", f"/api/v1/posts/{args.id}/{args.action}", body)
    return _print(args, data, lambda p: f"post {p['id']} {p['state']}")


def _list_posts(args: argparse.Namespace, client: Client) -> int:
    """One page (`--limit`, `--cursor`), or every page with `--all`; a page that
    has more after it says how to get them on stderr."""
    params = {k: v for k, v in (("state", args.state), ("channel", args.channel),
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
    d.add_argument("--severity")
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
    ls.add_argument("--limit", help="posts per page, 1 to 1000 (default 100)")
    ls.add_argument("--cursor", help="start at this page (printed when more exist)")
    ls.add_argument("--all", action="store_true", help="every page, not only the first")
    for action in ("cancel", "drop"):
        client(sub.add_parser(action)).add_argument("id")
    rel = client(sub.add_parser("release"))
    rel.add_argument("id")
    rel.add_argument("--at")
    snd = client(sub.add_parser("send"))
    snd.add_argument("--channel", required=True)
    snd.add_argument("--text", required=True)
    snd.add_argument("--kind", choices=("marketing", "operational"))
    p.set_defaults(func=cmd_post)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = parser().parse_args(argv)
    try:
        code = args.func(args)
    except Exit as exc:
        if exc.message:
            print(f"switchboard: {exc.message}", file=sys.stderr)
        code = exc.code
    except KeyboardInterrupt:
        code = FAILED
    sys.exit(code)
