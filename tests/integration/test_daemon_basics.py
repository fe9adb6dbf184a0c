"""The walking skeleton, on the real daemon process."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import yaml

from tests.daemon import TOKENS, DaemonProcess


def test_it_serves_health_ready_and_metrics_without_a_token(daemon: DaemonProcess) -> None:
    assert daemon.api("GET", "/healthz", role=None).status_code == 200
    assert daemon.api("GET", "/readyz", role=None).json() == {"ready": True, "role": "leader",
                                                              "epoch": 1}
    metrics = daemon.api("GET", "/metrics", role=None)
    assert metrics.status_code == 200
    assert "switchboard_build_info{version=" in metrics.text
    assert daemon.metric("switchboard_config_last_reload_successful") == 1.0


def test_it_refuses_the_api_without_a_token_and_with_a_wrong_one(daemon: DaemonProcess) -> None:
    for token in (None, "not-a-token"):
        response = daemon.api("GET", "/api/v1/status", role=None, token=token)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


def test_it_refuses_a_role_without_the_power(daemon: DaemonProcess) -> None:
    response = daemon.api("POST", "/api/v1/incidents",
                          {"runbook": "rail-disruption", "title": "x"}, role="marketing")
    assert response.status_code == 403
    assert "ops" in response.json()["error"]["message"]
    response = daemon.api("POST", "/api/v1/posts",
                          {"channel": "outbox", "text": "offer", "at": "+1h"}, role="viewer")
    assert response.status_code == 403
    assert daemon.api("GET", "/api/v1/status", role="viewer").status_code == 200


def test_it_never_writes_a_token_to_the_log(daemon: DaemonProcess) -> None:
    daemon.api("GET", "/api/v1/status", token="wrong-" + TOKENS["admin"])
    daemon.api("GET", "/api/v1/status")
    daemon.api("POST", "/api/v1/incidents", {"runbook": "rail-disruption", "title": "Held"})
    daemon.stop()
    log = daemon.log()
    assert "incident_declared" in log
    for token in TOKENS.values():
        assert token not in log


def test_status_and_channels_through_the_cli(daemon: DaemonProcess) -> None:
    status = daemon.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    assert '"ready": true' in status.stdout
    channels = daemon.cli("channels")
    assert channels.returncode == 0
    assert "outbox" in channels.stdout and "marketing" in channels.stdout


def test_cli_exit_codes_refused_and_unreachable(daemon: DaemonProcess) -> None:
    refused = daemon.cli("incident", "declare", "--runbook", "rail-disruption", "--title", "x",
                         role="viewer")
    assert refused.returncode == 1
    assert "403" in refused.stderr
    daemon.stop()
    gone = daemon.cli("status")
    assert gone.returncode == 3
    assert "cannot reach" in gone.stderr


def test_request_bodies_over_one_mib_are_refused_with_413(daemon: DaemonProcess) -> None:
    body = [{"channel": "outbox", "text": "x" * 100, "at": "+1h"}] * 12_000
    response = daemon.api("POST", "/api/v1/posts", body, role="marketing")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert daemon.ok("GET", "/api/v1/posts") == []


def test_sighup_with_a_broken_config_keeps_the_old_one(daemon: DaemonProcess) -> None:
    good = daemon.config_path.read_text()
    daemon.config_path.write_text(good.replace("max_lateness:", "max_latenes:"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(lambda: daemon.metric("switchboard_config_last_reload_successful") == 0.0)
    assert daemon.api("GET", "/readyz", role=None).status_code == 200
    assert daemon.api("GET", "/api/v1/status").status_code == 200
    assert "reload_failed" in daemon.log() and "reload_committing" not in daemon.log()

    config = yaml.safe_load(good)
    config["channels"].append({"id": "extra", "kind": "outbox",
                               "path": str(daemon.tmp / "extra.jsonl")})
    daemon.write_config(config)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(lambda: daemon.metric("switchboard_config_last_reload_successful") == 1.0)
    ids = [c["id"] for c in daemon.ok("GET", "/api/v1/channels")]
    assert ids == ["outbox", "ops-chat", "extra"]
    assert "reload_committing" in daemon.log()


def test_sigterm_drains_and_exits_zero(daemon: DaemonProcess) -> None:
    assert daemon.stop() == 0
    assert '"stopped"' in daemon.log() or "stopped" in daemon.log()


def test_kill_9_and_restart_keeps_everything(daemon: DaemonProcess) -> None:
    created = daemon.ok("POST", "/api/v1/posts",
                        [{"channel": "outbox", "text": f"offer {i}", "at": "+2h"}
                         for i in range(50)], role="marketing")
    incident = daemon.ok("POST", "/api/v1/incidents",
                         {"runbook": "security-incident", "title": "Breach"}, role="ops")
    daemon.kill()
    db = sqlite3.connect(daemon.tmp / "state" / "switchboard.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    daemon.start()
    posts = daemon.ok("GET", "/api/v1/posts?state=scheduled")
    # The runbook's own notices may still be on their way at the kill; the
    # marketing posts are all there, still scheduled.
    marketing = [p for p in posts if p["kind"] == "marketing"]
    assert sorted(p["id"] for p in marketing) == sorted(p["id"] for p in created)
    incidents = daemon.ok("GET", "/api/v1/incidents")
    assert [i["id"] for i in incidents] == [incident["id"]]
    assert daemon.ok("GET", "/api/v1/channels")[0]["control"] == "ops"


def test_a_store_that_cannot_be_opened_stops_the_daemon_with_a_message(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    (state / "switchboard.db").write_bytes(b"this is not a database" * 100)
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(20) == 1
    assert "cannot open store" in daemon.log()


def test_a_broken_config_at_start_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    text = daemon.config_path.read_text().replace("max_lateness: 10m", "max_lateness: soon")
    daemon.config_path.write_text(text.replace("timezone: Europe/London", "timezone: Mars/Base"))
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(20) == 1
    log = daemon.log()
    assert "max_lateness: bad duration" in log
    assert "timezone: unknown timezone" in log
