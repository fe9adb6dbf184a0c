"""The daemon (`run`) and the offline tools on its config (`check`, `simulate`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from switchboard.cli.client import FAILED, OK, USAGE, Exit

if TYPE_CHECKING:
    from switchboard.settings import Settings

DEFAULT_CONFIG = "config/switchboard.yaml"


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
