"""A real Alertmanager delivers to the real daemon's Alertmanager feed.

The route and receiver are the ones docs/operations.md recommends (webhook,
bearer token from `credentials_file`, `send_resolved: true`), with timings cut
to a second. An alert pushed into Alertmanager's API must declare an incident
with the matching rule's runbook; its resolution must follow the runbook:
`resolve.auto: true` resolves after the quiet period and not before,
`resolve.auto: false` keeps the incident and tells the hand-over channel.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import require_tool
from tests.daemon import TOKENS, DaemonProcess, base_config, free_port, terminate

FEED = "alertmanager"
QUIET = 2.0  # seconds, the auto-resolving runbook's quiet_period
ALERT_LABELS = {"alertname": "RailSignalFailure", "severity": "critical", "service": "rail"}

RUNBOOKS = {
    # resolves itself once the source has been quiet for 2 s
    "rail-auto": f"""\
name: rail-auto
title: Rail disruption (resolves itself)
severity: major
handover:
  notify: [ops-chat]
resolve:
  auto: true
  quiet_period: {QUIET:g}s
""",
    # a quiet period that would have passed long before the test looks: only
    # `auto: false` keeps the incident open
    "rail-manual": """\
name: rail-manual
title: Rail disruption (resolved by ops)
severity: major
handover:
  notify: [ops-chat]
resolve:
  auto: false
  quiet_period: 1s
