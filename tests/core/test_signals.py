"""Feed signals on the fake clock: a signal declares, its repeats update, its
clearing resolves after the quiet period (unless it fires again)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from switchboard.clock import to_datetime
from switchboard.config import FeedConfig
from switchboard.feeds.settings import Matcher, Rule
from switchboard.feeds.signal import Signal
from switchboard.store import Store
from tests.core.rig import OUTAGE, START, Rig, drive

MINUTE = 60.0
AUTO = OUTAGE.replace("name: outage", "name: auto-outage").replace(
    "resolve:\n  cooldown: 30m", "resolve:\n  auto: true\n  quiet_period: 10m\n  cooldown: 30m")
BOOKS = {"outage": OUTAGE, "auto-outage": AUTO}
FEED = FeedConfig("alerts", "alertmanager", rules=(
    Rule({"service": Matcher(("rail",))}, runbook="auto-outage"),
    Rule({"service": Matcher(("web",))}, runbook="outage", channels=("web",),
         title="Website trouble"),
))


def signal(status: str = "firing", at: datetime | None = None, **changes: object) -> Signal:
    base = Signal(source="alerts", key="fp-1", status="firing", title="Signalling fault",
                  at=at or to_datetime(START), labels={"service": "rail",
                                                       "severity": "critical"})
    return replace(base, status=status, **changes)  # type: ignore[arg-type]


async def events(rig: Rig, incident: int) -> list[str]:
    """The timeline's signal entries (not the runbook's own)."""
    return [e.event for e in await rig.store.timeline(incident)
            if e.event.startswith(("declared", "signal_"))]


@drive
async def test_a_cleared_signal_resolves_its_incident_after_the_quiet_period(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, BOOKS) as rig:
        signals = rig.core.signals
        assert await signals.on_signal(FEED, signal()) == "declared"
        [incident] = await rig.store.incidents()
        assert (incident.runbook, incident.severity, incident.source) == (
            "auto-outage", "critical", "alerts")
        await rig.advance(5 * MINUTE)
        assert await signals.on_signal(FEED, signal("resolved")) == "resolving"
        assert await signals.on_signal(FEED, signal("resolved")) == "repeated"
        await rig.advance(9 * MINUTE)
        assert (await rig.store.incident(incident.id)).state == "active"  # type: ignore[union-attr]
        await rig.advance(MINUTE)
        resolved = await rig.store.incident(incident.id)
        assert resolved is not None
        assert (resolved.state, resolved.resolved_by, resolved.resolved_at) == (
            "resolved", "feed", START + 15 * MINUTE)
        assert rig.texts("web")[-1] == "All clear: Signalling fault"


@drive
async def test_a_signal_that_fires_again_in_the_quiet_period_keeps_the_incident_open(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, BOOKS) as rig:
        signals = rig.core.signals
        await signals.on_signal(FEED, signal())
        [incident] = await rig.store.incidents()
        await signals.on_signal(FEED, signal("resolved"))
        await rig.advance(5 * MINUTE)
        assert await signals.on_signal(FEED, signal()) == "updated"
        await rig.advance(20 * MINUTE)
        assert (await rig.store.incident(incident.id)).state == "active"  # type: ignore[union-attr]
        assert "signal_refired" in await events(rig, incident.id)
        # Cleared again: the quiet period starts over from now.
        assert await signals.on_signal(FEED, signal("resolved")) == "resolving"
        await rig.advance(10 * MINUTE)
        assert (await rig.store.incident(incident.id)).state == "resolved"  # type: ignore[union-attr]


@drive
async def test_repeats_update_the_incident_and_reach_its_timeline_once_per_interval(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, BOOKS) as rig:
        signals = rig.core.signals
        await signals.on_signal(FEED, signal())
        [incident] = await rig.store.incidents()
        assert await signals.on_signal(FEED, signal()) == "updated"
        assert await signals.on_signal(FEED, signal()) == "repeated"
        assert await signals.on_signal(FEED, signal(title="Signalling fault, spreading")) \
            == "updated"
        await rig.advance(11 * MINUTE)
        assert await signals.on_signal(FEED, signal(title="Signalling fault, spreading")) \
            == "updated"
        assert await signals.on_signal(FEED, signal(timeline_only=True,
                                                    annotations={"note": "crew on site"})) \
            == "noted"
        assert await events(rig, incident.id) == [
            "declared", "signal_repeated", "signal_updated", "signal_repeated", "signal_note"]
        assert len(await rig.store.incidents()) == 1


@drive
async def test_signals_no_rule_takes_or_already_seen_declare_nothing(tmp_path: Path) -> None:
    async with Rig(tmp_path, BOOKS) as rig:
        signals = rig.core.signals
        assert await signals.on_signal(FEED, signal(labels={"service": "buses"})) == "unmatched"
        assert await signals.on_signal(FEED, signal("resolved")) == "ignored"
        assert await signals.on_signal(FEED, signal(timeline_only=True)) == "ignored"
        assert await signals.on_signal(FEED, signal(event_id="e1")) == "declared"
        assert await signals.on_signal(FEED, signal(event_id="e1")) == "replayed"
        assert len(await rig.store.incidents()) == 1


@drive
async def test_a_cleared_signal_without_auto_resolve_tells_ops_to_resolve(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, BOOKS) as rig:
        signals = rig.core.signals
        web = signal(key="fp-web", labels={"service": "web"})
        assert await signals.on_signal(FEED, web) == "declared"
        [incident] = await rig.store.incidents()
        assert (incident.title, incident.channels) == ("Website trouble", ["web"])
        assert await signals.on_signal(FEED, replace(web, status="resolved")) == "cleared"
        await rig.idle()
        assert rig.texts("ops-chat")[-1] == (
            f"INC-{incident.id} (Website trouble): the source alerts reports it has cleared. "
            f"Resolve with: switchboard incident resolve INC-{incident.id}")
        await rig.advance(60 * MINUTE)
        assert (await rig.store.incident(incident.id)).state == "active"  # type: ignore[union-attr]


@drive
async def test_a_replayed_firing_from_before_the_resolution_does_not_reopen_it(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, BOOKS) as rig:
        signals = rig.core.signals
        await signals.on_signal(FEED, signal(event_id="e1"))
        [incident] = await rig.store.incidents()
        await rig.advance(MINUTE)
        await rig.resolve(incident.id)
        old = signal(event_id="e0", at=to_datetime(START + 30))
        assert await signals.on_signal(FEED, old) == "stale"
        fresh = signal(event_id="e2", at=to_datetime(rig.now + 1))
        assert await signals.on_signal(FEED, fresh) == "declared"


@drive
async def test_the_source_of_a_voided_alarm_is_ignored_until_it_clears(tmp_path: Path) -> None:
    async with Rig(tmp_path, BOOKS) as rig:
        signals = rig.core.signals
        await signals.on_signal(FEED, signal())
        [incident] = await rig.store.incidents()
        await rig.advance(MINUTE)
        await rig.incidents.void(incident.id, actor="ops", reason="flapping sensor")
        assert await signals.on_signal(FEED, signal()) == "ignored"
        assert await signals.on_signal(FEED, signal("resolved")) == "ignored"
        assert "signal_resolved" in await events(rig, incident.id)
        assert await signals.on_signal(FEED, signal()) == "declared"  # news again


@drive
async def test_a_group_incident_waits_for_the_whole_group_to_clear(tmp_path: Path) -> None:
    async with Rig(tmp_path, BOOKS) as rig:
        signals = rig.core.signals
        first = signal(key="a1", group="g", group_status="firing")
        second = signal(key="a2", group="g", group_status="firing")
        assert await signals.on_signal(FEED, first) == "declared"
        assert await signals.on_signal(FEED, second) == "updated"
        assert len(await rig.store.incidents()) == 1
        assert await signals.on_signal(FEED, replace(first, status="resolved")) == "repeated"
        assert await signals.on_signal(FEED, replace(second, status="resolved",
                                                     group_status="resolved")) == "resolving"
        await rig.advance(10 * MINUTE)
        assert await rig.store.incidents() == []


@drive
async def test_two_deliveries_of_one_new_alert_at_once_declare_one_incident(
        tmp_path: Path) -> None:
    # Alertmanager's HA pair (or a retry racing its first try) sends the same alert
    # twice at the same moment: the second must find the first's incident.
    async with Rig(tmp_path, BOOKS) as rig:
        signals = rig.core.signals
        outcomes = await asyncio.gather(*(signals.on_signal(FEED, signal()) for _ in range(4)))
        assert sorted(outcomes) == ["declared", "repeated", "repeated", "updated"]
        assert len(await rig.store.incidents()) == 1


@drive
async def test_an_alert_firing_again_after_another_daemon_resolved_its_incident_declares_anew(
        tmp_path: Path) -> None:
    async with Rig(tmp_path, BOOKS) as rig:
        signals = rig.core.signals
        assert await signals.on_signal(FEED, signal()) == "declared"
        [first] = await rig.store.incidents()
        # The other daemon of a pair, on the same database, resolves it.
        other = await Store.open(rig.tmp / "switchboard.db")
        assert await other.resolve(first.id, actor="ops", note=None, now=rig.now,
                                   cooldown_until=rig.now)
        await other.close()
        await rig.advance(2.0)  # past what this daemon trusts of its own last read
        assert await signals.on_signal(FEED, signal()) == "declared"
        assert [i.id for i in await rig.store.incidents()] != [first.id]
