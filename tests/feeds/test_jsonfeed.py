from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from switchboard.feeds import FeedError, parser_for
from tests.feeds.cases import NWS_NOW, TOKEN, feed_config, fixture, hmac_hex, parse

INCIDENT = {"incident": {"id": 4711, "state": "OPEN", "name": "Tunnel fire near Calais",
                         "service": {"name": "rail", "region": "south"}, "severity": "major",
                         "updated": "2024-05-01T12:00:00+01:00",
                         "notes": {"runbook": "https://wiki.example.org/tunnel"}}}
FIELDS: dict[str, Any] = {
    "key": "incident.id", "status": "incident.state", "title": "incident.name",
    "resolved_values": ["closed", "Resolved"], "time": "incident.updated",
    "labels": {"service": "incident.service.name", "severity": "incident.severity"},
    "annotations": "incident.notes",
}


def delivery(**changes: Any) -> bytes:
    return json.dumps({"incident": {**INCIDENT["incident"], **changes}}).encode()


def test_it_maps_a_real_alertmanager_payload_by_config() -> None:
    signals = parse("json", fixture("alertmanager-v4-resolved.json"))

    assert [(s.key, s.status) for s in signals] == [("83eb2c81e0da3faf", "resolved")] * 2
    assert signals[0].title == "83eb2c81e0da3faf"  # no summary annotation: the key
    assert signals[1].labels["host"] == "10.30.1.164"
    assert signals[0].at == NWS_NOW  # no time mapped


def test_it_maps_one_object_with_named_labels() -> None:
    [signal] = parse("json", delivery(), fields=FIELDS)

    assert signal.key == "4711"
    assert signal.status == "firing"
    assert signal.title == "Tunnel fire near Calais"
    assert signal.labels == {"service": "rail", "severity": "major",
                             "native_severity": "major"}
    assert signal.annotations == {"runbook": "https://wiki.example.org/tunnel"}
    assert signal.at == datetime(2024, 5, 1, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(("state", "status"), [
    ("closed", "resolved"), ("RESOLVED", "resolved"), (" Closed ", "resolved"),
    ("OPEN", "firing"), (None, "firing"), ("closing", "firing"),
])
def test_resolved_values_decide_the_status(state: str | None, status: str) -> None:
    assert parse("json", delivery(state=state), fields=FIELDS)[0].status == status


def test_without_a_status_path_everything_fires() -> None:
    fields = {"key": "incident.id"}
    [signal] = parse("json", delivery(state="closed"), fields=fields)
    assert (signal.status, signal.title, signal.labels) == ("firing", "4711", {})


def test_list_elements_are_addressed_by_number() -> None:
    body = json.dumps({"events": [{"ref": ["a", "b"]}]}).encode()
    [signal] = parse("json", body, fields={"items": "events", "key": "ref.1"})
    assert signal.key == "b"


@pytest.mark.parametrize(("body", "message"), [
    (b'{"incident": {"state": "OPEN"}}', "has no value at 'incident.id'"),
    (b'{"incident": {"id": {"nested": 1}}}', "has no value at 'incident.id'"),
    (b'[{"incident": {"id": 1}}]', "the payload must be an object"),
])
def test_it_refuses_a_delivery_without_a_usable_key(body: bytes, message: str) -> None:
    with pytest.raises(FeedError, match=message):
        parse("json", body, fields=FIELDS)


def test_labels_from_a_path_must_point_at_an_object() -> None:
    with pytest.raises(FeedError, match=r"'incident\.name' must be an object"):
        parse("json", delivery(), fields={"key": "incident.id", "labels": "incident.name"})


@pytest.mark.parametrize(("fields", "message"), [
    ({}, "missing required key 'key'"),
    ({"key": "id", "colour": "x"}, "unknown key 'colour'"),
    ({"key": ""}, "fields.key: must be a dotted path"),
    ({"key": "a..b"}, "fields.key: must be a dotted path"),
    ({"key": 7}, "fields.key: must be a dotted path"),
    ({"key": "id", "resolved_values": "closed"}, "resolved_values: must be a list"),
    ({"key": "id", "labels": ["a"]}, "fields.labels: must be a path or a mapping"),
    ({"key": "id", "labels": {"svc": 3}}, "fields.labels.svc: must be a dotted path"),
])
def test_a_bad_mapping_is_a_config_error(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parser_for(feed_config("json", fields=fields))


BODY = delivery()
TOKEN_SHA = hashlib.sha256(TOKEN.encode()).hexdigest()


def authenticate(headers: dict[str, str], **config: Any) -> None:
    settings: dict[str, Any] = {"secret": None, "fields": FIELDS, **config}
    parser_for(feed_config("json", **settings)).authenticate(BODY, headers)


def refused(headers: dict[str, str], **config: Any) -> str:
    with pytest.raises(FeedError) as caught:
        authenticate(headers, **config)
    assert (caught.value.reason, caught.value.http_status) == ("unauthorized", 401)
    return caught.value.message


def test_a_bearer_token_alone_authenticates() -> None:
    authenticate({"Authorization": f"Bearer {TOKEN}"}, token_sha256=TOKEN_SHA)
    authenticate({"authorization": f"bearer {TOKEN}"}, token_sha256=TOKEN_SHA)
    assert "wrong bearer token" in refused({"Authorization": "Bearer nope"},
                                           token_sha256=TOKEN_SHA)
    assert "missing bearer" in refused({"Authorization": f"Basic {TOKEN}"},
                                       token_sha256=TOKEN_SHA)


def test_a_signature_is_read_with_or_without_its_prefix() -> None:
    authenticate({"X-Signature": hmac_hex(BODY)}, secret="pd-webhook-secret")
    authenticate({"X-Signature": "sha256=" + hmac_hex(BODY)}, secret="pd-webhook-secret")
    assert "does not match" in refused({"X-Signature": "sha256=" + hmac_hex(b"{}")},
                                       secret="pd-webhook-secret")


def test_the_signature_header_is_configurable() -> None:
    headers = {"X-Hub-Signature-256": "sha256=" + hmac_hex(BODY)}
    authenticate(headers, secret="pd-webhook-secret", signature_header="X-Hub-Signature-256")
    assert "missing X-Signature" in refused(headers, secret="pd-webhook-secret")


def test_with_both_configured_both_must_pass() -> None:
    both = {"token_sha256": TOKEN_SHA, "secret": "pd-webhook-secret"}
    good = {"Authorization": f"Bearer {TOKEN}", "X-Signature": hmac_hex(BODY)}
    authenticate(good, **both)
    refused({"Authorization": f"Bearer {TOKEN}"}, **both)
    refused({"X-Signature": hmac_hex(BODY)}, **both)


def test_with_nothing_configured_nothing_is_accepted() -> None:
    assert "no token or secret" in refused({"Authorization": f"Bearer {TOKEN}"})
