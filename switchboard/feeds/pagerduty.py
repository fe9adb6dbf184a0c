"""PagerDuty v3 webhook subscriptions: incident events, one signal per delivery.

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
    field,
    load_json,
    loose_list,
    loose_object,
    parse_time,
    scalar_text,
)
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
        envelope = as_object(KIND, load_json(KIND, body), "the payload")
        event = as_object(KIND, envelope.get("event"), "event")
        event_type = field(KIND, event, "event_type", "event")
        # Only incidents make signals; pagey.ping (sent when a subscription is
        # created) and service events are accepted and ignored.
        if event.get("resource_type") != "incident" or not event_type.startswith("incident."):
            return []
        data = as_object(KIND, event.get("data"), "event.data")
        key = field(KIND, data, "id", "event.data")
        labels = {"event_type": event_type, **_incident_labels(data)}
        notes = {name: text for name, text in (
            ("html_url", scalar_text(data.get("html_url"))),
            ("incident_key", scalar_text(data.get("incident_key"))),
            ("number", scalar_text(data.get("number"))),
        ) if text}
        return [Signal(source=self.config.id, key=key, status=_status(event_type, data),
                       title=scalar_text(data.get("title")) or key,
                       at=parse_time(event.get("occurred_at")) or current_time(now),
                       labels=labels, annotations=notes)]


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
