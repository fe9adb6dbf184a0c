"""The publisher on the fake clock when things go wrong: late posts, platform
errors, a failing store, a reload that replaces or removes a channel."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from switchboard.channels.base import ChannelError
from switchboard.poststates import PostState
from switchboard.store import StoreUnavailable
from tests.core.rig import START, Rig, Scripted, drive, fail_once

MINUTE = 60.0


def busy() -> Exception:
    return StoreUnavailable("busy", "database is locked")


@drive
async def test_a_post_due_longer_ago_than_max_lateness_is_missed_not_sent(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        post = await rig.schedule("web", "Breakfast offer", at=10 * MINUTE)
        await rig.advance(5 * MINUTE)
        await rig.crash(down_for=20 * MINUTE)  # back 15m after it was due
        await rig.advance(MINUTE)
        assert (await rig.post(post)).state == "missed"
        assert rig.published("web") == []


@drive
async def test_a_post_that_waits_behind_a_hung_send_past_its_lateness_or_expiry_is_not_sent(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        rig.social.before_answer = asyncio.Event()
        first = await rig.schedule("social", "First", at=MINUTE)
        late = await rig.schedule("social", "Late", at=MINUTE)
        expiring = await rig.schedule("social", "Flash", at=MINUTE,
                                      expires_at=START + 5 * MINUTE)
        await rig.advance(MINUTE)
        await rig.advance(15 * MINUTE)  # the platform hangs for 15 minutes
        rig.social.release()
        await rig.idle()
        assert await rig.states([first, late, expiring]) == ["published", "missed", "expired"]
        assert rig.social.attempts == [first]


@drive
async def test_a_platform_error_fails_the_post_and_a_lost_answer_leaves_it_unknown(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        rig.social.failures += [
            ChannelError("503 from the platform", reason="server_error"),
            ChannelError("connection reset after the request", maybe_sent=True,
                         reason="network"),
            ValueError("a bug in the channel")]
        ids = [await rig.schedule("social", f"Offer {i}", at=MINUTE) for i in range(4)]
        await rig.advance(MINUTE)
        assert await rig.states(ids) == ["failed", "unknown", "failed", "published"]
        stored = await rig.post(ids[2])
        assert stored.error == "internal error: a bug in the channel"
        assert rig.gauge("posts_failed_total", channel="social", reason="server_error") == 1
        assert rig.social.last_error is None  # cleared by the send that went through


@drive
async def test_a_store_error_at_the_tick_pauses_dispatch_and_it_resumes_shortly(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        failed = fail_once(rig.store, "claim_due_held", busy)
        fail_once(rig.store, "mark_missed", lambda: RuntimeError("bug"))
        post = await rig.schedule("web", "Offer", at=MINUTE)
        await rig.advance(MINUTE + 5)
        assert failed == [1]
        # Two failed ticks, each tried again 2 s later.
        assert rig.published("web") == [(post, "Offer", START + MINUTE + 4)]


@drive
async def test_a_store_error_in_a_channels_claim_returns_its_posts_to_a_later_tick(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        fail_once(rig.store, "claim_sending", busy)
        post = await rig.schedule("web", "Offer", at=MINUTE)
        await rig.advance(MINUTE)
        assert (await rig.post(post)).state == "queued"  # orphaned, not lost
        await rig.advance(2)
        assert rig.published("web") == [(post, "Offer", START + MINUTE + 1)]


@drive
async def test_an_unexpected_error_in_a_channels_batch_gives_its_posts_back(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        fail_once(rig.store, "claim_sending", lambda: RuntimeError("bug"))
        post = await rig.schedule("web", "Offer", at=MINUTE)
        await rig.advance(MINUTE)
        assert (await rig.post(post)).state == "scheduled"  # given back
        await rig.advance(2)
        assert rig.published("web") == [(post, "Offer", START + MINUTE + 1)]


@drive
async def test_a_give_back_the_store_refuses_leaves_the_posts_to_the_next_tick(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        fail_once(rig.store, "claim_sending", lambda: RuntimeError("bug"))
        fail_once(rig.store, "transition", lambda: RuntimeError("still broken"))
        post = await rig.schedule("web", "Offer", at=MINUTE)
        await rig.advance(MINUTE)
        assert (await rig.post(post)).state == "queued"
        await rig.advance(2)
        assert (await rig.post(post)).state == "published"


@drive
async def test_a_failing_incident_note_does_not_undo_a_recorded_send(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        failed = fail_once(rig.store, "note_updates", lambda: RuntimeError("bug"), times=10)
        incident = await rig.declare()
        await rig.advance(MINUTE)
        assert failed  # the note was tried, and failed
        posts = await rig.store.list_posts(("published",), channel="web")
        assert [(p.text, p.incident_id) for p in posts] == [("We know: Lines down", incident)]


@drive
async def test_a_send_to_a_channel_no_longer_configured_fails_visibly(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        [post] = await rig.core.publisher.submit([("gone", "Hello")], "ops")
        assert (post.state, post.error) == ("failed", "channel gone is not configured")
        assert await rig.core.publisher.retract(replace(post, state=PostState.PUBLISHED), "ops",
                                                "test") == \
            f"post {post.id}: channel gone is not configured"
        await rig.core.publisher.notify(1, ["gone"], "nobody hears this", "test")
        assert await rig.store.list_posts(channel="gone") == [post]


@drive
async def test_a_reload_hands_a_replaced_channels_queue_to_its_new_worker(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        publisher = rig.core.publisher
        old = rig.social
        old.before_answer = asyncio.Event()
        first = await rig.schedule("social", "First", at=MINUTE)
        waiting = await rig.schedule("social", "Second", at=2 * MINUTE)
        taken = await rig.schedule("social", "Edited", at=2 * MINUTE)
        await rig.advance(2 * MINUTE)
        assert publisher.take_back(await rig.post(taken))  # out of the queue for an edit
        assert not publisher.take_back(await rig.post(first))  # already being sent
        new = Scripted(old.config, clock=rig.timer.now)
        channels = {**publisher.channels(), "social": new}
        reload = asyncio.create_task(publisher.replace_channels(channels))
        await rig.idle()
        assert not reload.done()  # the old worker finishes the send it is in
        old.release()
        await reload
        rig.core.channels["social"] = new
        await rig.idle()
        assert [s.post_id for s in old.sent] == [first]
        assert [s.post_id for s in new.sent] == [waiting]
        assert publisher.workers["web"].channel is channels["web"]  # kept as it was


@drive
async def test_a_reload_that_removes_a_channel_fails_its_queued_posts(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        publisher = rig.core.publisher
        rig.social.before_answer = asyncio.Event()
        first = await rig.schedule("social", "First", at=MINUTE)
        waiting = await rig.schedule("social", "Second", at=2 * MINUTE)
        await rig.advance(2 * MINUTE)
        without = {cid: ch for cid, ch in publisher.channels().items() if cid != "social"}
        reload = asyncio.create_task(publisher.replace_channels(without))
        await rig.idle()
        rig.social.release()
        await reload
        await rig.idle()
        assert await rig.states([first, waiting]) == ["published", "failed"]
        assert (await rig.post(waiting)).error == "channel social is not configured"


@drive
async def test_a_post_added_while_the_timer_reads_its_next_time_is_not_left_late(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        await rig.schedule("web", "Evening offer", at=60 * MINUTE)
        store, real = rig.store, rig.store.next_due
        added: list[int] = []

        async def next_due_then_a_new_post() -> float | None:
            stale = await real()  # the later time, read before the new post exists
            added.append(await rig.schedule("web", "Lunch offer", at=MINUTE))
            return stale

        store.next_due = next_due_then_a_new_post  # type: ignore[method-assign]
        await rig.core.publisher.arm()
        store.next_due = real  # type: ignore[method-assign]
        await rig.advance(2 * MINUTE)
        assert (await rig.post(added[0])).state == "published"
