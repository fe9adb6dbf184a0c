"""False alarms: a void gives the channels back at once, puts the held posts
back on the schedule (or up for review) and retracts what the incident posted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from switchboard.refusals import Refused
from tests.core.rig import OUTAGE, START, Rig, drive

MINUTE = 60.0
# The holding statement on web only: a send paused on social must not hold it up.
WEB_STATEMENT = OUTAGE.replace('    template: "We know: {{ incident.title }}"',
                               '    channels: [web]\n'
                               '    template: "We know: {{ incident.title }}"', 1)


@drive
async def test_a_void_reschedules_the_held_posts_and_retracts_the_incidents_posts(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        stale = await rig.schedule("web", "Old offer", at=10 * MINUTE)
        fresh = await rig.schedule("web", "Offer", at=12 * MINUTE)
        social = await rig.schedule("social", "Social offer", at=11 * MINUTE)
        later = await rig.schedule("web", "Later offer", at=13 * MINUTE)
        await rig.advance(2 * MINUTE)
        incident = await rig.declare()
        await rig.advance(13 * MINUTE)
        [update] = [p.id for p in await rig.incidents.update(incident, "Still on it", "ops")
                    if p.channel == "web"]
        await rig.advance(6 * MINUTE)  # at 21m: the 10m post is older than max_lateness
        voided = await rig.incidents.void(incident, actor="ops", reason="false alarm")
        await rig.advance(6 * MINUTE)
        assert voided.incident.state == "voided" and voided.incident.held_done
        assert voided.held == [stale]
        assert sorted(voided.rescheduled) == sorted([fresh, social, later])
        assert await rig.states([stale, fresh, social, later]) == [
            "held", "published", "published", "published"]
        # Back on the schedule spaced per channel (5m) from the void.
        web = {p: at for p, _, at in rig.published("web")}
        void_at = START + 21 * MINUTE
        assert (web[fresh], web[later]) == (void_at, void_at + 5 * MINUTE)
        # The holding statement and the update are retracted from both channels.
        retracted = [r["retract"] for r in rig.outbox("web") if "retract" in r]
        holding = next(p for p, t, _ in rig.published("web") if t.startswith("We know"))
        assert sorted(retracted) == sorted([holding, update])
        assert sorted(voided.retracted) == sorted([*retracted, *(
            int(r.removeprefix("scripted-")) for r in rig.social.retracted if r)])
        assert rig.core.gate.channels_under_control(rig.now) == set()
        assert rig.texts("ops-chat")[-1].startswith(
            f"INC-{incident} (Lines down) voided by ops: false alarm. Channels back with "
            "marketing; 4 holding statement(s)/update(s) retracted, 3 post(s) back on the "
            "schedule, 1 waiting for review")
        # Its timers are gone: no reminder, no escalation after the void.
        before = len(rig.texts("ops-chat"))
        await rig.advance(2 * 60 * MINUTE)
        assert len(rig.texts("ops-chat")) == before


@drive
async def test_a_post_suppressed_while_the_void_is_recorded_is_held_for_review(
        tmp_path: Path) -> None:
    """The void reads the posts it suppressed, then commits; a send that reaches its
    true start in between meets the gate still closed and is suppressed for the
    incident, in neither the void's plan nor its transaction."""
    async with Rig(tmp_path, {"outage": WEB_STATEMENT}) as rig:
        rig.social.before_start = asyncio.Event()
        straggler = await rig.schedule("social", "Offer", at=MINUTE)
        await rig.advance(MINUTE)  # claimed, paused before its true start
        assert (await rig.post(straggler)).state == "sending"
        incident = await rig.declare()
        store, commit = rig.store, rig.store.void

        async def suppressed() -> bool:
            return (await rig.post(straggler)).state == "suppressed"

        async def void_after_the_send_is_stopped(*args: Any, **kwargs: Any) -> bool:
            rig.social.release()
            await rig.until(suppressed, "the send stopped by the gate")
            return await commit(*args, **kwargs)

        store.void = void_after_the_send_is_stopped  # type: ignore[method-assign]
        voided = await rig.incidents.void(incident, actor="ops", reason="false alarm")
        await rig.advance(10 * MINUTE)
        assert (voided.held, voided.rescheduled) == ([], [])
        assert (await rig.post(straggler)).state == "held"
        moves = [(e["from"], e["to"], e["reason"]) for e in await store.post_history(straggler)]
        assert moves[-2:] == [
            ("sending", "suppressed", f"INC-{incident} holds the channel"),
            ("suppressed", "held", "suppressed while the void was recorded")]
        assert rig.published("social") == []


@drive
async def test_a_void_sends_a_post_that_would_expire_before_its_slot_to_review(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        first = await rig.schedule("social", "First", at=5 * MINUTE)
        expiring = await rig.schedule("social", "Flash", at=6 * MINUTE,
                                      expires_at=START + 12 * MINUTE)
        last = await rig.schedule("social", "Last", at=7 * MINUTE)
        await rig.advance(10 * MINUTE)
        voided = await rig.incidents.void(incident, actor="ops", reason="false alarm")
        assert voided.held == [expiring]
        await rig.advance(10 * MINUTE)
        sent = {p: at - START for p, _, at in rig.published("social")}
        # The train has no gap where the expiring post would have been.
        assert (sent[first], sent[last]) == (10 * MINUTE, 15 * MINUTE)
        assert (await rig.post(expiring)).state == "held"


@drive
async def test_a_void_keeps_up_the_updates_that_serve_an_overlapping_incident(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        real = await rig.declare(title="Real outage", channels=["web"])
        await rig.advance(MINUTE)
        false_alarm = await rig.declare(title="Spurious alert")
        await rig.advance(MINUTE)
        # An update to the web channel counts for both incidents that hold it.
        await rig.incidents.update(false_alarm, "We are looking into it", "ops")
        await rig.advance(MINUTE)
        voided = await rig.incidents.void(false_alarm, actor="ops", reason="spurious")
        await rig.idle()
        web_retracted = [r["retract"] for r in rig.outbox("web") if "retract" in r]
        assert web_retracted == []
        assert len(rig.social.retracted) == 2  # the false alarm's own social posts
        assert len(voided.retracted) == 2
        assert rig.core.gate.controlling("web", rig.now) == [real]


@drive
async def test_a_void_a_crash_cut_short_finishes_its_retractions_at_start_up(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        await rig.advance(MINUTE)
        # The void committed, then the process died before retracting anything.
        assert await rig.store.void(incident, actor="ops", reason="false alarm", now=rig.now,
                                    requeue=[], review=[])
        await rig.crash()
        await rig.advance(MINUTE)
        assert len([r for r in rig.outbox("web") if "retract" in r]) == 1
        assert (await rig.store.incident(incident)).held_done  # type: ignore[union-attr]


@drive
async def test_only_an_active_incident_can_be_voided_and_only_for_a_reason(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        with pytest.raises(Refused, match="reason must not be empty"):
            await rig.incidents.void(incident, actor="ops", reason="  ")
        await rig.resolve(incident)
        with pytest.raises(Refused, match="release INC-1"):
            await rig.incidents.void(incident, actor="ops", reason="oops")
        with pytest.raises(Refused, match="no incident INC-99"):
            await rig.incidents.void(99, actor="ops", reason="oops")
