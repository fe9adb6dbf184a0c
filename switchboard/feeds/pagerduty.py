"""PagerDuty v3 webhook subscriptions: incident events, one signal per delivery.

Only events whose `data.type` is `incident` carry the incident itself
(triggered, acknowledged, priority_updated, resolved...). Notes, responders,
status updates, tasks, role assignments and workflows carry a reference to
one in `data.incident`: they become a timeline-only signal for that
incident and never declare. Urgency and priority are labels, and the
priority (else the urgency) is the normalised `severity`.

https://developer.pagerduty.com/docs/webhooks/v3-overview/
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from switchboard.feeds.auth import header, signature_matches, unauthorized
from switchboard.feeds.parser import FeedParser, current_time
from switchboard.feeds.payload import (
    as_object,
    load_json,
    loose_list,
    loose_object,
    parse_time,
    scalar_text,
)
from switchboard.feeds.severity import normalise, with_severity
from switchboard.feeds.signal import Signal, Status

KIND = "pagerduty"
SIGNATURE_HEADER = "X-PagerDuty-Signature"


class PagerDutyParser(FeedParser):
    kind = KIND
    push = True

    def authenticate(self, body: bytes, headers: Mapping[str, str]) -> None:
        """`X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`; several appear while a
        secret is being rotated, and any one matching is enough."""
        if not self.config.secret:
            raise unauthorized(self.config.id, "no secret is configured, so no delivery "
                                               "is accepted")
        given = header(headers, SIGNATURE_HEADER)
        if not given:
            raise unauthorized(self.config.id, f"missing {SIGNATURE_HEADER} header")
        candidates = [part.strip()[3:] for part in given.split(",")
                      if part.strip().startswith("v1=")]
        if not signature_matches(self.config.secret, body, candidates):
            raise unauthorized(self.config.id, f"{SIGNATURE_HEADER} does not match the body")

    def parse(self, body: bytes, headers: Mapping[str, str],
              now: datetime | None = None) -> list[Signal]:
        document = as_object(KIND, load_json(KIND, body), "the payload")
        # PagerDuty wraps the event in {"event": ...}; its documentation shows
        # the bare event. Either is read.
        event = document.get("event", document if "event_type" in document else None)
        event = as_object(KIND, event, "event")
        # From here on nothing refuses a delivery: a correctly signed one that
        # is refused is retried and, after enough refusals, the subscription
        # is disabled. What cannot be read is accepted and ignored.
        event_type = scalar_text(event.get("event_type")) or ""
        if event.get("resource_type") != "incident" or not event_type.startswith("incident."):
            return []  # pagey.ping, service.* events
        data = loose_object(event.get("data"))
        at = parse_time(event.get("occurred_at")) or current_time(now)
        event_id = scalar_text(event.get("id"))
        if data.get("type", "incident") == "incident" and scalar_text(data.get("id")):
            return [self._incident(event_type, data, at, event_id)]
        reference = _incident_reference(data)
        key = scalar_text(reference.get("id"))
        if not key:
            return []
        return [Signal(source=self.config.id, key=key, status="firing",
                       title=scalar_text(reference.get("summary")) or f"PagerDuty incident {key}",
                       at=at, labels={"event_type": event_type},
                       annotations=_news(event_type, data, event), event_id=event_id,
                       timeline_only=True)]

    def _incident(self, event_type: str, data: dict[str, Any], at: datetime,
                  event_id: str | None) -> Signal:
        key = scalar_text(data.get("id")) or ""
        labels = {"event_type": event_type, **_incident_labels(data)}
        notes = {name: text for name, text in (
            ("html_url", scalar_text(data.get("html_url"))),
            ("incident_key", scalar_text(data.get("incident_key"))),
            ("number", scalar_text(data.get("number"))),
        ) if text}
        return Signal(source=self.config.id, key=key, status=_status(event_type, data),
                      title=scalar_text(data.get("title")) or _untitled(key, data), at=at,
                      labels=with_severity(KIND, labels, _severity_word(labels)),
                      annotations=notes, event_id=event_id)


def _severity_word(labels: dict[str, str]) -> str | None:
    """Priority where the account uses the standard P1..P5, else urgency."""
    priority = labels.get("priority")
    if priority and normalise(KIND, priority):
        return priority
    return labels.get("urgency")


def _untitled(key: str, data: dict[str, Any]) -> str:
    number = scalar_text(data.get("number"))
    service = scalar_text(loose_object(data.get("service")).get("summary"))
    name = f"PagerDuty incident #{number}" if number else f"PagerDuty incident {key}"
    return f"{name} on {service}" if service else name


def _incident_reference(data: dict[str, Any]) -> dict[str, Any]:
    """The incident a note, responder, task or workflow event is about.

    Role assignments carry it one level down, inside each assignment.
    """
    reference = loose_object(data.get("incident"))
    if reference:
        return reference
    for assignment in loose_list(data.get("incident_role_assignments")):
        reference = loose_object(loose_object(assignment).get("incident"))
        if reference:
            return reference
    return {}


def _news(event_type: str, data: dict[str, Any], event: dict[str, Any]) -> dict[str, str]:
    """What the timeline entry says: the note, message or workflow, and who did it."""
    what = (scalar_text(data.get("content")) or scalar_text(data.get("message"))
            or scalar_text(data.get("summary")) or scalar_text(data.get("name"))
            or event_type)
    notes = {"event": event_type, "text": what}
    agent = scalar_text(loose_object(event.get("agent")).get("summary"))
    if agent:
        notes["agent"] = agent
    return notes

def _status(event_type: str, data: dict[str, Any]) -> Status:
    # A late event about an incident already resolved (an annotation, say)
    # must not fire it again, so the incident's own status counts too.
    if event_type == "incident.resolved" or data.get("status") == "resolved":
        return "resolved"
    return "firing"


def _incident_labels(data: dict[str, Any]) -> dict[str, str]:
    service = loose_object(data.get("service"))
    teams = loose_list(data.get("teams"))
    pairs = {
        "service": scalar_text(service.get("summary")),
        "service_id": scalar_text(service.get("id")),
        "urgency": scalar_text(data.get("urgency")),
        "priority": scalar_text(loose_object(data.get("priority")).get("summary")),
        "incident_status": scalar_text(data.get("status")),
        "teams": ",".join(t for team in teams
                          if (t := scalar_text(loose_object(team).get("summary")))),
    }
    return {name: value for name, value in pairs.items() if value}
