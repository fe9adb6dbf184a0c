"""What a feed's signal does to the incidents: declare, update, repeat, clear.

Feeds resend (Alertmanager every group interval, PagerDuty retries, pollers
on each fetch): a repeat is matched to its incident by the signal's key and
written to the timeline at most once per REPEAT_LOG_INTERVAL; a replayed
event id is taken once; a clearing never declares.
"""

from __future__ import annotations

import json
from dataclasses import replace

from switchboard.clock import rfc3339
from switchboard.config import SEVERITIES, FeedConfig
from switchboard.feeds.signal import Signal
from switchboard.incidents.lifecycle import Incidents
from switchboard.incidents.views import group_key, signal_key
from switchboard.model import Incident

# How often an unchanged repeat of an incident's signal is written to its timeline.
REPEAT_LOG_INTERVAL = 600.0
SEEN_KEPT = 10_000  # (incident, alert) contents remembered before the ended ones are pruned


class FeedSignals:
    """Signals from every feed, turned into incident operations."""

    def __init__(self, incidents: Incidents) -> None:
        self.incidents = incidents
        self.store = incidents.store
        # Last content seen per (incident, signal key): a group's alerts each have their own.
        self._seen: dict[tuple[int, str], tuple[str, float]] = {}
        self._cleared_at: dict[int, float] = {}

    async def on_signal(self, feed: FeedConfig, signal: Signal) -> str:
        """What happened: declared, updated, repeated, resolving, cleared, noted,
        unmatched, ignored, replayed (an event already taken) or stale (older
        than the resolution of its incident)."""
        if signal.event_id is not None and await self.store.event_seen(feed.id, signal.event_id):
            return "replayed"
        outcome = await self._on_signal(feed, signal)
        # Remembered only once handled: a delivery that failed is taken when retried.
        if signal.event_id is not None:
            await self.store.remember_event(feed.id, signal.event_id, self.incidents.clock())
        return outcome

    async def _on_signal(self, feed: FeedConfig, signal: Signal) -> str:
        active = await self._active(signal_key(signal))
        group = None if signal.group is None else await self._active(group_key(signal))
        for held in (active, group):
            if held is not None and held.state == "voided":
                return await self._voided_signal(held, signal)
        if signal.timeline_only:
            return await self._noted(active, signal)
        if signal.status == "firing":
            current = active or group
            if current is not None:
                return await self._refired(current, signal)
            if signal.event_id is not None and await self._older_than_resolution(signal):
                return "stale"
            rule = next((r for r in feed.rules if r.matches(signal.fields())), None)
            if rule is None:
                return "unmatched"
            keyed = signal if rule.per == "alert" or signal.group is None else \
                replace(signal, key=f"group:{signal.group}")
            try:
                await self.incidents.declare(runbook=rule.runbook,
                                             title=rule.title or signal.title,
                                             severity=rule.severity or _severity(signal),
                                             channels=list(rule.channels) if rule.channels
                                             else None,
                                             reason=signal.annotations.get("description")
                                             or signal.title,
                                             actor=f"feed:{feed.id}", source=feed.id,
                                             signal=keyed)
            except Exception:
                other = await self._declared_elsewhere(signal_key(keyed))
                if other is None:
                    raise
                self.incidents.log.info("signal_declared_elsewhere", key=signal.key,
                                        incident=f"INC-{other.id}")
                return await self._refired(other, signal)
            return "declared"
        if active is not None:
            return await self._cleared(active, signal)
        if group is not None:
            # One alert of the group cleared; the group's incident waits for all.
            return await self._cleared(group, signal) if signal.group_status == "resolved" \
                else "repeated"
        return "ignored"

    async def _active(self, key: str) -> Incident | None:
        incident_id = self.incidents.by_signal.get(key)
        return None if incident_id is None else await self.store.incident(incident_id)

    async def _declared_elsewhere(self, key: str) -> Incident | None:
        """After a refused declaration: the active incident of this signal key that
        another daemon on the same database declared meanwhile (the store keeps one
        per key), now known here too; None if there is none."""
        found = next((i for i in await self.store.incidents(limit=None)
                      if i.signal_key == key), None)
        if found is not None:
            self.incidents.by_signal[key] = found.id
        return found

    async def _older_than_resolution(self, signal: Signal) -> bool:
        """A replayed delivery from before its incident was resolved never reopens it."""
        resolved_at = await self.store.last_resolved_at(signal_key(signal))
        return resolved_at is not None and signal.at.timestamp() <= resolved_at

    async def _noted(self, incident: Incident | None, signal: Signal) -> str:
        if incident is None:
            return "ignored"
        await self.store.log(incident.id, self.incidents.clock(), "signal_note",
                             f"feed:{signal.source}", {"title": signal.title, **signal.annotations})
        return "noted"

    async def _voided_signal(self, incident: Incident, signal: Signal) -> str:
        """The source of a false alarm repeats it until it clears: ignored till then."""
        if signal.status == "resolved":
            self.incidents.by_signal.pop(signal_key(signal), None)
            if signal.group is not None and signal.group_status == "resolved":
                self.incidents.by_signal.pop(group_key(signal), None)
            await self.store.log(incident.id, self.incidents.clock(), "signal_resolved",
                           f"feed:{signal.source}", {"note": "the voided alarm's source cleared"})
        return "ignored"

    async def _refired(self, incident: Incident, signal: Signal) -> str:
        now = self.incidents.clock()
        actor = f"feed:{signal.source}"
        self._cleared_at.pop(incident.id, None)  # a later all-clear is news again
        if incident.auto_resolve_at is not None:
            await self.incidents.cancel_auto_resolve(incident.id)
            await self.store.log(incident.id, now, "signal_refired", actor,
                           {"note": "auto-resolve cancelled: the source fired again"})
            return "updated"
        content = _content(signal)
        seen = self._seen.get((incident.id, signal.key))
        if seen is None or seen[0] != content:
            event = "signal_repeated" if seen is None else "signal_updated"
            await self.store.log(incident.id, now, event, actor,
                           {"title": signal.title, "labels": signal.labels})
        elif now - seen[1] >= REPEAT_LOG_INTERVAL:
            await self.store.log(incident.id, now, "signal_repeated", actor,
                                 {"title": signal.title})
        else:
            # Alertmanager resends the same alert every group interval: the
            # timeline gets it at most once per REPEAT_LOG_INTERVAL.
            return "repeated"
        self._seen[(incident.id, signal.key)] = (content, now)
        return "updated"

    async def _cleared(self, incident: Incident, signal: Signal) -> str:
        now = self.incidents.clock()
        if incident.auto_resolve_at is not None:
            return "repeated"  # already resolving: the quiet period keeps its start
        last = self._cleared_at.get(incident.id)
        if last is not None and now - last < REPEAT_LOG_INTERVAL:
            return "repeated"  # the other alerts of a group, or a resend: one notice
        self._cleared_at[incident.id] = now
        book = self.incidents.context().runbooks.get(incident.runbook)
        if book is not None and book.resolve.auto:
            at = now + book.resolve.quiet_period.total_seconds()
            await self.store.set_incident_fields(incident.id, auto_resolve_at=at)
            await self.store.log(incident.id, now, "signal_resolved", f"feed:{signal.source}",
                           {"auto_resolve_at": rfc3339(at)})
            self.incidents.schedule_auto_resolve(incident.id, at)
            return "resolving"
        await self.store.log(incident.id, now, "signal_resolved", f"feed:{signal.source}",
                       {"note": "source cleared; resolve by command"})
        if book is not None:
            text = (f"INC-{incident.id} ({incident.title}): the source {signal.source} reports "
                    f"it has cleared. Resolve with: switchboard incident resolve INC-{incident.id}")
            await self.incidents.publisher.notify(incident.id, list(book.handover.notify),
                                                  text, "source-cleared")
        return "cleared"


def _content(signal: Signal) -> str:
    return json.dumps([signal.title, sorted(signal.labels.items())])


def _severity(signal: Signal) -> str | None:
    """The feed's severity where it maps onto the incident vocabulary."""
    severity = signal.labels.get("severity")
    return severity if severity in SEVERITIES else None
