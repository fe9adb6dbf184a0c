"""The leader lease on a real PostgreSQL, each daemon's monotonic clock a fake.

The lease's own times are the database's (real, short leases here); the
self-fence runs on the fake monotonic clock, moved by the test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from switchboard.leadership import (
    CHANNEL,
    RELEASED,
    SEEN_INCIDENT,
    LeaseKeeper,
    Notices,
    SoleLeader,
    Timing,
)
from switchboard.metrics import Metrics
from switchboard.model import NewPost
from switchboard.poststates import PostState
from switchboard.roles import Confirmations
from switchboard.store import Fence, Fenced, SqliteStore, Store, StoreUnavailable
from switchboard.store.postgres import PostgresStore
from tests.postgres import postgres_dsn, postgres_server

__all__ = ["postgres_dsn", "postgres_server"]

SHORT = Timing(renew_every=0.1, lease=0.6, fence_after=0.4, poll_every=0.1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Node:
    """One daemon's keeper, with what its callbacks saw."""

    def __init__(self, store: Store, name: str, clock: Clock, timing: Timing = SHORT) -> None:
        self.keeper = LeaseKeeper(store, Metrics(CollectorRegistry()), holder=name,
                                  monotonic=clock, timing=timing)
        self.events: list[tuple[str, int]] = []

    async def gained(self, fence: Fence) -> None:
        self.events.append(("gained", fence.epoch))

    async def lost(self, fence: Fence) -> None:
        self.events.append(("lost", fence.epoch))

    async def begin(self) -> None:
        # One round now, callbacks set; the background loops are not started:
        # each test drives the rounds itself.
        self.keeper._on_gain, self.keeper._on_lose = self.gained, self.lost
        await self.keeper.step()


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def run(dsn: str, test: Callable[[Store, Store], Awaitable[None]]) -> None:
    async def main() -> None:
        first = await Store.over(await asyncio.to_thread(PostgresStore.open, dsn))
        second = await Store.over(await asyncio.to_thread(PostgresStore.open, dsn))
        try:
            await test(first, second)
        finally:
            await first.close()
            await second.close()
    asyncio.run(main())


