"""`user` (people, their roles, teams, tokens and passwords) and `audit`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from switchboard.cli.client import USAGE, Adder, Client, Exit, output, shown_time, table

TEAM_ROLE = "TEAM:ROLE (role marketing, approver or viewer)"


def add_user_parsers(p: argparse.ArgumentParser, command: Adder, client: Adder) -> None:
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


def add_audit_parser(p: argparse.ArgumentParser, client: Adder) -> None:
    client(p)
    p.add_argument("--person", metavar="NAME", help="only this person's actions")
    p.add_argument("--team", metavar="ID", help="only actions on this team's channels")
    p.add_argument("--since", metavar="WHEN",
                   help="only actions since then: a duration back (2h, 30m) or a time, RFC "
                        "3339 or local in the configured zone")
    p.set_defaults(func=cmd_audit)


def _user_rows(rows: list[dict[str, Any]]) -> str:
    return table([(u["name"], u["role"], "disabled" if u["disabled"] else "active",
                   " ".join(f"{t}:{r}" for t, roles in u["teams"].items() for r in roles)
                   or "-") for u in rows], ("NAME", "ROLE", "STATE", "TEAMS"))


def cmd_user(args: argparse.Namespace) -> int:
    client = Client(args)
    path = f"/api/v1/users/{getattr(args, 'name', '')}"
    if args.action == "add":
        data = client.call("POST", "/api/v1/users", {"name": args.name, "role": args.role,
                                                     "teams": args.team})
        return output(args, data, lambda u: f"added {u['name']} ({u['role']})")
    if args.action == "list":
        return output(args, client.call("GET", "/api/v1/users"), _user_rows)
    if args.action in ("disable", "enable"):
        data = client.call("PATCH", path, {"disabled": args.action == "disable"})
        return output(args, data, lambda u: f"{u['name']} {args.action}d")
    if args.action == "token":
        if args.revoke:
            data = client.call("PATCH", path, {"revoke_tokens": True})
            return output(args, data, lambda u: f"revoked every token of {u['name']}")
        data = client.call("POST", path + "/tokens")
        return output(args, data, lambda d: f"{d['token']}\n(shown once: store it now)")
    password = _new_password(args.generate)
    data = client.call("PATCH", path, {"password": password})
    return output(args, data if not args.generate else {**data, "password": password},
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
    return output(args, data, lambda rows: table(
        [(shown_time(e["at"]), e["person"] or "-", e["credential"], e["action"], e["target"] or "-",
          ",".join(e["teams"]) or "-") for e in rows],
        ("AT", "PERSON", "CREDENTIAL", "ACTION", "TARGET", "TEAMS")))
