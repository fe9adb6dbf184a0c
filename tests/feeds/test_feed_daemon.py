"""Feed replays and groups on the real daemon: what reaches the public channel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.daemon import TOKENS, DaemonProcess, base_config, free_port
from tests.feeds.cases import fixture, hmac_hex

PD_SECRET = "pd-webhook-secret"


def feed_daemon(tmp_path: Path) -> DaemonProcess:
    feeds = [{"id": "alertmanager", "kind": "alertmanager", "token_env": "SB_TEST_FEED",
              "rules": [{"match": {"severity": "critical"}, "runbook": "rail-disruption"}]},
             {"id": "pagerduty", "kind": "pagerduty", "secret_env": "SB_TEST_PD",
              "rules": [{"runbook": "rail-disruption"}]}]
    return DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(), feeds=feeds),
                         env={"SB_TEST_PD": PD_SECRET})


def holding_statements(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """The rail runbook's first public post ("We know services are disrupted: ...")."""
    return [line for line in daemon.outbox() if line["kind"] == "operational"
            and line["text"].startswith("We know services are disrupted")]


def test_one_group_of_30_alerts_posts_one_holding_statement(tmp_path: Path) -> None:
    document = json.loads(fixture("alertmanager-v4-firing.json"))
    alert = document["alerts"][0]
    document["alerts"] = [{**alert, "fingerprint": f"{i:016x}",
                           "labels": {**alert["labels"], "instance": f"https://s{i}.example"}}
                          for i in range(30)]
    body = json.dumps(document).encode()
    daemon = feed_daemon(tmp_path).start()
    try:
        answer = daemon.api("POST", "/feeds/alertmanager", role=None, data=body,
                            headers={"Authorization": f"Bearer {TOKENS['feed']}"})
        assert answer.status_code == 202
        assert answer.json()["outcomes"].count("declared") == 1
        daemon.wait_for(lambda: holding_statements(daemon))
        assert len(daemon.ok("GET", "/api/v1/incidents")) == 1
        assert len(holding_statements(daemon)) == 1
    finally:
        daemon.kill()


def deliver_pd(daemon: DaemonProcess, body: bytes) -> Any:
    answer = daemon.api("POST", "/feeds/pagerduty", role=None, data=body,
                        headers={"X-PagerDuty-Signature": f"v1={hmac_hex(body, PD_SECRET)}",
                                 "Content-Type": "application/json"})
    assert answer.status_code == 202, answer.text
    return answer.json()["outcomes"]


def test_a_replayed_pagerduty_trigger_after_resolution_posts_nothing(tmp_path: Path) -> None:
    body = fixture("pagerduty-v3-incident-triggered.json")
    daemon = feed_daemon(tmp_path).start()
    try:
        assert deliver_pd(daemon, body) == ["declared"]
        [incident] = daemon.ok("GET", "/api/v1/incidents")
        daemon.wait_for(lambda: holding_statements(daemon))
        daemon.ok("POST", f"/api/v1/incidents/{incident['id']}/resolve", {})
        daemon.stop()
        daemon.start()  # the event ids are in the store, not in memory

        assert deliver_pd(daemon, body) == ["replayed"]
        # The resolved incident is listed in its cooldown; nothing new is active.
        listed = daemon.ok("GET", "/api/v1/incidents")
        assert [(i["id"], i["state"]) for i in listed] == [(incident["id"], "resolved")]
        assert len(holding_statements(daemon)) == 1
    finally:
        daemon.kill()
