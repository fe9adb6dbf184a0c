"""Runbook steps on the fake clock: reminders that wait for silence, notices,
repeating steps run once per occurrence (restarts included), failing steps."""

from __future__ import annotations

from pathlib import Path

from switchboard.channels.base import ChannelError
from tests.core.rig import OUTAGE, START, Rig, disk_full, drive, fail_once

MINUTE = 60.0
REMINDER = "no operational update in the last 30m"

RETRACTING = OUTAGE.replace("""steps:
  - name: holding-statement""", """steps:
  - name: retract-recent-offers
    at: 0m
    action: retract
    published_within: 30m
  - name: holding-statement""", 1)


def reminders(rig: Rig) -> list[float]:
    return [at for _, text, at in rig.published("ops-chat") if REMINDER in text]


async def runs(rig: Rig, incident: int, step: str) -> list[tuple[int, str]]:
    return [(o, r) for s, o, _, r in await rig.store.step_runs(incident) if s == step]


def escalation(incident_id: int, step: str, *rest: object) -> bool:
    """A store call about the escalate step (claim_step, finish_step)."""
    return step == "escalate"


@drive
async def test_an_update_within_the_interval_skips_the_reminder_and_silence_fires_it(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        overdue = {"incident": f"INC-{incident}"}
        await rig.advance(20 * MINUTE)
        await rig.incidents.update(incident, "Buses replace trains", "ops")
        await rig.advance(10 * MINUTE)  # the reminder at 30m: an update 10m ago
        assert await runs(rig, incident, "update-due") == [(0, "skipped")]
        assert reminders(rig) == []
        assert rig.gauge("operational_update_overdue", **overdue) == 0
        await rig.advance(30 * MINUTE)  # the reminder at 60m: silence since 20m
        assert await runs(rig, incident, "update-due") == [(0, "skipped"), (1, "ok")]
        assert reminders(rig) == [START + 60 * MINUTE]
        assert rig.gauge("operational_update_overdue", **overdue) == 1
        # The next update clears the overdue gauge.
        await rig.incidents.update(incident, "Trains running again soon", "ops")
        await rig.idle()
        assert rig.gauge("operational_update_overdue", **overdue) == 0
        assert [t for t in rig.texts("web") if "trains" in t.lower()] == [
            "Buses replace trains", "Trains running again soon"]


@drive
async def test_the_holding_statement_starts_the_first_interval_instead_of_filling_it(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        await rig.advance(30 * MINUTE)
        assert rig.texts("web") == ["We know: Lines down"]
        assert reminders(rig) == [START + 30 * MINUTE]
        assert rig.gauge("operational_update_overdue", incident=f"INC-{incident}") == 1


@drive
async def test_handover_and_escalation_notices_reach_ops_at_their_times(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        await rig.advance(61 * MINUTE)
        notices = [(text, at - START) for _, text, at in rig.published("ops-chat")
                   if REMINDER not in text]
        assert notices == [
            (f"INC-{incident} declared: Lines down. ops has control of web, social; "
             "marketing posts are held.", 0.0),
            (f"INC-{incident} open for an hour: Lines down", 60 * MINUTE)]
        assert await runs(rig, incident, "escalate") == [(0, "ok")]
        # Resolved: the steps still to come are not run.
        await rig.resolve(incident)
        await rig.advance(3 * 60 * MINUTE)
        assert await runs(rig, incident, "update-due") == [(0, "ok"), (1, "ok")]


@drive
async def test_a_repeating_step_runs_once_per_occurrence_even_when_asked_again(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        await rig.advance(95 * MINUTE)
        assert await runs(rig, incident, "update-due") == [(0, "ok"), (1, "ok"), (2, "ok")]
        # A second run of a finished occurrence (a timer fired twice) does nothing.
        await rig.core.steps.run(incident, "update-due", 1)
        await rig.idle()
        assert len(reminders(rig)) == 3
        # A restart arms the next occurrence and runs none of the finished ones again.
        await rig.crash()
        assert rig.gauge("operational_update_overdue", incident=f"INC-{incident}") == 1
        await rig.advance(30 * MINUTE)
        assert await runs(rig, incident, "update-due") == [
            (0, "ok"), (1, "ok"), (2, "ok"), (3, "ok")]
        assert await runs(rig, incident, "escalate") == [(0, "ok")]
        assert reminders(rig) == [START + m * MINUTE for m in (30, 60, 90, 120)]


@drive
async def test_occurrences_missed_while_down_run_once_not_in_a_burst(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        await rig.advance(35 * MINUTE)
        await rig.crash(down_for=95 * MINUTE)  # back at 130m: 60m, 90m and 120m missed
        await rig.advance(MINUTE)
        assert await runs(rig, incident, "update-due") == [(0, "ok"), (3, "ok")]
        assert reminders(rig) == [START + 30 * MINUTE, START + 130 * MINUTE]
        # The escalation due at 60m came due while down: it runs once, at start-up.
        assert await runs(rig, incident, "escalate") == [(0, "ok")]
        await rig.advance(20 * MINUTE)
        assert await runs(rig, incident, "update-due") == [(0, "ok"), (3, "ok"), (4, "ok")]


@drive
async def test_a_step_a_crash_cut_short_is_reported_not_run_again(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        incident = await rig.declare()
        await rig.advance(MINUTE)
        # Claimed, then the process died before it was recorded.
        assert await rig.store.claim_step(incident, "escalate", 0, rig.now)
        await rig.crash()
        await rig.advance(2 * 60 * MINUTE)
        assert await runs(rig, incident, "escalate") == [(0, "failed")]
        assert not [t for t in rig.texts("ops-chat") if "open for an hour" in t]
        assert any(t.startswith(f"INC-{incident}: runbook step escalate failed: interrupted "
                                "by a restart") for t in rig.texts("ops-chat"))


@drive
async def test_a_failing_step_is_recorded_and_reported_and_the_incident_goes_on(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        rig.social.failures.append(ChannelError("text refused", permanent=True,
                                                reason="rejected"))
        incident = await rig.declare()
        await rig.advance(MINUTE)
        assert await runs(rig, incident, "holding-statement") == [(0, "failed")]
        assert rig.texts("web") == ["We know: Lines down"]
        assert f"INC-{incident}: runbook step holding-statement failed: social: text refused" \
            in rig.texts("ops-chat")
        assert rig.gauge("runbook_steps_total", runbook="outage", action="post",
                         result="failed") == 1
        failed_at = rig.gauge("channel_last_error_timestamp_seconds", channel="social")
        assert failed_at == rig.now - MINUTE
        await rig.advance(30 * MINUTE)
        assert await runs(rig, incident, "update-due") == [(0, "ok")]


@drive
async def test_the_retract_step_deletes_offers_published_within_its_window(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, {"outage": RETRACTING}) as rig:
        old = await rig.schedule("web", "Old offer", at=5 * MINUTE)
        recent = await rig.schedule("web", "Recent offer", at=50 * MINUTE)
        social = await rig.schedule("social", "Social offer", at=55 * MINUTE)
        await rig.advance(60 * MINUTE)
        incident = await rig.declare()
        await rig.advance(MINUTE)
        assert await rig.states([old, recent, social]) == ["published", "retracted",
                                                          "retracted"]
        assert [r["retract"] for r in rig.outbox("web") if "retract" in r] == [recent]
        assert rig.social.retracted == [f"scripted-{social}"]
        assert await runs(rig, incident, "retract-recent-offers") == [(0, "ok")]


@drive
async def test_a_retraction_the_platform_refuses_fails_the_step_and_says_why(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, {"outage": RETRACTING}) as rig:
        social = await rig.schedule("social", "Social offer", at=55 * MINUTE)
        await rig.advance(60 * MINUTE)
        rig.social.retract_failures.append(ChannelError("not found", permanent=True))
        incident = await rig.declare()
        await rig.advance(MINUTE)
        assert (await rig.post(social)).state == "published"
        assert await runs(rig, incident, "retract-recent-offers") == [(0, "failed")]
        assert any(f"post {social} on social: not found" in t for t in rig.texts("ops-chat"))


@drive
async def test_a_step_the_store_cannot_claim_is_tried_again_later(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        fail_once(rig.store, "claim_step", disk_full, when=escalation)
        incident = await rig.declare()
        await rig.advance(60 * MINUTE)
        assert await runs(rig, incident, "escalate") == []
        await rig.advance(MINUTE)  # tried again 30 s later
        assert await runs(rig, incident, "escalate") == [(0, "ok")]
        escalations = [at for _, t, at in rig.published("ops-chat") if "open for an hour" in t]
        assert escalations == [START + 60 * MINUTE + 30]


@drive
async def test_a_step_outcome_the_store_cannot_record_is_recorded_later(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        fail_once(rig.store, "finish_step", disk_full, when=escalation)
        incident = await rig.declare()
        await rig.advance(60 * MINUTE)
        assert await runs(rig, incident, "escalate") == [(0, "started")]
        await rig.advance(MINUTE)
        assert await runs(rig, incident, "escalate") == [(0, "ok")]
        assert len([t for t in rig.texts("ops-chat") if "open for an hour" in t]) == 1


@drive
async def test_a_reminder_on_a_channel_the_incident_holds_is_not_the_update_it_asks_for(
        tmp_path: Path) -> None:
    """Declared by hand over an internal channel too: ops' own notices there are
    not operational updates; the overdue gauge stays up until a public one."""
    async with Rig(tmp_path) as rig:
        incident = await rig.declare(channels=["web", "ops-chat"])
        await rig.advance(30 * MINUTE)
        assert reminders(rig) == [START + 30 * MINUTE]
        assert rig.gauge("operational_update_overdue", incident=f"INC-{incident}") == 1
        stored = await rig.store.incident(incident)
        assert stored is not None and stored.last_operational_at == START  # the statement
        await rig.incidents.update(incident, "Buses replace trains", "ops")
        await rig.idle()
        assert rig.gauge("operational_update_overdue", incident=f"INC-{incident}") == 0


@drive
async def test_a_step_that_crashes_is_recorded_failed_and_the_incident_goes_on(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, {"outage": RETRACTING}) as rig:
        async def broken(*args: object, **kwargs: object) -> list[object]:
            raise KeyError("column")

        rig.store.published_since = broken  # type: ignore[method-assign,assignment]
        incident = await rig.declare()
        await rig.advance(MINUTE)
        assert await runs(rig, incident, "retract-recent-offers") == [(0, "failed")]
        assert any("runbook step retract-recent-offers failed: internal error: 'column'" in t
                   for t in rig.texts("ops-chat"))
        assert await runs(rig, incident, "holding-statement") == [(0, "ok")]


@drive
async def test_a_step_timer_for_an_incident_gone_or_resolved_does_nothing(
        tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        steps = rig.core.steps
        await steps.run(404, "escalate", 0)  # no such incident
        incident = await rig.declare()
        await rig.advance(MINUTE)
        await rig.resolve(incident)
        await steps.run(incident, "escalate", 0)  # a live step of a resolved incident
        await steps.run(incident, "no-such-step", 0)
        await rig.idle()
        assert await runs(rig, incident, "escalate") == []
        assert not [t for t in rig.texts("ops-chat") if "open for an hour" in t]
