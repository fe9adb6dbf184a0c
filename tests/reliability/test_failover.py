"""The failover harness (tests/reliability/failover.py): a pair of daemons on one
PostgreSQL through five faults, and the harness's own pieces.

The pair run is the CI version (5 faults, one of each kind, 1,500 posts);
`python -m tests.reliability.failover --faults 20` is the long one, and
`SWITCHBOARD_FAILOVER_SEED` replays a plan here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from tests.daemon import DaemonProcess, base_config
from tests.postgres import PostgresServer, own_postgres_server
from tests.reliability.crash import _iso
from tests.reliability.failover import (
    FAULTS,
    RUNBOOK,
    RUNBOOK_TEXT,
    FailoverRun,
    FaultRecord,
    Node,
    NodeWebhook,
    Row,
    Sent,
    audit,
    cut_connections,
    first_send_after,
    freeze,
    graceful_stop,
    kill9,
    read_outbox,
    restart_postgres,
    sends_after_wake,
    thaw,
    webhook_sends,
)

__all__ = ["own_postgres_server"]

SEED = int(os.environ.get("SWITCHBOARD_FAILOVER_SEED", "20261201"))
ACK = 1_000.0
IN_SCOPE = {"brand-0", "hook"}


@pytest.mark.integration
def test_a_pair_on_postgresql_through_five_faults_leaks_nothing_sends_nothing_twice_loses_nothing(
        tmp_path: Path) -> None:
    print(f"failover seed {SEED} (SWITCHBOARD_FAILOVER_SEED={SEED} replays the plan)")
    run = FailoverRun(tmp_path, faults=5, posts=1500, seed=SEED)
    report = run.run()
    print(report.summary())
    assert report.violations == [], "\n".join(report.violations)
    assert sorted(r.kind for r in report.records) == sorted(FAULTS)
    assert report.declared_role == "standby", "the declaration was not made at the standby"
    assert sum(report.states.values()) == 1500
    assert report.suppressed > 0, "the incident held nothing: the run did not test the gate"
    assert report.webhook_requests > 0, "the webhook channel published nothing"
    assert all(r.first_send_s is not None for r in report.records), "sends never resumed"


# -- the checks, on histories made up to break one rule each --------------------

def _row(channel: str, kind: str, state: str, due_at: float = ACK - 10,
         incident: int | None = None, reason: str | None = None) -> Row:
    return Row(channel, kind, state, due_at, incident, reason)


def _sent(post_id: int, channel: str, kind: str = "marketing", at: float = ACK - 5,
          node: str = "n0") -> Sent:
    return Sent(post_id, channel, kind, at, node)


def _history() -> tuple[dict[int, tuple[str, str]], dict[int, Row], list[Sent]]:
    """A run that kept every promise: published before the ack, suppressed after,
    an unknown with its reason, operational posts out under the incident."""
    posts = {
        1: _row("brand-0", "marketing", "published"),
        2: _row("brand-0", "marketing", "suppressed", due_at=ACK + 1, incident=7),
        3: _row("brand-1", "marketing", "published", due_at=ACK + 1),
        4: _row("hook", "operational", "published", due_at=ACK + 2),
        5: _row("brand-1", "marketing", "unknown", reason="sending when n0 lost the lease"),
    }
    created = {i: (r.channel, r.kind) for i, r in posts.items()}
    sends = [_sent(1, "brand-0"), _sent(3, "brand-1", at=ACK + 1.1, node="n1"),
             _sent(4, "hook", "operational", at=ACK + 2.1, node="n1"), _sent(5, "brand-1")]
    return created, posts, sends


def test_a_run_that_kept_every_promise_passes_the_audit() -> None:
    created, posts, sends = _history()
    assert audit(created, posts, sends, IN_SCOPE, ACK, 7) == []


def test_the_audit_counts_a_post_sent_by_both_nodes_as_a_duplicate() -> None:
    created, posts, sends = _history()
    found = audit(created, posts, [*sends, _sent(1, "brand-0", node="n1")], IN_SCOPE, ACK, 7)
    assert any("post 1 went out 2 times (by n0, n1)" in f for f in found), found


def test_the_audit_finds_a_marketing_send_that_started_after_the_ack() -> None:
    created, posts, sends = _history()
    posts[6] = _row("brand-0", "marketing", "published")
    created[6] = ("brand-0", "marketing")
    found = audit(created, posts, [*sends, _sent(6, "brand-0", at=ACK + 0.001)], IN_SCOPE,
                  ACK, 7)
    assert any("1 marketing sends started after the declaration" in f for f in found), found


def test_the_audit_finds_a_post_lost_from_the_store_and_one_left_sending() -> None:
    created, posts, sends = _history()
    created[9] = ("brand-1", "marketing")
    posts[5] = _row("brand-1", "marketing", "sending")
    found = audit(created, posts, sends, IN_SCOPE, ACK, 7)
    assert any("1 created posts are not in the store, e.g. [9]" in f for f in found), found
    assert any("post 5 (marketing on brand-1) is left sending" in f for f in found), found


def test_the_audit_refuses_an_unknown_post_without_a_reason() -> None:
    created, posts, sends = _history()
    posts[5] = _row("brand-1", "marketing", "unknown")
    found = audit(created, posts, sends, IN_SCOPE, ACK, 7)
    assert found == ["post 5 (marketing on brand-1) is unknown without a reason"]


def test_the_audit_finds_a_post_published_without_its_send_or_dropped_silently() -> None:
    created, posts, sends = _history()
    posts[3] = _row("brand-1", "marketing", "suppressed", incident=7)
    found = audit(created, posts, [s for s in sends if s.post_id != 3], IN_SCOPE, ACK, 7)
    assert found == ["post 3 (marketing on brand-1) is suppressed by INC-7; nothing held it"]
    posts[3] = _row("brand-1", "marketing", "published")
    found = audit(created, posts, [s for s in sends if s.post_id != 3], IN_SCOPE, ACK, 7)
    assert found == ["post 3 (marketing on brand-1) is published with 0 sends"]


def test_the_audit_wants_in_scope_marketing_due_after_the_ack_suppressed() -> None:
    created, posts, sends = _history()
    posts[2] = _row("brand-0", "marketing", "unknown", due_at=ACK + 1, reason="timeout")
    found = audit(created, posts, sends, IN_SCOPE, ACK, 7)
    assert found == ["post 2 (marketing on brand-0), due after the declaration, is unknown, "
                     "not suppressed"]


def test_a_node_woken_from_sigstop_may_not_send_until_the_next_fault() -> None:
    record = FaultRecord(3, "sigstop", "n0", at=ACK, woke_at=ACK + 13, until=ACK + 30)
    quiet = [_sent(1, "brand-1", at=ACK + 12.9), _sent(2, "brand-1", at=ACK + 31),
             _sent(3, "brand-1", at=ACK + 20, node="n1")]
    assert sends_after_wake(quiet, record) == []
    found = sends_after_wake([*quiet, _sent(4, "brand-1", at=ACK + 14)], record)
    assert found == [f"fault 3: n0 sent 1 posts after waking from SIGSTOP at {_iso(ACK + 13)}; "
                     f"first: post 4 at {_iso(ACK + 14)}"]


def test_the_first_send_after_a_fault_is_a_post_claimed_after_it_by_another_node() -> None:
    due = {1: ACK - 1, 2: ACK + 1, 3: ACK + 2}
    sends = [_sent(1, "brand-1", at=ACK + 0.01, node="n1"),  # already on its way
             _sent(2, "brand-1", at=ACK + 0.5),                 # the faulted node, draining
             _sent(3, "brand-1", at=ACK + 9.5, node="n1")]
    first = first_send_after(sends, due, ACK, excluding="n0")
    assert first is not None and (first.post_id, first.node) == (3, "n1")
    assert first_send_after(sends, due, ACK + 10, excluding=None) is None


def test_torn_and_malformed_outbox_lines_are_reported_and_a_live_tail_is_not(
        tmp_path: Path) -> None:
    path = tmp_path / "brand-0.jsonl"
    good = ('{"post_id": 4, "channel": "brand-0", "kind": "marketing", '
            '"sent_at": "2026-12-01T20:00:00.000001+00:00"}\n')
    path.write_text(good + "not json\n" + good[:30])
    sends, bad = read_outbox(path, "n1", live=True)
    assert [(s.post_id, s.node) for s in sends] == [(4, "n1")]
    assert bad == [f"{path}:2: malformed line 'not json\\n'"]
    assert read_outbox(path, "n1", live=False)[1][-1] == f"{path}:3: line not terminated"


# -- the faults, on one real daemon (SQLite) and one real PostgreSQL -----------

def test_the_fault_pieces_freeze_wake_kill_and_stop_a_real_daemon_and_read_its_sends(
        tmp_path: Path) -> None:
    with NodeWebhook(idempotent=False) as hook:
        channels: list[dict[str, Any]] = [
            {"id": "brand-0", "kind": "outbox", "path": str(tmp_path / "brand-0.jsonl")},
            {"id": "hook", "kind": "webhook", "url_env": "SB_HOOK", "idempotent": False}]
        process = DaemonProcess(tmp_path, config=base_config(tmp_path, 0, channels),
                                runbooks={RUNBOOK: RUNBOOK_TEXT},
                                env={"SB_HOOK": hook.url_for("n0")})
        node = Node("n0", process.start())
        try:
            for channel in ("brand-0", "hook"):
                node.process.ok("POST", "/api/v1/posts",
                                {"channel": channel, "text": f"to {channel}", "at": "now"})
            node.process.wait_for(lambda: hook.requests and read_outbox(
                tmp_path / "brand-0.jsonl", "n0")[0])
            sends, bad = webhook_sends(hook.requests)
            assert bad == [] and [(s.channel, s.node) for s in sends] == [("hook", "n0")]
            assert sends[0].arrived is not None and sends[0].arrived >= sends[0].sent_at

            freeze(node)
            assert node.readyz() is None
            with pytest.raises(requests.Timeout):
                requests.get(process.url + "/readyz", timeout=0.5)
            thaw(node)
            assert node.readyz() is not None, "woken, the daemon answers again"

            assert graceful_stop(node) == 0
            node = Node("n1", process.start())
            kill9(node)
            assert process.proc is not None and process.proc.returncode == -9
            assert node.readyz() is None
        finally:
            process.kill()


def test_cut_connections_ends_only_the_named_nodes_sessions(
        own_postgres_server: PostgresServer) -> None:
    dsn = own_postgres_server.dsn()
    with psycopg.connect(f"{dsn} application_name=n0", autocommit=True) as leader, \
            psycopg.connect(f"{dsn} application_name=n1", autocommit=True) as standby:
        assert cut_connections(dsn, "n0") == 1
        with pytest.raises(psycopg.OperationalError):
            leader.execute("SELECT 1")
        assert standby.execute("SELECT 1").fetchone() == (1,)


def test_restart_postgres_cuts_every_session_and_comes_back_on_its_port(
        own_postgres_server: PostgresServer) -> None:
    port = own_postgres_server.port
    with psycopg.connect(own_postgres_server.dsn(), autocommit=True) as before:
        started = time.monotonic()
        restart_postgres(own_postgres_server)
        took = time.monotonic() - started
        with pytest.raises(psycopg.OperationalError):
            before.execute("SELECT 1")
    assert own_postgres_server.port == port
    with psycopg.connect(own_postgres_server.dsn(), autocommit=True) as after:
        assert after.execute("SELECT 1").fetchone() == (1,)
    assert took < 30
