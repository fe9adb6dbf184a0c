"""`switchboard`: the daemon (`run`), offline tools (`check`, `simulate`) and a
thin client of the daemon's HTTP API for everything else.

Exit codes: 0 ok, 1 refused or failed (message on stderr), 2 usage error,
3 daemon unreachable.

The commands live by what they act on: daemon.py (run, check, simulate),
status.py, incidents.py, posts.py (with calendar.py and review.py) and
people.py (user, audit); client.py holds what the client commands share.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from switchboard import __version__
from switchboard.cli import daemon, incidents, people, posts, status
from switchboard.cli.client import DEFAULT_URL, FAILED, USAGE, Exit, print_error
from switchboard.cli.daemon import DEFAULT_CONFIG

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


class _Parser(argparse.ArgumentParser):
    """Usage errors as JSON on stdout when the command line asked for --json."""

    def error(self, message: str) -> NoReturn:
        if "--json" in sys.argv[1:]:
            print_error("usage", f"{self.prog}: {message}")
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
    p.set_defaults(func=daemon.cmd_run)
    p = command(sub, "check", "validate config, runbooks and templates offline",
                "Validate the config file, every runbook and every template offline. Prints "
                "each problem as FILE:LINE:COL: key: message, sorted by file and line, and "
                "exits 1 if there is any.")
    config_option(p)
    p.set_defaults(func=daemon.cmd_check)
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
    p.set_defaults(func=daemon.cmd_simulate)
    client(command(sub, "status", "show the daemon's state: incidents, channels under control, "
                                  "posts by state, a failed last reload")
           ).set_defaults(func=status.cmd_status)
    client(command(sub, "feeds", "list each feed's last success, last error, staleness and "
                                 "signals counted")).set_defaults(func=status.cmd_feeds)
    client(command(sub, "channels", "list channels, who controls them and their last errors")
           ).set_defaults(func=status.cmd_channels)
    incidents.add_parsers(command(sub, "incident", "declare, list, show, update, resolve, "
                                                   "void and release incidents"), command, client)
    posts.add_parsers(command(sub, "post", "schedule, import, list, send and review posts"),
                      command, client)
    people.add_user_parsers(command(sub, "user", "add, list and disable people; issue their "
                                                 "tokens and passwords (admin)"), command, client)
    people.add_audit_parser(command(sub, "audit", "show who did what, when, with which credential",
                                    "Show the audit of writes: who (person, or none for a "
                                    "machine token), with which credential, what and when. "
                                    "Admins see everything; a team's approvers see their "
                                    "team's."), client)
    return top


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
        try:
            _check_text_args(args)
            code = args.func(args)
        except Exit as exc:
            if getattr(args, "json", False):
                print_error(exc.error, exc.message)
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
