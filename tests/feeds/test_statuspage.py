from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from switchboard.feeds import FeedError
from tests.feeds.cases import fixture, parse

INCIDENTS = fixture("statuspage-incidents.json")


def with_incident(**changes: Any) -> bytes:
    document = json.loads(INCIDENTS)
    document["incidents"][0].update(changes)
    return json.dumps(document).encode()


def test_it_reads_a_resolved_incident() -> None:
    [signal] = parse("statuspage", INCIDENTS)

    assert signal.key == "n4njzfn1mqy0"
    assert signal.status == "resolved"
    assert signal.title == "Messaging issues"
    assert signal.labels == {"impact": "minor", "incident_status": "resolved",
                             "components": "API", "page": "Discord", "severity": "minor",
                             "native_severity": "minor"}
    assert signal.annotations == {"shortlink": "https://stspg.io/y1w39cblgvhz",
                                  "latest_update": "This incident has been resolved."}
    assert signal.at == datetime(2022, 2, 15, 13, 37, 37, 404000,
                                 tzinfo=timezone(timedelta(hours=-8)))


def test_nothing_unresolved_gives_no_signals() -> None:
    assert parse("statuspage", fixture("statuspage-incidents-unresolved.json")) == []


@pytest.mark.parametrize(("status", "expected"), [
    ("investigating", "firing"), ("identified", "firing"), ("monitoring", "firing"),
    ("resolved", "resolved"), ("postmortem", "resolved"),
])
def test_the_incident_status_decides(status: str, expected: str) -> None:
    [signal] = parse("statuspage", with_incident(status=status))
    assert (signal.status, signal.labels["incident_status"]) == (expected, status)


def test_components_are_joined() -> None:
    components = [{"name": "API"}, {"name": "Voice"}, {"id": "nameless"}]
    [signal] = parse("statuspage", with_incident(components=components))
    assert signal.labels["components"] == "API,Voice"


@pytest.mark.parametrize(("body", "message"), [
    (b'{"page": {}}', "incidents must be a list, not null"),
    (b'{"incidents": {}}', "incidents must be a list, not an object"),
    (b'{"incidents": ["x"]}', r"incidents\[0\] must be an object"),
    (b'{"incidents": [{"name": "no id"}]}', r"incidents\[0\] needs a non-empty 'id'"),
])
def test_it_refuses_the_whole_payload_when_an_incident_is_bad(body: bytes, message: str) -> None:
    with pytest.raises(FeedError, match=message):
        parse("statuspage", body)
