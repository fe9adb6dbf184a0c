"""Incidents as people and programs read them: JSON, ids, notices, signal keys."""

from __future__ import annotations

from typing import Any

from switchboard import refusals
from switchboard.clock import rfc3339
from switchboard.feeds.signal import Signal
from switchboard.model import Incident
from switchboard.text import decimal

REVIEW_COMMAND = "switchboard post list --state held"


def review_notice(incident: Incident, held: int) -> str:
    posts = "post is" if held == 1 else "posts are"
    return (f"INC-{incident.id} ({incident.title}): channels back with marketing; {held} held "
            f"{posts} waiting for review: {REVIEW_COMMAND}")


def void_notice(incident: Incident, actor: str, reason: str, retracted: list[int],
                rescheduled: int, held: int) -> str:
    text = (f"INC-{incident.id} ({incident.title}) voided by {actor}: {reason}. Channels back "
            f"with marketing; {len(retracted)} holding statement(s)/update(s) retracted, "
            f"{rescheduled} post(s) back on the schedule")
    if held:
        text += f", {held} waiting for review: {REVIEW_COMMAND}"
    return text + "."


def parse_incident_id(value: str) -> int:
    text = value.strip().upper()
    number = text[4:] if text.startswith("INC-") else text
    parsed = decimal(number)
    if parsed is None:
        raise refusals.bad_request(f"bad incident id {value[:40]!r} (expected INC-<n>)")
    return parsed


def signal_key(signal: Signal) -> str:
    return f"{signal.source}:{signal.key}"


def group_key(signal: Signal) -> str:
    """The key an incident declared for a whole Alertmanager group is kept under."""
    return f"{signal.source}:group:{signal.group}"


def signal_json(signal: Signal) -> dict[str, Any]:
    return {"source": signal.source, "key": signal.key, "status": signal.status,
            "title": signal.title, "at": signal.at.isoformat(), "labels": signal.labels,
            "annotations": signal.annotations}


def incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "id": f"INC-{incident.id}",
        "title": incident.title,
        "runbook": incident.runbook,
        "severity": incident.severity,
        "state": incident.state,
        "channels": incident.channels,
        "suppress": incident.suppress,
        "reason": incident.reason,
        "source": incident.source,
        "signal_key": incident.signal_key,
        "declared_at": rfc3339(incident.declared_at),
        "declared_by": incident.declared_by,
        "resolved_at": rfc3339(incident.resolved_at),
        "resolved_by": incident.resolved_by,
        "resolve_note": incident.resolve_note,
        "cooldown_until": rfc3339(incident.cooldown_until),
        "in_cooldown": incident.state == "resolved" and not incident.held_done,
        "last_operational_at": rfc3339(incident.last_operational_at),
    }
