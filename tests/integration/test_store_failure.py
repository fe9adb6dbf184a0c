"""The store under the running daemon: lost, replaced, or locked by someone else.

Fail closed: a write that cannot reach the database on disk is never
acknowledged (503, never 201 or 500), marketing stops, and health says why.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.daemon import DaemonProcess

DECLARE = {"runbook": "service-outage", "title": "Payments down"}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(tmp_path).start()
    yield proc
    proc.kill()


def test_a_database_deleted_under_the_daemon_fails_closed(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    db = tmp_path / "state" / "switchboard.db"
    daemon.ok("POST", "/api/v1/posts", {"channel": "outbox", "at": "+2s", "text": "Sale"},
              role="marketing")

    db.unlink()

    declared = daemon.api("POST", "/api/v1/incidents", DECLARE, role="ops")
    assert declared.status_code == 503
    assert declared.json()["error"]["code"] == "store_deleted"
    assert "was deleted" in declared.json()["error"]["message"]
    ready = requests.get(daemon.url + "/readyz", timeout=5)
    assert ready.status_code == 503 and "deleted" in ready.json()["store"]
    assert daemon.metric("switchboard_store_healthy") == 0
    assert daemon.metric("switchboard_store_failed", {"reason": "deleted"}) == 1
    time.sleep(3)  # past the post's due time
    assert daemon.outbox() == []
    assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 200


def test_a_database_replaced_under_the_daemon_fails_closed(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    db = tmp_path / "state" / "switchboard.db"
    copy = tmp_path / "copy.db"
    with sqlite3.connect(db) as live, sqlite3.connect(copy) as target:
        live.backup(target)
    copy.replace(db)  # a restore over the live file, say

    declared = daemon.api("POST", "/api/v1/incidents", DECLARE, role="ops")
    assert declared.status_code == 503 and declared.json()["error"]["code"] == "store_replaced"
    daemon.wait_for(lambda: daemon.metric("switchboard_store_failed",
                                          {"reason": "replaced"}) == 1)


def test_a_store_locked_by_another_process_answers_busy_quickly_and_health_never_waits(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "state" / "switchboard.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the sqlite3 shell of someone looking around
    try:
        started = time.monotonic()
        declared = daemon.api("POST", "/api/v1/incidents", DECLARE, role="ops")
        declare_s = time.monotonic() - started
        started = time.monotonic()
        health = requests.get(daemon.url + "/healthz", timeout=5)
        health_s = time.monotonic() - started
    finally:
        other.execute("ROLLBACK")
        other.close()

    assert declared.status_code == 503, declared.text
    assert declared.json()["error"]["code"] == "store_busy"
    assert "another process holds its write lock" in declared.json()["error"]["message"]
    assert declare_s < 1.0
    assert health.status_code == 200 and health_s < 0.5
    assert daemon.ok("GET", "/api/v1/incidents") == []  # nothing half-declared
    assert daemon.api("POST", "/api/v1/incidents", DECLARE, role="ops").status_code == 201
