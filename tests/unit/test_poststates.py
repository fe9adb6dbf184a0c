"""The post state machine as the store enforces it: one table, every other move refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from switchboard.model import NewPost, SendOutcome
from switchboard.poststates import (
    INITIAL,
    OUTCOMES,
    TRANSITIONS,
    IllegalMove,
    PostOrigin,
    PostState,
    check_move,
)
from switchboard.store import MIGRATIONS, SqliteStore
from switchboard.store.migrations import for_backend

S = PostState
FINAL = (S.DROPPED, S.CANCELLED, S.EXPIRED, S.RETRACTED, S.REJECTED)


def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore.open(tmp_path / "state" / "switchboard.db")


def post_in(s: SqliteStore, *path: PostState) -> int:
    """A post walked through the given legal states, in order, from `scheduled`."""
    [post_id] = s.add_posts([NewPost("outbox", "marketing", "Spring sale", 10.0)], "m", 1.0)
    current = S.SCHEDULED
    for state in path:
        if state in OUTCOMES and current == S.SENDING:
            s.record_sends([SendOutcome(post_id, state)], 2.0)
        else:
            assert s.transition([post_id], state, (current,), 2.0, "test") == [post_id]
        current = state
    return post_id


def state_of(s: SqliteStore, post_id: int) -> PostState:
    post = s.post(post_id)
    assert post is not None
    return post.state


def test_every_state_has_a_row_and_every_move_leads_to_a_state() -> None:
    assert set(TRANSITIONS) == set(PostState)
    assert all(targets <= set(PostState) for targets in TRANSITIONS.values())
    assert all(not TRANSITIONS[state] for state in FINAL)


def test_a_post_never_skips_the_claim_from_scheduled_to_sending_or_published(
        tmp_path: Path) -> None:
    s = store(tmp_path)
    post_id = post_in(s)
    for target in (S.SENDING, S.PUBLISHED):
        with pytest.raises(IllegalMove, match=f"from scheduled to {target}"):
            s.transition([post_id], target, (S.SCHEDULED,), 3.0, "test")
    assert state_of(s, post_id) == S.SCHEDULED
    assert [h["to"] for h in s.post_history(post_id)] == ["scheduled"]


def test_a_published_post_is_never_queued_or_scheduled_again(tmp_path: Path) -> None:
    s = store(tmp_path)
    post_id = post_in(s, S.QUEUED, S.SENDING, S.PUBLISHED)
    for target in (S.QUEUED, S.SCHEDULED, S.SENDING):
        with pytest.raises(IllegalMove, match="from published"):
            s.transition([post_id], target, (S.PUBLISHED,), 3.0, "test")
    assert state_of(s, post_id) == S.PUBLISHED


def test_a_send_of_unknown_outcome_is_never_queued_again_automatically(tmp_path: Path) -> None:
    s = store(tmp_path)
    post_id = post_in(s, S.QUEUED, S.SENDING, S.UNKNOWN)
    for target in (S.QUEUED, S.SENDING):
        with pytest.raises(IllegalMove, match=f"from unknown to {target}"):
            s.transition([post_id], target, (S.UNKNOWN,), 3.0, "dispatcher")
    # A person may release it: back to scheduled, on purpose.
    assert s.transition([post_id], S.SCHEDULED, (S.UNKNOWN,), 3.0, "ops") == [post_id]


@pytest.mark.parametrize("final", FINAL)
def test_a_final_state_is_never_left(tmp_path: Path, final: PostState) -> None:
    with pytest.raises(IllegalMove, match=rf"from {final} to scheduled .*it is final"):
        check_move((final,), S.SCHEDULED)


def test_a_post_waiting_for_approval_never_goes_to_the_queue_unapproved(tmp_path: Path) -> None:
    s = store(tmp_path)
    [post_id] = s.add_posts([NewPost("outbox", "marketing", "Sale", 10.0,
                                     state=S.PENDING_APPROVAL)], "m", 1.0)
    with pytest.raises(IllegalMove, match="from pending_approval to queued"):
        s.transition([post_id], S.QUEUED, (S.PENDING_APPROVAL,), 2.0, "dispatcher")
    assert state_of(s, post_id) == S.PENDING_APPROVAL


def test_one_illegal_state_among_the_expected_ones_refuses_the_whole_move(
        tmp_path: Path) -> None:
    s = store(tmp_path)
    post_id = post_in(s)
    with pytest.raises(IllegalMove, match="from published to cancelled"):
        s.transition([post_id], S.CANCELLED, (S.SCHEDULED, S.PUBLISHED), 2.0, "marketing")
    assert state_of(s, post_id) == S.SCHEDULED


def test_a_post_is_never_created_already_sent_or_suppressed(tmp_path: Path) -> None:
    s = store(tmp_path)
    for state in set(PostState) - INITIAL:
        with pytest.raises(IllegalMove, match=f"cannot be created {state}"):
            s.add_posts([NewPost("outbox", "marketing", "Sale", 10.0, state=state)], "m", 1.0)
    assert s.count_by_state() == {}


def test_a_send_outcome_is_only_published_failed_or_unknown(tmp_path: Path) -> None:
    s = store(tmp_path)
    post_id = post_in(s, S.QUEUED, S.SENDING)
    with pytest.raises(IllegalMove, match="a send cannot end scheduled"):
        s.record_sends([SendOutcome(post_id, S.SCHEDULED)], 3.0)
    assert state_of(s, post_id) == S.SENDING


def test_a_misspelt_state_names_the_states_there_are(tmp_path: Path) -> None:
    s = store(tmp_path)
    post_id = post_in(s)
    with pytest.raises(IllegalMove, match=r"no post state 'canceled' .*cancelled"):
        s.transition([post_id], "canceled", (S.SCHEDULED,), 2.0, "m")  # type: ignore[arg-type]


def test_the_origin_of_a_post_is_stored_not_guessed_from_its_times(tmp_path: Path) -> None:
    s = store(tmp_path)
    # Due the moment it was made, yet scheduled; and sent now, yet due later.
    ids = s.add_posts([NewPost("outbox", "marketing", "a", 1.0),
                       NewPost("outbox", "operational", "b", 5.0, state=S.QUEUED,
                               origin=PostOrigin.SEND_NOW)], "m", 1.0)
    assert [p.origin for p in s.posts(ids)] == [PostOrigin.SCHEDULE, PostOrigin.SEND_NOW]


def test_posts_stored_before_the_origin_column_keep_their_old_meaning(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for number, migration in enumerate(MIGRATIONS[:6], start=1):
        db.executescript(for_backend(migration, "sqlite"))
        db.execute(f"PRAGMA user_version = {number}")
    db.executemany("INSERT INTO posts (channel, kind, text, state, due_at, created_by, "
                   "created_at, updated_at) VALUES ('outbox', 'marketing', ?, 'scheduled', "
                   "?, 'm', 5.0, 5.0)", [("later", 50.0), ("now", 5.0)])
    db.close()
    s = SqliteStore.open(path)
    assert [p.origin for p in s.list_posts()] == [PostOrigin.SEND_NOW, PostOrigin.SCHEDULE]
