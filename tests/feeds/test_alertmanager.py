from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from switchboard.feeds import FeedError
from tests.feeds.cases import fixture, parse


def payload(**changes: Any) -> bytes:
    document = json.loads(fixture("alertmanager-v4-firing.json"))
    document.update(changes)
    return json.dumps(document).encode()


def test_it_reads_a_firing_alert() -> None:
    [signal] = parse("alertmanager", fixture("alertmanager-v4-firing.json"))

    assert signal.source == "alertmanager-feed"
    assert signal.key == "1a30ba71cca2921f"
    assert signal.status == "firing"
    assert signal.title == "BlackBox Probe Failure: https://server.example.org"
    assert signal.at == datetime(2023, 2, 6, 13, 8, 45, 828000, tzinfo=UTC)
    assert signal.labels == {"alertname": "ProbeFailure", "instance": "https://server.example.org",
                             "job": "http_checks", "monitor": "master", "severity": "critical",
                             "native_severity": "critical"}
    assert signal.annotations["description"] == (
        "Instance https://server.example.org has been down for over 5m. Job: http_checks")
    # kept as published: a backslash then u0026, not "&"
    assert signal.annotations["generator_url"].endswith("probe_success+%3D%3D+0\\u0026g0.tab=1")


def test_it_reads_each_resolved_alert_with_its_own_labels() -> None:
    signals = parse("alertmanager", fixture("alertmanager-v4-resolved.json"))

    assert [s.status for s in signals] == ["resolved", "resolved"]
    assert [s.key for s in signals] == ["83eb2c81e0da3faf", "83eb2c81e0da3faf"]
    assert [s.labels["host"] for s in signals] == ["10.30.1.161", "10.30.1.164"]
    assert signals[1].labels["severity"] == "minor"
    assert signals[1].labels["native_severity"] == "warning"
    assert signals[0].title == "CPUHigh"  # no summary or title annotation: the alertname
    assert signals[0].at == datetime(2021, 3, 30, 21, 17, 50, 814674,
                                     tzinfo=timezone(timedelta(hours=8)))  # endsAt


def test_an_alert_status_wins_over_the_group_status() -> None:
    document = json.loads(fixture("alertmanager-v4-firing.json"))
    document["alerts"][0]["status"] = "resolved"
    document["alerts"][0]["endsAt"] = "2023-02-06T14:00:00Z"

    [signal] = parse("alertmanager", json.dumps(document).encode())

    assert signal.status == "resolved"
    assert signal.at == datetime(2023, 2, 6, 14, 0, tzinfo=UTC)


def test_alert_labels_are_merged_over_common_labels() -> None:
    document = json.loads(fixture("alertmanager-v4-firing.json"))
    document["commonLabels"]["service"] = "rail"
    document["alerts"][0]["labels"]["severity"] = "page"

    [signal] = parse("alertmanager", json.dumps(document).encode())

    assert signal.labels["service"] == "rail"
    assert (signal.labels["severity"], signal.labels["native_severity"]) == ("critical", "page")


def test_without_a_fingerprint_the_key_is_a_stable_hash_of_the_labels() -> None:
    document = json.loads(fixture("alertmanager-v4-firing.json"))
    del document["alerts"][0]["fingerprint"]
    first = parse("alertmanager", json.dumps(document).encode())[0].key
    document["alerts"][0]["labels"] = dict(reversed(document["alerts"][0]["labels"].items()))
    again = parse("alertmanager", json.dumps(document).encode())[0].key
    document["alerts"][0]["labels"]["instance"] = "https://other.example.org"
    other = parse("alertmanager", json.dumps(document).encode())[0].key

    assert first == again != other
    assert len(first) == 16


def test_the_title_prefers_summary_then_title_then_alertname() -> None:
    document = json.loads(fixture("alertmanager-v4-firing.json"))
    document["commonAnnotations"] = {}
    document["alerts"][0]["annotations"] = {"title": "Probe down"}
    assert parse("alertmanager", json.dumps(document).encode())[0].title == "Probe down"


@pytest.mark.parametrize("version", ["3", 4, None])
def test_it_refuses_other_payload_versions(version: Any) -> None:
    with pytest.raises(FeedError, match='version must be "4"') as caught:
        parse("alertmanager", payload(version=version))
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(("change", "message"), [
    ({"alerts": None}, "alerts must be a list"),
    ({"alerts": [[]]}, r"alerts\[0\] must be an object"),
    ({"alerts": [{"status": "pending"}]}, r'alerts\[0\].status must be "firing" or "resolved"'),
    ({"commonLabels": ["severity"]}, "commonLabels must be an object"),
])
def test_it_names_the_field_that_is_wrong(change: dict[str, Any], message: str) -> None:
    with pytest.raises(FeedError, match=message):
        parse("alertmanager", payload(**change))


def test_a_group_with_no_alerts_gives_no_signals() -> None:
    assert parse("alertmanager", payload(alerts=[])) == []
