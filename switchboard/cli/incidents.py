"""`incident`: declare, list, show, update, resolve, void and release incidents."""

from __future__ import annotations

import argparse
import json
from typing import Any

from switchboard.cli.client import Adder, Client, key_option, output, shown_time, table, times_in

# The incident severities (switchboard.config.SEVERITIES, not imported: the client
# stays light and needs no config module at start-up).
SEVERITIES = ("minor", "major", "critical")
INCIDENT_ID = "incident id (INC-<n> or <n>)"


def _incident_rows(rows: list[dict[str, Any]]) -> str:
    return table([(i["id"], "cooldown" if i.get("in_cooldown") else i["state"], i["severity"],
                   i["runbook"], _channels_cell(i["channels"]), shown_time(i["declared_at"]),
                   shown_time(i["cooldown_until"]) if i.get("in_cooldown") else "-", i["title"])
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
        return output(args, data, lambda d: f"{d['id']} declared: {', '.join(d['channels'])} "
                                            f"under {d['runbook']}")
    if args.action == "list":
        # Incidents are few next to posts: every page, newest first.
        params = {"all": "true", "limit": "1000"} if args.all else {"limit": "1000"}
        data = [i for page, _, _ in client.pages("/api/v1/incidents", params, follow=True)
                for i in page]
        return output(args, data, _incident_rows)
    if args.action == "show":
        data = client.call("GET", f"/api/v1/incidents/{args.id}")
        def human(d: dict[str, Any]) -> str:
            lines = [_incident_rows([d]), "", "timeline:"]
            for e in d["timeline"]:
                extra = {k: v for k, v in e.items() if k not in ("at", "event", "actor")}
                lines.append(f"  {shown_time(e['at'])}  {e['event']:<18} {e['actor']:<22} "
                             f"{times_in(json.dumps(extra)) if extra else ''}")
            return "\n".join(lines)
        return output(args, data, human)
    if args.action == "update":
        data = client.call("POST", f"/api/v1/incidents/{args.id}/update", {"text": args.text})
        return output(args, data, lambda d: "\n".join(f"post {p['id']} {p['state']} on "
                                                      f"{p['channel']}" for p in d))
    if args.action == "void":
        data = client.call("POST", f"/api/v1/incidents/{args.id}/void", {"reason": args.reason})
        return output(args, data, _voided)
    if args.action == "release":
        data = client.call("POST", f"/api/v1/incidents/{args.id}/release",
                           {"reason": args.reason})
        return output(args, data, lambda d: f"{d['id']}: cooldown ended; channels back with "
                                            "marketing (held posts: switchboard post list "
                                            "--state held)")
    data = client.call("POST", f"/api/v1/incidents/{args.id}/resolve", {"note": args.note})
    return output(args, data, lambda d: f"{d['id']} resolved; channels return to marketing "
                                        f"after {shown_time(d['cooldown_until'])}")


def add_parsers(p: argparse.ArgumentParser, command: Adder, client: Adder) -> None:
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
    key_option(d)
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
