"""`status`, `feeds`, `channels`: what the daemon, its feeds and its channels are doing."""

from __future__ import annotations

import argparse
from typing import Any

from switchboard.cli.client import Client, output, shown_time, table


def cmd_status(args: argparse.Namespace) -> int:
    data = Client(args).call("GET", "/api/v1/status")
    def human(d: dict[str, Any]) -> str:
        posts = ", ".join(f"{k} {v}" for k, v in sorted(d["posts"].items())) or "none"
        role = f", {d['role']}, epoch {d['epoch']}" if "role" in d else ""
        return (f"switchboard {d['version']} ({'ready' if d['ready'] else 'not ready'}{role})\n"
                f"incidents active: {', '.join(d['incidents_active']) or 'none'}\n"
                f"channels under incident: {', '.join(d['channels_under_incident']) or 'none'}"
                f"\nposts: {posts}\nnext due: {shown_time(d['next_due'])}"
                f"{_reload_line(d.get('last_reload'))}")
    return output(args, data, human)


def _reload_line(reload: dict[str, Any] | None) -> str:
    """A failed last reload, with its first problems; nothing while reloads succeed."""
    if not reload or reload.get("ok"):
        return ""
    count = reload.get("problem_count", len(reload["problems"]))
    lines = [f"\nlast reload FAILED at {shown_time(reload['at'])} ({count} problem(s); the "
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
        return table([(f["id"], f["kind"], f["mode"], shown_time(f["last_success"]),
                       _staleness(f["staleness_seconds"]), f["signals"],
                       _feed_error(f["last_error"])) for f in rows],
                     ("FEED", "KIND", "MODE", "LAST SUCCESS", "STALE", "SIGNALS",
                      "LAST ERROR"))
    return output(args, data, human)


def _feed_error(error: dict[str, Any] | None) -> str:
    if error is None:
        return "-"
    return f"{shown_time(error['at'])} {error['reason']}: {error['message']}"


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
        return table([(c["id"], c["kind"], c["audience"], c["control"],
                       ",".join(c["under_incident"]) or "-",
                       (c["last_error"] or {}).get("message", "-")) for c in rows],
                     ("CHANNEL", "KIND", "AUDIENCE", "CONTROL", "INCIDENT", "LAST ERROR"))
    return output(args, data, human)
