"""The store: migrations, integrity, transitions with history, crash recovery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from switchboard.store import MIGRATIONS, NewPost, Store, StoreError


def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "state" / "switchboard.db")


def test_a_new_store_is_at_the_latest_schema_in_wal_mode(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.schema_version() == len(MIGRATIONS)
    assert s._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert s.integrity_ok()


def test_a_store_from_a_newer_switchboard_is_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    s._db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    s.close()
    with pytest.raises(StoreError, match="newer than this switchboard"):
        store(tmp_path)


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "state" / "switchboard.db"
    path.parent.mkdir()
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreError, match="cannot open store"):
        Store.open(path)


def test_transitions_move_only_from_the_expected_state_and_keep_history(tmp_path: Path) -> None:
    s = store(tmp_path)
    ids = s.add_posts([NewPost("outbox", "marketing", f"p{i}", 10.0 + i) for i in range(3)],
                      "marketing", 1.0)
    assert s.transition(ids, "cancelled", ("scheduled",), 2.0, "marketing", "no longer") == ids
    assert s.transition(ids, "queued", ("scheduled",), 3.0, "dispatcher") == []
    history = s.post_history(ids[0])
    assert [(h["from"], h["to"], h["actor"]) for h in history] == [
        (None, "scheduled", "marketing"), ("scheduled", "cancelled", "marketing")]


def test_recovery_requeues_claimed_posts_and_marks_interrupted_sends_unknown(
        tmp_path: Path) -> None:
    s = store(tmp_path)
    a, b, c = s.add_posts([NewPost("outbox", "marketing", t, 10.0) for t in "abc"], "m", 1.0)
    s.transition([a], "queued", ("scheduled",), 2.0, "dispatcher")
    s.transition([b], "queued", ("scheduled",), 2.0, "dispatcher")
    s.transition([b], "sending", ("queued",), 2.0, "dispatcher")
    assert s.recover(3.0) == {"requeued": 1, "unknown": 1, "not_sent": 0}
    assert [p.state for p in s.posts([a, b, c])] == ["scheduled", "unknown", "scheduled"]


def test_due_posts_are_claimed_once_and_old_ones_missed(tmp_path: Path) -> None:
    s = store(tmp_path)
    old, due, _later = s.add_posts([NewPost("outbox", "marketing", "x", t)
                                   for t in (10.0, 95.0, 200.0)], "m", 1.0)
    assert s.mark_missed(before=50.0, now=100.0) == [old]
    assert [p.id for p in s.claim_due(100.0, 10)] == [due]
    assert s.claim_due(100.0, 10) == []
    assert s.next_due() == 200.0


def test_a_declaration_is_on_disk_when_declare_returns(tmp_path: Path) -> None:
    s = store(tmp_path)
    incident = s.declare(title="t", runbook="r", severity="major", channels=["outbox"],
                         suppress=["marketing"], reason=None, source="manual", signal_key=None,
                         signal=None, actor="ops", now=5.0)
    other = sqlite3.connect(tmp_path / "state" / "switchboard.db")
    assert other.execute("SELECT state FROM incidents WHERE id = ?",
                         (incident,)).fetchone() == ("active",)
    assert other.execute("SELECT channel FROM channel_control").fetchall() == [("outbox",)]


def test_the_state_counts_follow_every_committed_change(tmp_path: Path) -> None:
    from switchboard.store import SendOutcome
    s = store(tmp_path)
    ids = s.add_posts([NewPost("outbox", "marketing", f"p{i}", 10.0) for i in range(5)], "m", 1)
    s.transition(ids[:3], "queued", ("scheduled",), 2.0, "dispatcher")
    s.transition(ids[:2], "sending", ("queued",), 2.0, "dispatcher")
    s.record_sends([SendOutcome(ids[0], "published", published_at=3.0),
                    SendOutcome(ids[1], "failed", error="no")], 3.0)
    try:
        with s.transaction():
            s._transition(ids[3:], "cancelled", ("scheduled",), 4.0, "m")
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    expected = dict(s._db.execute("SELECT state, COUNT(*) FROM posts GROUP BY state"))
    assert s.count_by_state() == expected == {"published": 1, "failed": 1, "queued": 1,
                                              "scheduled": 2}
    s.close()
    assert Store.open(tmp_path / "state" / "switchboard.db").count_by_state() == expected


def test_the_wal_is_copied_into_the_database_off_the_commit_path(tmp_path: Path) -> None:
    import time
    s = store(tmp_path)
    db = tmp_path / "state" / "switchboard.db"
    s.start_checkpoints(every=0.05)
    # Autocheckpoint is off on the writing connection: the thread does the copying.
    assert s._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    before = db.stat().st_size
    s.add_posts([NewPost("outbox", "marketing", "x" * 200, 10.0)] * 5000, "m", 1.0)
    deadline = time.monotonic() + 5
    while db.stat().st_size < before + 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.stat().st_size > before + 1_000_000, "the posts reached the database file"
    s.close()
    wal = tmp_path / "state" / "switchboard.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0, "closing leaves no WAL behind"
    assert Store.open(db).count_by_state() == {"scheduled": 5000}
