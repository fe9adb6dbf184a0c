"""What people ask of incidents (declare, update, resolve, end a cooldown) and
the clear refusals they get, on the fake clock."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from switchboard.clock import rfc3339
from switchboard.incidents import incident_json, parse_incident_id
from switchboard.refusals import Refused
from tests.core.rig import OUTAGE, START, Rig, disk_full, drive, fail_once

MINUTE = 60.0
TWO_PERSON = OUTAGE.replace("name: outage", "name: careful").replace(
    "title: Outage", "title: Careful\napproval: two-person")


@drive
async def test_a_declaration_with_a_mistake_is_refused_and_changes_nothing(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incidents = rig.incidents
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"runbook": "nope"}, 422, "no runbook named 'nope' (runbooks: outage)"),
            ({"channels": ["web", "fax"]}, 404, "no channel named 'fax'"),
            ({"title": "  "}, 400, "title must not be empty"),
            ({"severity": "apocalyptic"}, 422, "unknown severity 'apocalyptic'"),
        ]
        for changes, status, message in cases:
            ask = {"runbook": "outage", "title": "Lines down", "actor": "ops", **changes}
            with pytest.raises(Refused, match=re.escape(message)) as refused:
                await incidents.declare(**ask)
            assert refused.value.status == status
        assert await rig.store.incidents(include_resolved=True) == []
        assert rig.core.gate.channels_under_control(rig.now) == set()


@drive
async def test_a_channel_listed_twice_is_held_once(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare(channels=["web", "web", "social"])
        assert [(h.channel, h.incident_id) for h in sorted(await rig.store.holds(),
                                                           key=lambda h: h.channel)] == [
            ("social", incident), ("web", incident)]


@drive
async def test_resolving_twice_and_ending_a_cooldown_that_is_not_there_are_refused(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        with pytest.raises(Refused, match="is active: resolve it first"):
            await rig.incidents.release(incident, actor="ops", reason="done")
        await rig.resolve(incident)
        with pytest.raises(Refused, match="already resolved"):
            await rig.incidents.resolve(incident, actor="ops")
        with pytest.raises(Refused, match="reason must not be empty"):
            await rig.incidents.release(incident, actor="ops", reason=" ")
        await rig.advance(30 * MINUTE)
        with pytest.raises(Refused, match="has no cooldown to end"):
            await rig.incidents.release(incident, actor="ops", reason="done")


@drive
async def test_the_listing_shows_active_and_cooling_incidents_or_everything(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        done = await rig.declare(title="Over")
        await rig.resolve(done)
        await rig.advance(30 * MINUTE)
        cooling = await rig.declare(title="Cooling")
        await rig.resolve(cooling)
        active = await rig.declare(title="Live")
        assert [i.id for i in await rig.incidents.listing(False)] == [active, cooling]
        assert [i.id for i in await rig.incidents.listing(True)] == [active, cooling, done]
        shown = incident_json(await rig.store.incident(cooling))  # type: ignore[arg-type]
        assert (shown["id"], shown["state"], shown["in_cooldown"]) == (
            f"INC-{cooling}", "resolved", True)
        assert shown["cooldown_until"] == rfc3339(START + 60 * MINUTE)
        assert parse_incident_id(f" inc-{active} ") == active
        with pytest.raises(Refused, match="bad incident id"):
            parse_incident_id("INC-x1")


@drive
async def test_an_update_that_cannot_go_out_as_written_is_refused(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        with pytest.raises(Refused, match="text is 300 characters as channel web counts them; "
                                          "it allows at most 280"):
            await rig.incidents.update(incident, "x" * 300, "ops")
        internal = await rig.declare(title="Ops only", channels=["ops-chat"])
        with pytest.raises(Refused, match="has no public channel to post to"):
            await rig.incidents.update(internal, "hello", "ops")
        await rig.resolve(incident)
        with pytest.raises(Refused, match="is resolved; post with `post send`"):
            await rig.incidents.update(incident, "late news", "ops")
        live = await rig.declare(title="Live")
        await rig.core.publisher.replace_channels(
            {c: ch for c, ch in rig.core.publisher.channels().items() if c != "social"})
        with pytest.raises(Refused, match="channel social is not configured any more"):
            await rig.incidents.update(live, "news", "ops")
        assert not [t for t in rig.texts("web") if t in ("late news", "news", "x" * 300)]


@drive
async def test_a_two_person_runbooks_update_waits_for_approval_instead_of_going_out(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, {"careful": TWO_PERSON}) as rig:
        incident = await rig.declare(runbook="careful")
        posts = await rig.incidents.update(incident, "Trains resume at noon", "ops")
        await rig.advance(10 * MINUTE)
        assert {p.state for p in posts} == {"pending_approval"}
        assert await rig.states([p.id for p in posts]) == ["pending_approval"] * 2
        assert "Trains resume at noon" not in rig.texts("web")
        assert "update_pending" in [e.event for e in await rig.store.timeline(incident)]


@drive
async def test_a_release_the_store_cannot_take_is_tried_again(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        post = await rig.schedule("web", "Offer", at=10 * MINUTE)
        incident = await rig.declare()
        await rig.advance(15 * MINUTE)
        await rig.resolve(incident)
        fail_once(rig.store, "move_held", disk_full)
        await rig.advance(30 * MINUTE)  # the end of the cooldown: moving the held posts fails
        events = [e.event for e in await rig.store.timeline(incident)]
        assert "channels_released" not in events
        assert not (await rig.incidents._get(incident)).held_done
        assert (await rig.post(post)).state == "suppressed"  # still held, never sent early
        await rig.advance(30)
        assert await rig.store.holds() == []
        assert (await rig.incidents._get(incident)).held_done
        assert (await rig.post(post)).state == "published"
        assert rig.published("web")[-1][2] == START + 45 * MINUTE + 30


@drive
async def test_an_auto_resolve_pending_at_a_crash_still_happens_after_it(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        await rig.store.set_incident_fields(incident, auto_resolve_at=START + 10 * MINUTE)
        await rig.crash(down_for=MINUTE)
        await rig.advance(5 * MINUTE)
        assert (await rig.store.incident(incident)).state == "active"  # type: ignore[union-attr]
        await rig.advance(5 * MINUTE)
        resolved = await rig.store.incident(incident)
        assert resolved is not None and (resolved.state, resolved.resolved_by) == (
            "resolved", "feed")


@drive
async def test_a_handover_a_crash_prevented_is_sent_after_it(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()  # the handover is armed for now, not yet run
        await rig.crash()
        await rig.advance(MINUTE)
        assert rig.texts("ops-chat")[0].startswith(f"INC-{incident} declared: Lines down.")
        assert len(rig.texts("web")) == 1  # the holding statement, once


@drive
async def test_a_release_tried_again_still_tells_ops_about_the_posts_held_for_review(
        tmp_path: Path) -> None:
    review = OUTAGE.replace("held_posts: reschedule", "held_posts: review")
    async with Rig(tmp_path, {"outage": review}) as rig:
        post = await rig.schedule("web", "Offer", at=10 * MINUTE)
        incident = await rig.declare()
        await rig.advance(15 * MINUTE)
        await rig.resolve(incident)
        # The held post is moved, then marking the incident done fails.
        failed = fail_once(rig.store, "finish_cooldown", disk_full)
        await rig.advance(31 * MINUTE)  # the release fails, then succeeds 30 s later
        assert failed == [1]
        assert (await rig.post(post)).state == "held"
        released = [e.detail for e in await rig.store.timeline(incident)
                    if e.event == "channels_released"]
        assert released == [{"held_posts": "review", "held": 1}]
        assert any("1 held post is waiting for review" in t for t in rig.texts("ops-chat"))


@drive
async def test_two_resolutions_at_once_resolve_once_and_refuse_the_other(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        outcomes = await asyncio.gather(
            *(rig.incidents.resolve(incident, actor=f"ops-{n}") for n in range(2)),
            return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, Refused)]
        assert len(refused) == 1 and refused[0].status == 409
        resolutions = [e for e in await rig.store.timeline(incident) if e.event == "resolved"]
        assert len(resolutions) == 1