""",
}


class Alertmanager:
    """`prometheus-alertmanager` on a free loopback port, clustering off."""

    def __init__(self, binary: str, tmp: Path, webhook_url: str, token: str,
                 repeat_interval: str = "1h") -> None:
        self.binary, self.tmp = binary, tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "alertmanager.log"
        self.config_path = tmp / "alertmanager.yml"
        self.token_file = tmp / "switchboard-feed.token"
        # with a trailing newline, as `echo` writes it: Alertmanager trims it
        self.token_file.write_text(token + "\n")
        self.config_path.write_text(yaml.safe_dump({
            "route": {"receiver": "switchboard", "group_by": ["alertname", "service"],
                      "group_wait": "1s", "group_interval": "1s",
                      "repeat_interval": repeat_interval},
            "receivers": [{"name": "switchboard", "webhook_configs": [{
                "url": webhook_url, "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer",
                                                  "credentials_file": str(self.token_file)}},
            }]}],
        }, sort_keys=False))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config_path}",
                 f"--storage.path={self.tmp / 'alertmanager-data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--cluster.listen-address=", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited with {self.proc.returncode}:\n"
                                     f"{self.log()}")
            try:
                if requests.get(self.url + "/-/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"alertmanager not ready in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        terminate(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def push(self, labels: dict[str, str], starts_at: datetime, ends_at: datetime) -> None:
        """What Prometheus does: POST the alert to the v2 API."""
        alert = {"labels": labels, "startsAt": _iso(starts_at), "endsAt": _iso(ends_at),
                 "annotations": {"summary": "Signal failure at Clapham Junction",
                                 "description": "All lines through Clapham are stopped"}}
        response = requests.post(self.url + "/api/v2/alerts", json=[alert], timeout=10)
        assert response.status_code == 200, (response.status_code, response.text)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class Pipeline:
    daemon: DaemonProcess
    alertmanager: Alertmanager

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not within {timeout}s\n--- switchboard:\n"
                    f"{self.daemon.log()[-3000:]}\n--- alertmanager:\n"
                    f"{self.alertmanager.log()[-3000:]}")
            time.sleep(0.05)

    def incidents(self) -> list[dict[str, Any]]:
        return list(self.daemon.ok("GET", "/api/v1/incidents?all=true", role="viewer"))

    def incident(self, incident_id: str) -> dict[str, Any]:
        return dict(self.daemon.ok("GET", f"/api/v1/incidents/{incident_id}", role="viewer"))

    def timeline_event(self, incident_id: str, event: str) -> dict[str, Any] | None:
        return next((e for e in self.incident(incident_id)["timeline"] if e["event"] == event),
                    None)

    def fire_and_declare(self) -> tuple[dict[str, Any], datetime]:
        """Push a firing alert; the incident it declares, and when it started."""
        started = datetime.now(UTC)
        self.alertmanager.push(ALERT_LABELS, started, started + timedelta(hours=1))
        [incident] = self.wait(self.incidents, 20, "an incident declared from the alert")
        return incident, started


def pipeline(tmp_path: Path, runbook: str, token: str = TOKENS["feed"],
             repeat_interval: str = "1h") -> Iterator[Pipeline]:
    binary = require_tool("prometheus-alertmanager")
    feed = {"id": FEED, "kind": "alertmanager", "token_env": "SB_TEST_FEED",
            "rules": [{"match": {"severity": "critical", "service": "rail"},
                       "runbook": runbook, "channels": ["outbox"]}]}
    port = free_port()
    daemon = DaemonProcess(tmp_path, config=base_config(tmp_path, port, feeds=[feed]),
                           runbooks=RUNBOOKS)
    alertmanager = Alertmanager(binary, tmp_path, f"{daemon.url}/feeds/{FEED}", token,
                                repeat_interval)
    try:
        daemon.start()
        alertmanager.start()
        yield Pipeline(daemon, alertmanager)
    finally:
        alertmanager.stop()
        daemon.kill()


@pytest.fixture
def repeating(tmp_path: Path) -> Iterator[Pipeline]:
    # Alertmanager sends the still-firing alert again every 2 s
    yield from pipeline(tmp_path, "rail-manual", repeat_interval="2s")


@pytest.fixture
def auto_resolving(tmp_path: Path) -> Iterator[Pipeline]:
    yield from pipeline(tmp_path, "rail-auto")


@pytest.fixture
def resolved_by_ops(tmp_path: Path) -> Iterator[Pipeline]:
    yield from pipeline(tmp_path, "rail-manual")


@pytest.fixture
def wrong_token(tmp_path: Path) -> Iterator[Pipeline]:
    yield from pipeline(tmp_path, "rail-manual", token="not-the-" + TOKENS["feed"])


def test_a_firing_alert_declares_an_incident_with_the_rules_runbook(
        repeating: Pipeline) -> None:
    p = repeating

    incident, _ = p.fire_and_declare()

    assert incident["runbook"] == "rail-manual"
    assert incident["state"] == "active"
    assert incident["source"] == FEED
    assert incident["declared_by"] == f"feed:{FEED}"
    assert incident["title"] == "Signal failure at Clapham Junction"  # the summary
    assert incident["channels"] == ["outbox"]
    assert incident["signal_key"].startswith(f"{FEED}:")
    assert (p.daemon.metric("switchboard_feed_last_success_timestamp_seconds",
                            {"feed": FEED}) or 0) > 0
    handover = p.wait(lambda: [line for line in p.daemon.outbox("ops-chat.jsonl")
                               if incident["id"] in line["text"]], 10, "the hand-over notice")
    assert "declared" in handover[0]["text"]

    # Alertmanager's repeat of the same alert updates that incident; never a second one.
    p.wait(lambda: p.timeline_event(incident["id"], "signal_repeated"), 10,
           "the repeated notification on the timeline")
    assert [i["id"] for i in p.incidents()] == [incident["id"]]
    assert (p.daemon.metric("switchboard_feed_signals_total",
                            {"feed": FEED, "status": "firing"}) or 0) >= 2


def test_with_auto_resolve_the_incident_resolves_after_the_quiet_period_not_before(
        auto_resolving: Pipeline) -> None:
    p = auto_resolving
    incident, started = p.fire_and_declare()
    assert incident["runbook"] == "rail-auto"

    p.alertmanager.push(ALERT_LABELS, started, datetime.now(UTC))

    cleared = p.wait(lambda: p.timeline_event(incident["id"], "signal_resolved"), 20,
                     "the resolved alert on the timeline")
    cleared_at = _time(cleared["at"])
    quiet = (_time(cleared["auto_resolve_at"]) - cleared_at).total_seconds()
    assert abs(quiet - QUIET) < 0.001, f"auto_resolve_at is {quiet}s after the signal"
    assert cleared["actor"] == f"feed:{FEED}"
    # "Not before" is the resolution's own time against the quiet period, below: a
    # look at the state now would race the period on a slow machine.

    resolved = p.wait(lambda: (lambda i: i if i["state"] != "active" else None)(
        p.incident(incident["id"])), QUIET + 10, "auto-resolution")

    assert resolved["state"] == "resolved"
    assert resolved["resolved_by"] == "feed"
    waited = (_time(resolved["resolved_at"]) - cleared_at).total_seconds()
    assert QUIET <= waited < QUIET + 3, f"resolved {waited:.2f}s after the source cleared"
    assert p.daemon.metric("switchboard_feed_signals_total",
                           {"feed": FEED, "status": "resolved"}) == 1.0
    assert p.daemon.metric("switchboard_incidents_active") == 0.0


def test_without_auto_resolve_the_incident_stays_and_ops_are_told(
        resolved_by_ops: Pipeline) -> None:
    p = resolved_by_ops
    incident, started = p.fire_and_declare()

    p.alertmanager.push(ALERT_LABELS, started, datetime.now(UTC))

    cleared = p.wait(lambda: p.timeline_event(incident["id"], "signal_resolved"), 20,
                     "the resolved alert on the timeline")
    assert cleared["actor"] == f"feed:{FEED}"
    assert "auto_resolve_at" not in cleared
    notices = p.wait(lambda: [line for line in p.daemon.outbox("ops-chat.jsonl")
                              if "cleared" in line["text"]], 10,
                     "a source-cleared notice to ops-chat")
    assert len(notices) == 1
    assert incident["id"] in notices[0]["text"]
    assert f"switchboard incident resolve {incident['id']}" in notices[0]["text"]
    assert notices[0]["kind"] == "operational"
    assert not [line for line in p.daemon.outbox() if "cleared" in line.get("text", "")], \
        "the notice went to a public channel"

    time.sleep(2.5)  # past the runbook's 1 s quiet period, which must not apply
    after = p.incident(incident["id"])
    assert after["state"] == "active"
    assert after["resolved_at"] is None
    assert p.daemon.metric("switchboard_incidents_active") == 1.0


def test_a_refused_delivery_declares_nothing_and_is_retried_until_the_token_is_right(
        wrong_token: Pipeline) -> None:
    p = wrong_token

    def refused() -> float:
        return p.daemon.metric("switchboard_feed_errors_total",
                               {"feed": FEED, "reason": "unauthorized"}) or 0.0

    now = datetime.now(UTC)
    p.alertmanager.push(ALERT_LABELS, now, now + timedelta(hours=1))

    # Alertmanager does not retry a 401 within one notification, but the failed
    # notification is not logged as sent, so every group_interval tries again.
    p.wait(lambda: refused() >= 2, 20, "the delivery refused twice as unauthorized")
    assert p.incidents() == []
    assert p.daemon.metric("switchboard_feed_signals_total",
                           {"feed": FEED, "status": "firing"}) == 0.0

    # Alertmanager reads credentials_file on every request: fixing the file is enough.
    p.alertmanager.token_file.write_text(TOKENS["feed"] + "\n")
    [incident] = p.wait(p.incidents, 20, "an incident once the token is right")
    assert incident["runbook"] == "rail-manual"
