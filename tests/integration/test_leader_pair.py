"""Two real daemons on one real PostgreSQL: one leads, the other stands by.

Each daemon writes its own outbox file, so a line tells which daemon sent
it and a post id in both files would be a post sent twice.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.daemon import TOKENS, DaemonProcess, base_config
from tests.postgres import postgres_dsn, postgres_server

__all__ = ["postgres_dsn", "postgres_server"]

RUNBOOK = """\
name: outage
title: Outage
severity: major
scope: all
suppress: [marketing]
handover:
  role: ops
  notify: [ops-chat]
"""


def make_daemon(root: Path, name: str, dsn: str) -> DaemonProcess:
    tmp = root / name
    tmp.mkdir()
    feeds = [{"id": "am", "kind": "alertmanager", "token_env": "SB_TEST_FEED",
              "rules": [{"match": {"severity": "critical"}, "runbook": "outage"}]}]
    config = base_config(tmp, 0, feeds=feeds,
                         store={"backend": "postgresql", "dsn_env": "SB_TEST_DSN"})
    return DaemonProcess(tmp, config, runbooks={"outage": RUNBOOK}, env={"SB_TEST_DSN": dsn})


@pytest.fixture
def pair(tmp_path: Path, postgres_dsn: str) -> Iterator[tuple[DaemonProcess, DaemonProcess]]:
    first = make_daemon(tmp_path, "a", postgres_dsn).start()
    second = make_daemon(tmp_path, "b", postgres_dsn)
    try:
        second.start()
        yield first, second
    finally:
        for daemon in (first, second):
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.signal(signal.SIGCONT)
            daemon.kill()


def ready(daemon: DaemonProcess) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(daemon.url + "/readyz", timeout=2).json()
    return body


def role(daemon: DaemonProcess) -> str:
    return str(ready(daemon)["role"])


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def schedule(daemon: DaemonProcess, due: list[float], text: str = "offer") -> list[int]:
    posts = daemon.ok("POST", "/api/v1/posts",
                      [{"channel": "outbox", "text": f"{text} {i}", "at": at(s)}
                       for i, s in enumerate(due)], role="marketing")
    return [int(p["id"]) for p in posts]


def sent_ids(daemon: DaemonProcess) -> list[int]:
    return [int(line["post_id"]) for line in daemon.outbox() if line["kind"] == "marketing"]


def sent_at(daemon: DaemonProcess) -> list[datetime]:
    return [datetime.fromisoformat(line["sent_at"]) for line in daemon.outbox()
            if line["kind"] == "marketing"]


def test_one_of_two_daemons_leads_sends_what_the_standby_was_asked_and_hands_over_on_stop(
        pair: tuple[DaemonProcess, DaemonProcess]) -> None:
    leader, standby = pair
    assert ready(leader) == {"ready": True, "role": "leader", "epoch": 1}
    assert ready(standby) == {"ready": True, "role": "standby", "epoch": 1}
    assert leader.metric("switchboard_leader") == 1
    assert standby.metric("switchboard_leader") == 0
    assert standby.metric("switchboard_leader_epoch") == 1

    [post] = schedule(standby, [0.5])
    leader.wait_for(lambda: sent_ids(leader) == [post], timeout=5)
    time.sleep(1.5)  # two polls of the standby: it sends nothing
    assert sent_ids(leader) == [post] and sent_ids(standby) == []
    assert standby.ok("GET", f"/api/v1/posts/{post}")["state"] == "published"
    # Sent at once, asked of the standby: the leader sends it; the answer has its outcome.
    sent = standby.ok("POST", "/api/v1/send", {"channel": "outbox", "text": "now"},
                      role="marketing")
    assert sent["state"] == "published", sent
    assert sent_ids(leader) == [post, sent["id"]] and sent_ids(standby) == []
    status = standby.cli("status")
    assert "standby, epoch 1" in status.stdout, status.stdout + status.stderr

    assert leader.stop() == 0  # SIGTERM: drains its sends, releases the lease, NOTIFY
    standby.wait_for(lambda: role(standby) == "leader", timeout=5, every=0.02)
    # By the daemons' own clocks (one host): from the SIGTERM to the standby leading.
    [stopped] = leader.logged_at("stopping")
    handover = (standby.logged_at("leader_lease_taken")[-1] - stopped).total_seconds()
    assert 0 < handover < 2.0, handover  # the NOTIFY, not the lease's 10 s
    assert ready(standby)["epoch"] == 2
    print(f"takeover after a graceful stop: {handover:.3f}s")


def alert(name: str) -> bytes:
    return json.dumps({"version": "4", "status": "firing", "groupKey": name, "alerts": [
        {"status": "firing", "startsAt": "2026-09-21T10:00:00Z",
         "labels": {"alertname": name, "severity": "critical"}}]}).encode()


def test_an_alert_pushed_to_both_daemons_declares_one_incident_without_an_error(
        pair: tuple[DaemonProcess, DaemonProcess]) -> None:
    leader, standby = pair
    for daemon in (leader, standby):  # Alertmanager configured with both as receivers
        response = requests.post(daemon.url + "/feeds/am", data=alert("LinkDown"), timeout=10,
                                 headers={"Authorization": f"Bearer {TOKENS['feed']}"})
        assert response.status_code == 202, response.text
    assert len(standby.ok("GET", "/api/v1/incidents")) == 1
    for daemon in (leader, standby):
        assert not daemon.metric("switchboard_feed_errors_total", {"feed": "am"}), daemon.log()


def test_when_the_leader_is_killed_the_standby_takes_over_and_sends_the_next_post(
        pair: tuple[DaemonProcess, DaemonProcess]) -> None:
    leader, standby = pair
    killed = datetime.now(UTC)
    leader.kill()
    standby.wait_for(lambda: role(standby) == "leader", timeout=15)
    takeover = (standby.logged_at("leader_lease_taken")[-1] - killed).total_seconds()
    assert takeover <= 12.5, takeover  # the 10 s lease, then at most a poll
    assert ready(standby)["epoch"] == 2
    [post] = schedule(standby, [0.2])
    standby.wait_for(lambda: sent_ids(standby) == [post], timeout=5)
    print(f"takeover after kill -9: {takeover:.2f}s")


def test_a_declaration_at_the_standby_stops_the_leaders_marketing_posts(
        pair: tuple[DaemonProcess, DaemonProcess]) -> None:
    leader, standby = pair
    posts = schedule(leader, [1.0 + i * 0.05 for i in range(60)])  # due over 3 s
    leader.wait_for(lambda: len(sent_ids(leader)) >= 5, timeout=5, every=0.01)
    asked = time.monotonic()
    incident = standby.ok("POST", "/api/v1/incidents", {"runbook": "outage", "title": "Down"},
                          role="ops")
    acknowledged = datetime.now(UTC)
    print(f"declare -> ack at the standby: {(time.monotonic() - asked) * 1000:.1f} ms")

    def settled() -> set[str] | None:
        states = {standby.ok("GET", f"/api/v1/posts/{p}")["state"] for p in posts}
        return None if states & {"scheduled", "queued", "sending"} else states
    states = standby.wait_for(settled, timeout=15, every=0.5)  # past the last due time
    after = [t for t in sent_at(leader) if t > acknowledged]
    assert after == [], f"{len(after)} marketing post(s) sent after the acknowledgement"
    assert 5 <= len(sent_ids(leader)) < len(posts)
    assert states == {"published", "suppressed"}
    assert incident["state"] == "active"
    # Its runbook runs at the leader, once: the hand-over notice to ops.
    notices = leader.outbox("ops-chat.jsonl")
    assert [n["text"].split(":")[0] for n in notices] == [f"{incident['id']} declared"], notices
    assert standby.outbox("ops-chat.jsonl") == []


def test_a_leader_frozen_beyond_its_lease_sends_nothing_after_it_wakes(
        pair: tuple[DaemonProcess, DaemonProcess]) -> None:
    leader, standby = pair
    posts = schedule(leader, [1.0 + i * 0.1 for i in range(30)])  # due over 4 s
    leader.wait_for(lambda: sent_ids(leader), timeout=5, every=0.01)
    leader.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    frozen = datetime.now(UTC)
    standby.wait_for(lambda: role(standby) == "leader", timeout=15)
    print(f"takeover after SIGSTOP: {time.monotonic() - stopped:.2f}s")
    leader.signal(signal.SIGCONT)
    later = schedule(standby, [0.3, 0.6])
    standby.wait_for(lambda: set(later) <= set(sent_ids(standby)), timeout=5)
    time.sleep(2.5)  # the woken leader's timers, its renewal, a poll
    # A write the freeze caught half done may end after the thaw; a send begun after
    # the freeze may not (sent_at is taken as the send starts).
    assert [t for t in sent_at(leader) if t > frozen] == [], "the woken leader sent"
    assert role(leader) == "standby"
    both = sent_ids(leader) + sent_ids(standby)
    assert len(both) == len(set(both)), "a post was sent twice"
    states = {standby.ok("GET", f"/api/v1/posts/{p}")["state"] for p in posts}
    assert states <= {"published", "unknown"}
