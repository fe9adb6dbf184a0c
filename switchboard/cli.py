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
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import requests

from switchboard import __version__

if TYPE_CHECKING:
    from switchboard.app import Settings

DEFAULT_URL = "http://127.0.0.1:8650"
DEFAULT_CONFIG = "config/switchboard.yaml"
OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3
# Requests that create something carry one Idempotency-Key per invocation and
# are retried with it after a dropped connection or a busy store.
RETRY_DELAYS = (0.5, 1.0, 2.0)


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
        self.key = getattr(args, "idempotency_key", None) or str(uuid.uuid4())

    def call(self, method: str, path: str, body: Any = None,
             params: dict[str, str] | None = None, keyed: bool = False) -> Any:
        return self.answer(self.request(method, path, keyed, json=body, params=params))

    def request(self, method: str, path: str, keyed: bool, **kwargs: Any) -> requests.Response:
        """One request; a keyed one is retried with the same key, so a retry after
        a dropped connection never makes a second post or incident."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if keyed:
            headers["Idempotency-Key"] = self.key
        for delay in (*RETRY_DELAYS, None) if keyed else (None,):
            try:
                response = requests.request(method, self.url + path, headers=headers,
                                            timeout=150, **kwargs)
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
        data = client.call("POST", "/api/v1/incidents", body, keyed=True)
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
        data = client.call("POST", "/api/v1/posts", {k: v for k, v in body.items() if v},
                           keyed=True)
        return _print(args, data, lambda p: f"post {p['id']} {p['state']} for {p['channel']} "
                                            f"at {p['due_at']}")
    if args.action == "import":
        return _import(args, client)
    if args.action == "list":
        params = {k: v for k, v in (("state", args.state), ("channel", args.channel)) if v}
        data = client.call("GET", "/api/v1/posts", params=params)
        return _print(args, data, _post_rows)
    if args.action == "send":
        body = {"channel": args.channel, "text": args.text, "kind": args.kind}
        data = client.call("POST", "/api/v1/send", {k: v for k, v in body.items() if v},
                           keyed=True)
        return _print(args, data, lambda p: f"post {p['id']} {p['state']} on {p['channel']} "
                                            f"at {p['published_at']}")
    body = {"at": args.at} if getattr(args, "at", None) else {}
    data = client.call("POST", f"/api/v1/posts/{args.id}/{args.action}", body)
    return _print(args, data, lambda p: f"post {p['id']} {p['state']}")


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
    _key_option(d)
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
    _key_option(s)
    imp = client(sub.add_parser("import", help="a calendar file: all rows or none"))
    imp.add_argument("file", help="CSV (header row; , or ;) or JSON lines")
    imp.add_argument("--dry-run", action="store_true", help="check every row, store nothing")
    ls = client(sub.add_parser("list"))
    ls.add_argument("--state")
    ls.add_argument("--channel")
    for action in ("cancel", "drop"):
        client(sub.add_parser(action)).add_argument("id")
    rel = client(sub.add_parser("release"))
    rel.add_argument("id")
    rel.add_argument("--at")
    snd = client(sub.add_parser("send"))
    snd.add_argument("--channel", required=True)
    snd.add_argument("--text", required=True)
    snd.add_argument("--kind", choices=("marketing", "operational"))
    _key_option(snd)
    p.set_defaults(func=cmd_post)


def _key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--idempotency-key", help="repeat an earlier request safely (default: a "
                                             "new key, reused on this command's own retries)")


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