def test_the_first_daemon_leads_at_epoch_one_and_a_second_stands_by(postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        a, b = Node(one, "a", clock), Node(two, "b", clock)
        await a.begin()
        await b.begin()
        assert (a.keeper.role, a.keeper.epoch, a.keeper.may_act()) == ("leader", 1, True)
        assert (b.keeper.role, b.keeper.epoch, b.keeper.may_act()) == ("standby", 1, False)
        assert a.events == [("gained", 1)] and b.events == []
        assert a.keeper.metrics.leader._value.get() == 1  # type: ignore[attr-defined]
    run(postgres_dsn, test)


def test_renewing_keeps_the_lease_and_its_epoch_past_its_length(postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        a, b = Node(one, "a", clock), Node(two, "b", clock)
        await a.begin()
        for _ in range(8):  # 0.8 s of real time: longer than the 0.6 s lease
            await asyncio.sleep(0.1)
            clock.now += 0.1
            await a.keeper.step()
            await b.keeper.step()
        assert a.keeper.may_act() and a.keeper.epoch == 1
        assert b.keeper.role == "standby" and b.events == []
        assert a.events == [("gained", 1)]
    run(postgres_dsn, test)


def test_a_standby_takes_over_a_lapsed_lease_one_epoch_up(postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        a, b = Node(one, "a", clock), Node(two, "b", clock)
        await a.begin()
        await b.begin()
        await asyncio.sleep(SHORT.lease + 0.05)  # the leader does not renew (frozen)
        await b.keeper.step()
        assert (b.keeper.role, b.keeper.epoch) == ("leader", 2)
        assert b.events == [("gained", 2)]
        await a.keeper.step()  # it wakes: the lease is another's
        assert a.keeper.role == "standby" and a.events == [("gained", 1), ("lost", 1)]
    run(postgres_dsn, test)


def test_a_leader_unrenewed_for_the_fence_time_stops_before_its_lease_can_pass(
        postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        a, b = Node(one, "a", clock), Node(two, "b", clock)
        await a.begin()
        clock.now += SHORT.fence_after - 0.01
        assert a.keeper.may_act()
        clock.now += 0.02
        assert not a.keeper.may_act()  # at once, before any callback ran
        await a.keeper.check_fence()
        assert a.events == [("gained", 1), ("lost", 1)]
        await b.begin()  # the lease itself has not lapsed: nobody else leads yet
        assert b.keeper.role == "standby"
        lease = await one.lease()
        assert lease.held_by("a") and lease.epoch == 1
    run(postgres_dsn, test)


def test_a_leader_that_fenced_itself_starts_a_new_term_when_it_renews_again(
        postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        a = Node(one, "a", clock)
        await a.begin()
        clock.now += SHORT.fence_after + 0.1
        await a.keeper.step()  # renewed in time for the lease, not for the fence
        # Lost and gained again: what it had claimed is read afresh (recover), never sent.
        assert a.events == [("gained", 1), ("lost", 1), ("gained", 1)]
        assert a.keeper.may_act()
    run(postgres_dsn, test)


def test_a_slow_start_as_leader_does_not_fence_the_new_leader(postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        a = Node(one, "a", clock, Timing())

        async def slow_start(fence: Fence) -> None:
            a.events.append(("gained", fence.epoch))
            clock.now += 9.0  # recovering and loading a large store
        a.keeper._on_gain, a.keeper._on_lose = slow_start, a.lost
        await a.keeper.step()
        assert a.keeper.may_act()
        await a.keeper.step()
        assert a.events == [("gained", 1)]
    run(postgres_dsn, test)


def due_post(now: float) -> NewPost:
    return NewPost(channel="outbox", kind="marketing", text="offer", due_at=now - 1)


def test_a_fenced_holders_claims_are_refused_in_their_own_transaction(
        postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        a, b = Node(one, "a", clock), Node(two, "b", clock)
        await a.begin()
        old = a.keeper.fence()
        now = time.time()
        [queued] = await one.add_posts([due_post(now)], "test", now)
        claimed, _ = await one.claim_due_held(now, 10, old)
        assert [p.id for p in claimed] == [queued]
        [due] = await one.add_posts([due_post(now)], "test", now)
        await asyncio.sleep(SHORT.lease + 0.05)
        await b.keeper.step()  # takes over: epoch 2
        # The old leader, woken, still believes its fence: the store refuses it.
        with pytest.raises(Fenced):
            await one.claim_due_held(now, 10, old)
        with pytest.raises(Fenced):
            await one.claim_sending([queued], now, old)
        with pytest.raises(Fenced):
            await one.claim_step(1, "handover", 0, now, old)
        with pytest.raises(Fenced):  # a standby's fence (epoch 0) never claims
            await two.claim_due_held(now, 10, a.keeper.fence())
        assert [(p.id, p.state) for p in await one.posts([queued, due])] == [
            (queued, PostState.QUEUED), (due, PostState.SCHEDULED)]
        assert await two.claim_step(1, "handover", 0, now, b.keeper.fence())
        assert not await two.claim_step(1, "handover", 0, now, b.keeper.fence())
        assert (await two.claim_sending([queued], now, b.keeper.fence())).sending == [queued]
    run(postgres_dsn, test)


def test_a_graceful_stop_hands_the_lease_over_at_once_and_notifies_the_standby(
        postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        long = Timing()  # a 10 s lease: only the release can pass it this fast
        a, b = Node(one, "a", clock, long), Node(two, "b", clock, long)
        await a.begin()
        await b.begin()
        heard = asyncio.Event()
        notices = Notices(postgres_dsn, {RELEASED: lambda _: heard.set()})
        notices.start()
        await asyncio.wait_for(notices.connected.wait(), 5)
        await a.keeper.stop()
        assert a.events == [("gained", 1), ("lost", 1)]
        await asyncio.wait_for(heard.wait(), 2)
        await b.keeper.step()
        assert (b.keeper.role, b.keeper.epoch) == ("leader", 2)
        await notices.stop()
    run(postgres_dsn, test)


def test_a_declaration_at_the_standby_waits_for_the_leader_to_apply_its_holds(
        postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        a, b = Node(one, "a", clock, Timing()), Node(two, "b", clock, Timing())
        await a.begin()
        await b.begin()
        waiting = asyncio.create_task(Confirmations(b.keeper, two).confirm_holds(1))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # the leader has not read the holds yet
        assert await one.see_holds(a.keeper.fence(), await one.db_time())
        await asyncio.wait_for(waiting, 1)
    run(postgres_dsn, test)


def test_a_declaration_at_the_standby_is_answered_by_the_leaders_notice_for_its_incident(
        postgres_dsn: str) -> None:
    """The leader names the incident whose holds its gate took, in a notice sent
    only while its lease is live: the standby's caller waits for its own
    incident's notice, not another's, and a deposed leader's never comes."""
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        a, b = Node(one, "a", clock, Timing()), Node(two, "b", clock, Timing())
        await a.begin()
        await b.begin()
        confirmations = Confirmations(b.keeper, two)
        notices = Notices(postgres_dsn, {SEEN_INCIDENT: confirmations.saw_incident})
        notices.start()
        await asyncio.wait_for(notices.connected.wait(), 5)
        waiting = asyncio.create_task(confirmations.confirm_holds(7))
        leader = a.keeper.holder
        # Any session may NOTIFY: one that does not name the leader is a wake-up only,
        # and no payload stops the listening (notices arrive in commit order).
        await one.notify(CHANNEL, f"{SEEN_INCIDENT} 7 someone")
        await one.notify(CHANNEL, f"{SEEN_INCIDENT} ² {leader}")
        assert not await two.notify_if_leading(Fence(leader, 0), CHANNEL,
                                               f"{SEEN_INCIDENT} 7 {leader}")
        assert await one.notify_if_leading(a.keeper.fence(), CHANNEL,
                                           f"{SEEN_INCIDENT} 8 {leader}")
        await asyncio.wait_for(until(lambda: 8 in confirmations.seen_incidents), 2)
        # The waiter woke for 8 too (it clears the event), and waits on for 7.
        await asyncio.wait_for(until(lambda: not confirmations.seen.is_set()), 2)
        assert not waiting.done()
        assert 7 not in confirmations.seen_incidents
        assert await one.notify_if_leading(a.keeper.fence(), CHANNEL,
                                           f"{SEEN_INCIDENT} 7 {leader}")
        await asyncio.wait_for(waiting, 1)
        await notices.stop()
    run(postgres_dsn, test)


def test_a_declaration_at_the_standby_is_acknowledged_at_once_without_a_live_leader(
        postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        a, b = Node(one, "a", clock), Node(two, "b", clock)
        await a.begin()
        await b.begin()
        await asyncio.sleep(SHORT.lease + 0.05)  # the leader froze; nobody took over yet
        started = time.monotonic()
        await Confirmations(b.keeper, two).confirm_holds(1)
        assert time.monotonic() - started < 0.2
    run(postgres_dsn, test)


def test_on_sqlite_the_one_daemon_always_leads_at_epoch_one(tmp_path: Path) -> None:
    sole: Any = SoleLeader()
    assert (sole.role, sole.epoch, sole.may_act(), sole.fence()) == ("leader", 1, True, None)
    store = SqliteStore.open(tmp_path / "switchboard.db")
    try:
        lease = store.take_lease("x", 10)
        assert lease.held_by("x") and lease.epoch == 1
        assert store.claim_due_held(time.time(), 10, Fence("x", 1)) == ([], [])
    finally:
        store.close()


def test_a_leader_frozen_inside_a_claim_does_not_hold_the_takeover_for_ever(
        postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        a, b = Node(one, "a", clock), Node(two, "b", clock)
        await a.begin()
        backend = one.backend
        assert isinstance(backend, PostgresStore)
        inside = asyncio.Event()
        loop = asyncio.get_running_loop()

        def frozen_claim() -> None:
            # The claim has read (FOR SHARE) the lease; then the process stops.
            with pytest.raises(StoreUnavailable), backend.transaction():
                backend._check_fence(a.keeper.fence())
                loop.call_soon_threadsafe(inside.set)
                time.sleep(7)
                backend.claim_due(time.time(), 1)
        frozen = loop.run_in_executor(None, frozen_claim)
        await inside.wait()
        await asyncio.sleep(SHORT.lease + 0.05)
        started = time.monotonic()
        while b.keeper.role != "leader" and time.monotonic() - started < 6.5:
            await b.keeper.step()  # busy while the frozen claim holds the row
            await asyncio.sleep(0.2)
        assert b.keeper.role == "leader", "the takeover waited on the frozen claim"
        await frozen
    run(postgres_dsn, test)


def test_notices_come_back_after_their_connection_is_cut(postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        heard = asyncio.Event()
        notices = Notices(postgres_dsn, {RELEASED: lambda _: heard.set()})
        notices.start()
        await asyncio.wait_for(notices.connected.wait(), 5)
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            cut = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE query = 'LISTEN switchboard'").fetchall()
        assert cut == [(True,)]
        deadline = time.monotonic() + 5
        while notices.connected.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.wait_for(notices.connected.wait(), 5)  # listening again
        await one.notify(CHANNEL, RELEASED)
        await asyncio.wait_for(heard.wait(), 2)
        await notices.stop()
    run(postgres_dsn, test)


def test_without_a_notice_a_standby_finds_the_released_lease_by_polling(
        postgres_dsn: str) -> None:
    async def test(one: Store, two: Store) -> None:
        clock = Clock()
        long = Timing()
        a, b = Node(one, "a", clock, long), Node(two, "b", clock, long)
        await a.begin()
        await b.keeper.start(b.gained, b.lost)  # its loops run: a poll every second
        assert await one.release_lease(a.keeper.fence())  # and no NOTIFY
        released = time.monotonic()
        while b.keeper.role != "leader" and time.monotonic() - released < 3:
            await asyncio.sleep(0.05)
        assert b.keeper.role == "leader"
        assert time.monotonic() - released < long.poll_every + 0.5
        await b.keeper.stop()
    run(postgres_dsn, test)
