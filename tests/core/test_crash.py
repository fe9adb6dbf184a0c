"""The no-double-send promise across a crash, and the store deciding the claim:
a hold another process wrote, two claimers on one post."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from switchboard.model import NewPost
from switchboard.poststates import PostOrigin, PostState
from switchboard.store import Store
from tests.core.rig import START, Rig, build_core, channel_configs, drive

MINUTE = 60.0


async def declare_elsewhere(rig: Rig, channel: str) -> int:
    """A hold written straight into the store by another process (a second node):
    this process's gate never hears of it."""
    other = await Store.open(rig.tmp / "switchboard.db")
    try:
        return await other.declare(
            title="Declared on the other node", runbook="outage", severity="major",
            channels=[channel], suppress=["marketing"], reason=None, source="manual",
            signal_key=None, signal=None, actor="ops", now=rig.now)
    finally:
        await other.close()


@drive
async def test_a_crash_between_sending_and_the_answer_leaves_the_post_unknown_never_resent(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        rig.social.before_answer = asyncio.Event()
        post = await rig.schedule("social", "Weekend offer", at=10 * MINUTE)
        await rig.advance(10 * MINUTE)
        assert rig.social.attempts == [post]  # started, the platform has not answered
        assert (await rig.post(post)).state == "sending"
        core = await rig.crash()
        assert core.recovered == {"requeued": 0, "unknown": 1, "not_sent": 0}
        assert (await rig.post(post)).state == "unknown"
        await rig.advance(3 * 60 * MINUTE)
        assert core.social.attempts == []  # the new process never tried it again
        history = [(e["from"], e["to"]) for e in
                   await rig.store.post_history(post)]
        assert history[-2:] == [("queued", "sending"), ("sending", "unknown")]


@drive
async def test_a_post_claimed_but_not_started_at_a_crash_goes_out_once_after_it(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        rig.social.before_start = asyncio.Event()
        first = await rig.schedule("social", "First", at=10 * MINUTE)
        second = await rig.schedule("social", "Second", at=10 * MINUTE)
        await rig.advance(10 * MINUTE)
        assert await rig.states([first, second]) == ["sending", "queued"]
        core = await rig.crash(down_for=MINUTE)
        assert core.recovered == {"requeued": 1, "unknown": 1, "not_sent": 0}
        await rig.advance(MINUTE)
        assert await rig.states([first, second]) == ["unknown", "published"]
        assert [s.post_id for s in core.social.sent] == [second]


@drive
async def test_an_immediate_send_cut_off_by_a_crash_fails_instead_of_going_out_late(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        rig.social.before_start = asyncio.Event()
        posts = await rig.core.publisher.submit([("social", "Now"), ("social", "Also now")],
                                                "ops", timeout=0.01, immediate=True)
        assert [p.state for p in posts] == ["sending", "queued"]
        core = await rig.crash()
        assert core.recovered == {"requeued": 0, "unknown": 1, "not_sent": 1}
        await rig.advance(MINUTE)
        assert await rig.states([p.id for p in posts]) == ["unknown", "failed"]
        assert core.social.attempts == []


@drive
async def test_a_restart_keeps_the_channels_held_and_ends_the_cooldown_on_time(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        during = await rig.schedule("web", "During", at=10 * MINUTE)
        cooldown = await rig.schedule("web", "In the cooldown", at=50 * MINUTE)
        incident = await rig.declare()
        await rig.advance(5 * MINUTE)
        await rig.crash()
        await rig.advance(15 * MINUTE)
        assert (await rig.post(during)).state == "suppressed"
        await rig.resolve(incident)
        await rig.crash()  # in the cooldown (until +50m)
        assert rig.core.gate.controlling("web", rig.now) == [incident]
        await rig.advance(29 * MINUTE)
        assert await rig.states([during, cooldown]) == ["suppressed", "scheduled"]
        await rig.advance(40 * MINUTE)
        assert await rig.states([during, cooldown]) == ["published", "published"]
        assert [p for p, _, _ in rig.published("web") if p in (during, cooldown)] == [
            during, cooldown]


@drive
async def test_a_due_post_on_a_channel_another_process_holds_is_suppressed_not_sent(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        post = await rig.schedule("web", "Offer", at=10 * MINUTE)
        incident = await declare_elsewhere(rig, "web")
        assert rig.core.gate.decide("web", "marketing", rig.now).allowed  # not seen here
        await rig.advance(10 * MINUTE)
        stored = await rig.post(post)
        assert (stored.state, stored.incident_id) == ("suppressed", incident)
        assert rig.published("web") == []
        assert rig.gauge("posts_suppressed_total", channel="web") == 1


@drive
async def test_the_claim_checks_the_holds_in_its_transaction_for_a_post_already_queued(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        rig.social.before_start = asyncio.Event()
        first = await rig.schedule("social", "First", at=10 * MINUTE)
        second = await rig.schedule("social", "Second", at=10 * MINUTE)
        await rig.advance(10 * MINUTE)
        assert await rig.states([first, second]) == ["sending", "queued"]
        incident = await declare_elsewhere(rig, "social")
        rig.social.release()
        await rig.idle()
        # The first was claimed before the hold existed; the second's claim saw it.
        assert await rig.states([first, second]) == ["published", "suppressed"]
        assert rig.social.attempts == [first]
        assert (await rig.post(second)).incident_id == incident


@drive
async def test_of_two_claimers_on_one_post_one_sends_and_the_loser_never_does(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        other = await build_core(rig.tmp / "other", rig.timer, rig.context,
                                 channel_configs(rig.tmp / "other"), timedelta(minutes=10),
                                 database=rig.tmp / "switchboard.db")
        try:
            ids = await rig.store.add_posts(
                [NewPost("social", "operational", f"Update {i}", rig.now,
                         state=PostState.QUEUED, origin=PostOrigin.SEND_NOW)
                 for i in range(20)], "ops", rig.now)
            posts = await rig.store.posts(ids)
            # Both processes hand every post to their worker in the same moment.
            await asyncio.gather(rig.core.publisher.route(posts),
                                 other.publisher.route(posts))
            await rig.until(lambda: _all_published(rig, ids), "every post published")
            await rig.idle()
            mine = [s.post_id for s in rig.social.sent]
            theirs = [s.post_id for s in other.social.sent]
            assert sorted(mine + theirs) == ids  # each post sent once, by one of them
            assert not set(rig.social.attempts) & set(other.social.attempts)
        finally:
            await rig.stop(other)


async def _all_published(rig: Rig, ids: list[int]) -> bool:
    return set(await rig.states(ids)) == {"published"}


@drive
async def test_two_stores_claiming_the_same_posts_at_once_split_them(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        other = await Store.open(rig.tmp / "switchboard.db")
        try:
            ids = await rig.store.add_posts(
                [NewPost("web", "marketing", f"Offer {i}", START, state=PostState.QUEUED)
                 for i in range(50)], "marketing", rig.now)
            mine, theirs = await asyncio.gather(rig.store.claim_sending(ids, rig.now),
                                                other.claim_sending(ids, rig.now))
            assert sorted(mine.sending + theirs.sending) == ids
            assert not set(mine.sending) & set(theirs.sending)
            assert set(await rig.states(ids)) == {"sending"}
        finally:
            await other.close()
