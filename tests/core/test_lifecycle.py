"""An incident's whole life on the fake clock: declaration, suppression,
resolution, cooldown and each held-post policy; overlapping incidents."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from switchboard.incidents import cooldown
from tests.core.rig import OUTAGE, START, Rig, drive

MINUTE = 60.0


def outage(policy: str) -> dict[str, str]:
    return {"outage": OUTAGE.replace("held_posts: reschedule", f"held_posts: {policy}")}


async def marketing_during_the_incident(rig: Rig) -> dict[str, list[int]]:
    """Posts due while the incident declared at +2m is live, and one due in its
    cooldown (resolved at +30m, cooldown to +60m), one of them expiring first."""
    web = [await rig.schedule("web", f"Offer {i}", at=m * MINUTE) for i, m in
           enumerate((10, 15, 20), start=1)]
    social = [await rig.schedule("social", f"Social offer {i}", at=m * MINUTE)
              for i, m in enumerate((10, 25), start=1)]
    cooldown = [await rig.schedule("web", "Offer in cooldown", at=40 * MINUTE)]
    # One expires in the cooldown, one just after it: before its slot in the train.
    expiring = [await rig.schedule("web", "Lunch deal", at=14 * MINUTE,
                                   expires_at=START + 50 * MINUTE),
                await rig.schedule("web", "Flash sale", at=12 * MINUTE,
                                   expires_at=START + 62 * MINUTE)]
    return {"web": web, "social": social, "cooldown": cooldown, "expiring": expiring}


async def through_the_cooldown(rig: Rig) -> tuple[int, dict[str, list[int]]]:
    posts = await marketing_during_the_incident(rig)
    before = await rig.schedule("web", "Morning offer", at=1 * MINUTE)
    await rig.advance(2 * MINUTE)
    incident = await rig.declare()
    declared_at = rig.now
    await rig.advance(28 * MINUTE)
    suppressed = [p for ids in posts.values() if ids != posts["cooldown"] for p in ids]
    assert set(await rig.states(suppressed)) == {"suppressed"}
    await rig.resolve(incident)
    await rig.advance(20 * MINUTE)  # in the cooldown: marketing still held
    assert await rig.states(posts["cooldown"]) == ["suppressed"]
    for channel in ("web", "social"):
        marketing = [(p, at) for p, text, at in rig.published(channel)
                     if not text.startswith(("We know", "All clear"))]
        # Only the post due before the declaration went out, and before it.
        assert marketing == ([(before, START + MINUTE)] if channel == "web" else [])
        assert all(at < declared_at for _, at in marketing)
    return incident, posts


@drive
async def test_posts_due_in_an_incident_are_held_then_rescheduled_spaced_per_channel(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, outage("reschedule")) as rig:
        incident, posts = await through_the_cooldown(rig)
        release = START + 60 * MINUTE
        await rig.advance(release - rig.now)
        await rig.advance(30 * MINUTE)
        web = {p: at for p, _, at in rig.published("web")}
        social = {p: at for p, _, at in rig.published("social")}
        # Each channel's held posts in their old order, min_spacing (5m) apart from
        # the end of the cooldown; the channels do not wait for each other, and a
        # post that would expire before its slot leaves no gap in the train.
        held_web = [*posts["web"], *posts["cooldown"]]
        assert [web[p] for p in held_web] == [release + i * 5 * MINUTE for i in range(4)]
        assert [social[p] for p in posts["social"]] == [release, release + 5 * MINUTE]
        # Expired before the end of the cooldown or before its slot: never sent.
        assert await rig.states(posts["expiring"]) == ["expired", "expired"]
        assert not set(posts["expiring"]) & set(web)
        assert rig.core.gate.channels_under_control(rig.now) == set()
        timeline = await rig.store.timeline(incident)
        released = next(e for e in timeline if e.event == "channels_released")
        assert released.detail == {"held_posts": "reschedule", "rescheduled": 6, "expired": 2}


@drive
async def test_held_posts_are_dropped_at_the_end_of_the_cooldown_under_drop(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, outage("drop")) as rig:
        _, posts = await through_the_cooldown(rig)
        await rig.advance(2 * 60 * MINUTE)
        every = [p for ids in posts.values() for p in ids]
        assert set(await rig.states(every)) == {"dropped"}
        sent = {p for channel in ("web", "social") for p, _, _ in rig.published(channel)}
        assert not sent & set(every)


@drive
async def test_held_posts_wait_for_a_person_under_review_and_ops_is_told(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, outage("review")) as rig:
        incident, posts = await through_the_cooldown(rig)
        await rig.advance(2 * 60 * MINUTE)
        every = [p for ids in posts.values() for p in ids]
        assert set(await rig.states(every)) == {"held"}
        sent = {p for channel in ("web", "social") for p, _, _ in rig.published(channel)}
        assert not sent & set(every)
        notice = rig.texts("ops-chat")[-1]
        assert notice.startswith(f"INC-{incident} (Lines down): channels back with marketing; "
                                 "8 held posts are waiting for review")
        # The channels are back with marketing: a new post goes out on time.
        later = await rig.schedule("web", "After the review", at=rig.now - START + MINUTE)
        await rig.advance(MINUTE)
        assert (await rig.post(later)).state == "published"


@drive
async def test_the_holding_statement_and_all_clear_go_out_on_every_public_channel(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        await rig.advance(MINUTE)
        await rig.resolve(incident)
        await rig.advance(MINUTE)
        for channel in ("web", "social"):
            assert rig.texts(channel) == ["We know: Lines down", "All clear: Lines down"]
        assert rig.texts("ops-chat")[0] == (f"INC-{incident} declared: Lines down. ops has "
                                            "control of web, social; marketing posts are held.")


@drive
async def test_a_post_due_before_the_declaration_goes_out_on_time(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        early = await rig.schedule("social", "Early bird", at=5 * MINUTE)
        await rig.advance(5 * MINUTE)
        await rig.declare()
        await rig.advance(30 * MINUTE)
        assert (await rig.post(early)).state == "published"
        assert rig.published("social")[0] == (early, "Early bird", START + 5 * MINUTE)


@drive
async def test_a_send_waiting_to_start_when_the_incident_is_declared_never_starts(
        tmp_path: Path) -> None:
    """The gate is asked again at the true start: a post handed to its channel
    before the declaration but not yet started is suppressed, not sent."""
    async with Rig(tmp_path) as rig:
        rig.social.before_start = asyncio.Event()
        post = await rig.schedule("social", "Weekend offer", at=10 * MINUTE)
        await rig.advance(10 * MINUTE)
        assert rig.social.attempts == [post]  # handed over, waiting to start
        incident = await rig.declare()
        rig.social.release()
        await rig.idle()
        stored = await rig.post(post)
        assert (stored.state, stored.incident_id) == ("suppressed", incident)
        assert all(s.post_id != post for s in rig.social.sent)
        assert rig.gauge("posts_suppressed_total", channel="social") == 1


@drive
async def test_overlapping_incidents_give_a_channel_back_only_when_both_are_done(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        shared = await rig.schedule("web", "Offer on web", at=10 * MINUTE)
        alone = await rig.schedule("social", "Offer on social", at=10 * MINUTE)
        first = await rig.declare(title="Signal failure")
        await rig.advance(5 * MINUTE)
        second = await rig.declare(title="Website down", channels=["web"])
        await rig.advance(10 * MINUTE)
        assert await rig.states([shared, alone]) == ["suppressed", "suppressed"]
        await rig.resolve(first)
        await rig.advance(30 * MINUTE)  # the first's cooldown ends: social is free
        assert (await rig.post(alone)).state == "published"
        assert rig.core.gate.controlling("web", rig.now) == [second]
        assert rig.core.gate.controlling("social", rig.now) == []
        # Released by the first, the web post is held again by the second.
        stored = await rig.post(shared)
        assert (stored.state, stored.incident_id) == ("suppressed", second)
        await rig.resolve(second)
        second_done = rig.now + 30 * MINUTE
        await rig.advance(60 * MINUTE)
        web = [(p, at) for p, _, at in rig.published("web") if p == shared]
        assert web == [(shared, second_done)]  # once, after both incidents are done
        assert rig.core.gate.channels_under_control(rig.now) == set()


@pytest.mark.parametrize("policy", ["reschedule", "drop", "review"])
@drive
async def test_ending_a_cooldown_early_applies_the_policy_at_once(tmp_path: Path,
                                                                  policy: str) -> None:
    async with Rig(tmp_path, outage(policy)) as rig:
        post = await rig.schedule("web", "Offer", at=10 * MINUTE)
        incident = await rig.declare()
        await rig.advance(15 * MINUTE)
        await rig.resolve(incident)
        ended = await rig.incidents.release(incident, actor="ops", reason="all fine")
        await rig.advance(MINUTE)
        assert ended.held_done and ended.cooldown_until == START + 15 * MINUTE
        expected = {"reschedule": "published", "drop": "dropped", "review": "held"}[policy]
        assert (await rig.post(post)).state == expected


@drive
async def test_held_posts_released_in_parts_are_all_counted_and_spaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cooldown, "RELEASE_PART", 10)  # 25 posts: three parts
    async with Rig(tmp_path) as rig:
        posts = [await rig.schedule("web", f"Offer {n}", at=10 * MINUTE + n) for n in range(25)]
        incident = await rig.declare()
        await rig.advance(15 * MINUTE)
        await rig.resolve(incident)
        await rig.advance(30 * MINUTE)
        [released] = [e.detail for e in await rig.store.timeline(incident)
                      if e.event == "channels_released"]
        assert released == {"held_posts": "reschedule", "rescheduled": 25, "expired": 0}
        dues = sorted([(await rig.post(p)).due_at for p in posts])
        assert [b - a for a, b in itertools.pairwise(dues)] == [5 * MINUTE] * 24
