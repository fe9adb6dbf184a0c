"""The store: migrations, integrity, transitions with history, crash recovery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from switchboard.model import NewPost
from switchboard.store import (
    INTERRUPTED_SEND,
    MIGRATIONS,
    KeyedRequest,
    KeyTaken,
    RequestKey,
    SqliteStore,
    StateLock,
    StoreError,
    StoreUnavailable,
    fingerprint,
    row_key,
)


def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore.open(tmp_path / "state" / "switchboard.db")


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
        SqliteStore.open(path)


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
    from switchboard.model import SendOutcome
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
    assert SqliteStore.open(tmp_path / "state" / "switchboard.db").count_by_state() == expected


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
    assert SqliteStore.open(db).count_by_state() == {"scheduled": 5000}


def hold_from_another_process(db: Path, channel: str, now: float) -> int:
    with sqlite3.connect(db) as other:
        cur = other.execute(
            "INSERT INTO incidents (title, runbook, severity, state, channels, suppress, source, "
            "declared_at, declared_by) VALUES ('t', 'r', 'major', 'active', ?, "
            "'[\"marketing\"]', 'manual', ?, 'ops')", (f'["{channel}"]', now))
        other.execute("INSERT INTO channel_control (channel, incident_id, until) "
                      "VALUES (?, ?, NULL)", (channel, cur.lastrowid))
        return int(cur.lastrowid or 0)


def test_the_claim_for_sending_obeys_a_hold_whoever_wrote_it(tmp_path: Path) -> None:
    s = store(tmp_path)
    ad, update, elsewhere = s.add_posts(
        [NewPost("outbox", "marketing", "sale", 1.0), NewPost("outbox", "operational", "ok", 1.0),
         NewPost("x-main", "marketing", "sale", 1.0)], "m", 1.0)
    s.transition([ad, update, elsewhere], "queued", ("scheduled",), 2.0, "dispatcher")
    incident = hold_from_another_process(s.path, "outbox", 2.0)

    claim = s.claim_sending([ad, update, elsewhere], 3.0)

    assert sorted(claim.sending) == [update, elsewhere]
    assert claim.suppressed == [(ad, "outbox")]
    post = s.post(ad)
    assert post is not None and (post.state, post.incident_id) == ("suppressed", incident)
    assert [e.event for e in s.timeline(incident)] == ["posts_suppressed"]


def test_a_due_post_on_a_held_channel_is_suppressed_not_queued(tmp_path: Path) -> None:
    s = store(tmp_path)
    held, free = s.add_posts([NewPost("outbox", "marketing", "a", 1.0),
                              NewPost("x-main", "marketing", "b", 1.0)], "m", 1.0)
    hold_from_another_process(s.path, "outbox", 1.0)
    assert [p.id for p in s.claim_due(2.0, 10)] == [free]
    assert [p.state for p in s.posts([held, free])] == ["suppressed", "queued"]


def test_a_hold_in_cooldown_still_holds_and_an_ended_one_does_not(tmp_path: Path) -> None:
    s = store(tmp_path)
    incident = s.declare(title="t", runbook="r", severity="major", channels=["outbox"],
                         suppress=["marketing"], reason=None, source="manual",
                         signal_key=None, signal=None, actor="ops", now=1.0)
    s.resolve(incident, actor="ops", note=None, now=2.0, cooldown_until=10.0)
    a, b = s.add_posts([NewPost("outbox", "marketing", t, 1.0) for t in "ab"], "m", 1.0)
    s.transition([a, b], "queued", ("scheduled",), 2.0, "dispatcher")
    assert s.claim_sending([a], 9.0).sending == []
    assert s.claim_sending([b], 10.0).sending == [b]


def test_a_second_lock_on_a_state_dir_names_the_holder(tmp_path: Path) -> None:
    lock = StateLock.take(tmp_path / "state", "pid 4242, listening on 127.0.0.1:8650")
    with pytest.raises(StoreError, match=r"pid 4242, listening on 127\.0\.0\.1:8650"):
        StateLock.take(tmp_path / "state", "pid 1, listening on 127.0.0.1:8651")
    lock.release()
    StateLock.take(tmp_path / "state", "pid 1, listening on 127.0.0.1:8651").release()


def test_a_write_lock_held_elsewhere_is_busy_at_once_and_records_nothing(
        tmp_path: Path) -> None:
    s = store(tmp_path)
    other = sqlite3.connect(s.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreUnavailable) as caught:
        s.add_posts([NewPost("outbox", "marketing", "x", 1.0)], "m", 1.0)
    other.execute("ROLLBACK")
    assert caught.value.reason == "busy"
    assert s.list_posts() == [] and s.count_by_state() == {}


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_writes_stop_for_good_once_the_database_file_is_not_ours(
        tmp_path: Path, how: str) -> None:
    s = store(tmp_path)
    if how == "deleted":
        s.path.unlink()
    else:
        (tmp_path / "other.db").write_bytes(s.path.read_bytes())
        (tmp_path / "other.db").replace(s.path)
    for _ in range(2):
        with pytest.raises(StoreUnavailable) as caught:
            s.add_posts([NewPost("outbox", "marketing", "x", 1.0)], "m", 1.0)
        assert caught.value.reason == how
    assert s.failure is not None


def test_an_import_is_all_rows_or_none_and_a_repeat_creates_nothing(tmp_path: Path) -> None:
    s = store(tmp_path)
    rows = [(row_key("outbox", 10.0 + i, f"p{i}"), NewPost("outbox", "marketing", f"p{i}",
                                                           10.0 + i)) for i in range(3)]
    bad = [*rows, ("k", NewPost("outbox", "marketing", "refuse me", 1.0))]
    s._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON posts WHEN NEW.text = "
                  "'refuse me' BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(sqlite3.IntegrityError):
        s.import_posts(bad, "m", 1.0)
    assert s.list_posts() == []
    created, existing = s.import_posts(rows, "m", 1.0)
    assert (len(created), existing) == (3, [])
    assert s.import_posts(rows, "m", 2.0) == ([], created)


def test_a_request_key_is_stored_with_what_it_made(tmp_path: Path) -> None:
    s = store(tmp_path)
    key = RequestKey("ops POST /api/v1/send", "k-1", fingerprint({"text": "x"}))
    [post] = s.add_posts([NewPost("outbox", "operational", "x", 1.0, state="queued")], "ops",
                         1.0, request=key, immediate=True)
    assert s.keyed(key.scope, "k-1") == KeyedRequest(key.fingerprint, "send", [post], 201)
    assert s.keyed(key.scope, "k-2") is None
    with pytest.raises(KeyTaken):
        s.add_posts([NewPost("outbox", "operational", "x", 1.0)], "ops", 1.0, request=key)
    assert len(s.list_posts()) == 1


def test_an_immediate_send_caught_queued_by_a_restart_fails_instead_of_going_late(
        tmp_path: Path) -> None:
    s = store(tmp_path)
    [send] = s.add_posts([NewPost("outbox", "operational", "now", 1.0, state="queued")],
                         "ops", 1.0, immediate=True)
    [step] = s.add_posts([NewPost("outbox", "operational", "holding", 1.0, state="queued")],
                         "runbook", 1.0)
    assert s.recover(2.0) == {"requeued": 1, "unknown": 0, "not_sent": 1}
    first, second = s.posts([send, step])
    assert (first.state, first.error) == ("failed", INTERRUPTED_SEND)
    assert second.state == "scheduled"
