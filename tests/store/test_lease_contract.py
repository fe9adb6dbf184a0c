"""The leader lease in the store contract: alike on SQLite, PostgreSQL and
PostgreSQL behind PgBouncer (no session state: every call its own transaction)."""

from __future__ import annotations

import time

import pytest

from switchboard.model import NewPost
from switchboard.store import Fence, Fenced
from tests.store.conftest import MakeStore

LEASE = 0.4


def test_the_lease_is_renewed_by_its_holder_and_refused_to_another_while_live(
        make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    first = one.take_lease("a", LEASE)
    assert first.held_by("a") and first.epoch == 1 and first.expires_at > first.now
    other = two.take_lease("b", LEASE)
    assert other.held_by("a") and not other.held_by("b") and other.epoch == 1
    renewed = one.take_lease("a", LEASE)
    assert renewed.epoch == 1 and renewed.expires_at >= first.expires_at


def test_a_lapsed_lease_passes_one_epoch_up_and_fences_the_old_holders_claims(
        make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    one.take_lease("a", LEASE)
    now = time.time()
    one.add_posts([NewPost("outbox", "marketing", "offer", now - 1)], "test", now)
    time.sleep(LEASE + 0.05)
    taken = two.take_lease("b", LEASE)
    assert taken.held_by("b") and taken.epoch == 2
    with pytest.raises(Fenced):
        one.claim_due_held(now, 10, Fence("a", 1))
    claimed, _ = two.claim_due_held(now, 10, Fence("b", 2))
    assert len(claimed) == 1


def test_a_released_lease_is_taken_at_once(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    one.take_lease("a", 30)
    assert one.release_lease(Fence("a", 1))
    assert not one.release_lease(Fence("a", 1))  # not its own any more
    assert two.take_lease("b", 30).held_by("b")
    assert two.lease().epoch == 2


def test_only_the_holder_records_the_holds_it_has_applied(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    one.take_lease("a", 30)
    at = one.db_time()
    assert one.see_holds(Fence("a", 1), at)
    assert not one.see_holds(Fence("a", 1), at - 1)  # never backwards
    assert not two.see_holds(Fence("b", 1), at + 1)  # not the holder
    assert two.lease().holds_seen == at
