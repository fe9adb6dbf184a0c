from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from switchboard.feeds import FeedError, parser_for
from tests.feeds.cases import feed_config, fixture, hmac_hex, parse


def test_it_reads_a_triggered_incident() -> None:
    [signal] = parse("pagerduty", fixture("pagerduty-v3-incident-triggered.json"))

    assert signal.key == "QEXAMPLE1"
    assert signal.status == "firing"
    assert signal.title == "up rule triggered on nn "
    assert signal.at == datetime(2025, 1, 24, 7, 10, 5, 538000, tzinfo=UTC)
    assert signal.labels == {"event_type": "incident.triggered", "service": "Test-Service",
                             "service_id": "PEXAMPLE", "urgency": "high",
                             "incident_status": "triggered", "severity": "major",
                             "native_severity": "high"}
    assert signal.annotations == {
        "html_url": "https://example-inc.pagerduty.com/incidents/QEXAMPLE1", "number": "7"}


def test_a_resolved_event_resolves_the_same_key() -> None:
    [triggered] = parse("pagerduty", fixture("pagerduty-v3-incident-triggered.json"))
    [resolved] = parse("pagerduty", fixture("pagerduty-v3-incident-resolved.json"))

    assert resolved.status == "resolved"
    assert resolved.key == triggered.key == "QEXAMPLE1"
    assert resolved.labels["event_type"] == "incident.resolved"


def test_a_priority_update_keeps_firing_with_priority_and_team() -> None:
    [signal] = parse("pagerduty", fixture("pagerduty-v3-incident-priority-updated.json"))

    assert (signal.key, signal.status) == ("PGR0VU2", "firing")
    assert signal.title == "A little bump in the road"
    assert signal.labels["priority"] == "P1"
    assert signal.labels["teams"] == "Engineering"
    assert signal.labels["service"] == "API Service"
    assert signal.labels["event_type"] == "incident.priority_updated"
    assert signal.annotations["incident_key"] == "d3640fbd41094207a1c11e58e46b1662"


@pytest.mark.parametrize("event_type", ["incident.acknowledged", "incident.reopened",
                                        "incident.escalated", "incident.annotated"])
def test_other_incident_events_are_firing(event_type: str) -> None:
    document = json.loads(fixture("pagerduty-v3-incident-triggered.json"))
    document["event"]["event_type"] = event_type
    assert parse("pagerduty", json.dumps(document).encode())[0].status == "firing"


def test_a_late_event_about_a_resolved_incident_does_not_fire_it_again() -> None:
    document = json.loads(fixture("pagerduty-v3-incident-resolved.json"))
    document["event"]["event_type"] = "incident.annotated"
    assert parse("pagerduty", json.dumps(document).encode())[0].status == "resolved"


def test_a_ping_or_a_service_event_is_accepted_and_ignored() -> None:
    ping = {"event": {"id": "01", "event_type": "pagey.ping", "resource_type": "pagey",
                      "occurred_at": "2021-12-08T22:39:07.364Z", "agent": None,
                      "client": None, "data": {"message": "Hello from your friend Pagey!",
                                               "type": "ping"}}}
    service = {"event": {"event_type": "service.updated", "resource_type": "service",
                         "data": {"id": "PSERVICE"}}}
    assert parse("pagerduty", json.dumps(ping).encode()) == []
    assert parse("pagerduty", json.dumps(service).encode()) == []


def test_a_payload_without_an_event_is_refused() -> None:
    with pytest.raises(FeedError, match="event must be an object"):
        parse("pagerduty", b"{}")


@pytest.mark.parametrize("document", [
    {"event": {"resource_type": "incident"}},
    {"event": {"event_type": "incident.triggered", "resource_type": "incident"}},
    {"event": {"event_type": "incident.triggered", "resource_type": "incident", "data": {}}},
    {"event": {"event_type": "incident.responder.added", "resource_type": "incident",
               "data": None}},
])
def test_an_event_it_cannot_read_is_accepted_and_ignored(document: object) -> None:
    # Refusing a correctly signed delivery makes PagerDuty retry it and, in
    # the end, disable the subscription.
    assert parse("pagerduty", json.dumps(document).encode()) == []


BODY = fixture("pagerduty-v3-incident-triggered.json")


def authenticate(signature: str, secret: str | None = "pd-webhook-secret") -> None:
    parser_for(feed_config("pagerduty", secret=secret)).authenticate(
        BODY, {"X-PagerDuty-Signature": signature})


def test_any_one_of_several_signatures_is_enough() -> None:
    authenticate(f"v1={'0' * 64},v1={hmac_hex(BODY)}")
    authenticate(f"v1={hmac_hex(BODY)}, v1={'0' * 64}")
    authenticate(f"v1={hmac_hex(BODY, 'old-secret')},v1={hmac_hex(BODY)}")


def test_upper_case_hex_is_accepted() -> None:
    authenticate(f"v1={hmac_hex(BODY).upper()}")


@pytest.mark.parametrize("signature", [
    "", "v1=", f"v1={'0' * 64}", f"v0={hmac_hex(b'x')}", hmac_hex(BODY),
    f"v2={hmac_hex(BODY)}", f"v1={hmac_hex(BODY)[:-1]}",
])
def test_it_refuses_a_missing_or_wrong_signature(signature: str) -> None:
    with pytest.raises(FeedError) as caught:
        authenticate(signature)
    assert (caught.value.reason, caught.value.http_status) == ("unauthorized", 401)


def test_it_refuses_everything_when_no_secret_is_configured() -> None:
    with pytest.raises(FeedError, match="no secret is configured"):
        authenticate(f"v1={hmac_hex(BODY)}", secret=None)
