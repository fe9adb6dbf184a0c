"""Incidents on the real daemon: hand-over, updates, feeds, resolution."""

from __future__ import annotations

import json
from pathlib import Path

from tests.daemon import TOKENS, DaemonProcess, base_config, free_port

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def declare(daemon: DaemonProcess, runbook: str = "security-incident") -> dict:
    return daemon.ok("POST", "/api/v1/incidents", {"runbook": runbook, "title": "Held"},
                     role="ops")


def test_marketing_cannot_send_on_a_channel_under_an_incident(daemon: DaemonProcess) -> None:
    incident = declare(daemon)
    refused = daemon.api("POST", "/api/v1/send", {"channel": "outbox", "text": "Offer!"},
                         role="marketing")
    assert refused.status_code == 409
    assert incident["id"] in refused.json()["error"]["message"]
    cli = daemon.cli("post", "send", "--channel", "outbox", "--text", "Offer!",
                     role="marketing")
    assert cli.returncode == 1 and "409" in cli.stderr
    assert [line for line in daemon.outbox() if line["kind"] == "marketing"] == []


def test_ops_posts_operational_updates_while_marketing_is_held(daemon: DaemonProcess) -> None:
    incident = declare(daemon)
    sent = daemon.ok("POST", "/api/v1/send", {"channel": "outbox", "text": "We are on it"},
                     role="ops")
    assert (sent["kind"], sent["state"]) == ("operational", "published")
    update = daemon.cli("incident", "update", incident["id"], "--text", "Next update 18:00",
                        role="ops")
    assert update.returncode == 0, update.stderr
    texts = [line["text"] for line in daemon.outbox()]
    assert "We are on it" in texts and "Next update 18:00" in texts
    shown = daemon.ok("GET", f"/api/v1/incidents/{incident['id']}")
    events = [e["event"] for e in shown["timeline"]]
    assert events[0] == "declared"
    assert "update_posted" in events and "post_sent" in events
    assert shown["last_operational_at"] is not None


def test_due_marketing_posts_are_suppressed_and_tied_to_the_incident(
        daemon: DaemonProcess) -> None:
    incident = declare(daemon)
    post = daemon.ok("POST", "/api/v1/posts", {"channel": "outbox", "text": "Offer",
                                               "at": "+0.3s"}, role="marketing")
    held = daemon.wait_for(lambda: daemon.ok("GET", f"/api/v1/posts/{post['id']}")
                           if daemon.ok("GET", f"/api/v1/posts/{post['id']}")["state"]
                           == "suppressed" else None)
    assert held["incident_id"] == incident["id"]
    assert daemon.metric("switchboard_posts_suppressed_total", {"channel": "outbox"}) == 1.0
    assert daemon.metric("switchboard_channel_under_incident", {"channel": "outbox"}) == 1.0
    assert daemon.metric("switchboard_incidents_active") == 1.0


def test_incident_list_show_and_resolve_through_the_cli(daemon: DaemonProcess) -> None:
    incident = declare(daemon)
    listed = json.loads(daemon.cli("incident", "list", "--json").stdout)
    assert [i["id"] for i in listed] == [incident["id"]]
    resolved = daemon.cli("incident", "resolve", incident["id"], "--note", "fixed", role="ops")
    assert resolved.returncode == 0, resolved.stderr
    in_cooldown = json.loads(daemon.cli("incident", "list", "--json").stdout)
    assert [(i["id"], i["in_cooldown"]) for i in in_cooldown] == [(incident["id"], True)]
    everything = json.loads(daemon.cli("incident", "list", "--all", "--json").stdout)
    assert everything[0]["state"] == "resolved"
    again = daemon.cli("incident", "resolve", incident["id"], role="ops")
    assert again.returncode == 1 and "already resolved" in again.stderr
    shown = daemon.cli("incident", "show", incident["id"])
    assert "declared" in shown.stdout and "resolved" in shown.stdout


def test_a_calendar_import_schedules_every_row(daemon: DaemonProcess, tmp_path: Path) -> None:
    calendar = tmp_path / "calendar.csv"
    calendar.write_text("channel,at,text\n" + "".join(
        f"outbox,+{i + 1}h,Offer {i}\n" for i in range(30)))
    result = daemon.cli("post", "import", str(calendar), role="marketing")
    assert result.returncode == 0, result.stderr
    assert "imported 30 post(s)" in result.stdout
    posts = json.loads(daemon.cli("post", "list", "--state", "scheduled", "--json").stdout)
    assert len(posts) == 30
    cancelled = daemon.cli("post", "cancel", str(posts[0]["id"]), role="marketing")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout


def feed_daemon(tmp_path: Path) -> DaemonProcess:
    feeds = [{"id": "alertmanager", "kind": "alertmanager", "token_env": "SB_TEST_FEED",
              "rules": [{"match": {"severity": "critical"}, "runbook": "rail-disruption"}]}]
    return DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(), feeds=feeds))


def deliver(daemon: DaemonProcess, body: bytes, token: str | None = TOKENS["feed"],
            feed: str = "alertmanager") -> int:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return daemon.api("POST", f"/feeds/{feed}", role=None, data=body,
                      headers=headers).status_code


def test_an_alertmanager_alert_declares_once_however_often_it_repeats(tmp_path: Path) -> None:
    daemon = feed_daemon(tmp_path).start()
    try:
        payload = json.loads((FIXTURES / "alertmanager-v4-firing.json").read_text())
        for alert in payload["alerts"]:
            alert["labels"]["severity"] = "critical"
        body = json.dumps(payload).encode()
        assert deliver(daemon, body) == 202
        assert deliver(daemon, body) == 202
        incidents = daemon.ok("GET", "/api/v1/incidents")
        assert len(incidents) == len(payload["alerts"])
        assert {i["runbook"] for i in incidents} == {"rail-disruption"}
        assert {i["source"] for i in incidents} == {"alertmanager"}
        assert daemon.metric("switchboard_feed_signals_total",
                             {"feed": "alertmanager", "status": "firing"}) == \
            2.0 * len(payload["alerts"])
    finally:
        daemon.kill()


def test_bad_feed_deliveries_are_refused_counted_and_change_nothing(tmp_path: Path) -> None:
    daemon = feed_daemon(tmp_path).start()
    try:
        good = (FIXTURES / "alertmanager-v4-firing.json").read_bytes()
        assert deliver(daemon, good, token=None) == 401
        assert deliver(daemon, good, token="wrong") == 401
        assert deliver(daemon, good, token=TOKENS["admin"]) == 401
        assert deliver(daemon, good, feed="nope") == 404
        assert deliver(daemon, b'{"version": "4", "alerts": [') == 400
        assert deliver(daemon, b"x" * (1024 * 1024 + 10)) == 413
        bomb = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><l>&b;</l>')
        assert deliver(daemon, bomb) == 400
        assert daemon.ok("GET", "/api/v1/incidents") == []
        assert daemon.metric("switchboard_feed_errors_total",
                             {"feed": "alertmanager", "reason": "unauthorized"}) == 3.0
        assert daemon.metric("switchboard_feed_errors_total",
                             {"feed": "alertmanager", "reason": "malformed"}) == 2.0
        assert daemon.metric("switchboard_feed_errors_total",
                             {"feed": "alertmanager", "reason": "too_large"}) == 1.0
        assert daemon.metric("switchboard_feed_errors_total",
                             {"feed": "unknown", "reason": "unknown_feed"}) == 1.0
        assert daemon.api("GET", "/readyz", role=None).status_code == 200
    finally:
        daemon.kill()
