"""Incidents in the store: declaration, holds, the timeline, steps and feed events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from switchboard.model import HeldPlan, Hold, Incident, IncidentHolds, TimelineEntry
from switchboard.poststates import PostState
from switchboard.store.core import (
    _INCIDENT_COLUMNS,
    DECLARATION_WAIT_MS,
    FEED_EVENT_RETENTION,
    RequestKey,
    _incident,
)
from switchboard.store.lease import Fence
from switchboard.store.listings import Listings


class IncidentRecords(Listings):
    """Incidents, their holds and timeline, runbook steps and feed events."""

    # -- incidents ---------------------------------------------------------

    def declare(self, *, title: str, runbook: str, severity: str, channels: Sequence[str],
                suppress: Sequence[str], reason: str | None, source: str,
                signal_key: str | None, signal: dict[str, Any] | None, actor: str,
                now: float, request: RequestKey | None = None) -> int:
        """Insert the incident and its channel holds in one durable transaction
        (with `request`, its Idempotency-Key too)."""
        return self.declared(
            title=title, runbook=runbook, severity=severity, channels=channels,
            suppress=suppress, reason=reason, source=source, signal_key=signal_key,
            signal=signal, actor=actor, now=now, request=request).id

    def declared(self, *, title: str, runbook: str, severity: str, channels: Sequence[str],
                 suppress: Sequence[str], reason: str | None, source: str,
                 signal_key: str | None, signal: dict[str, Any] | None, actor: str,
                 now: float, request: RequestKey | None = None) -> Incident:
        """`declare`, and the incident as stored (the INSERT's own RETURNING: no
        second reading for the declaration's answer)."""
        with self.transaction(wait_ms=DECLARATION_WAIT_MS) as db:
            incident = _incident(db.execute(
                "INSERT INTO incidents (title, runbook, severity, state, channels, suppress, "
                "reason, source, signal_key, signal, declared_at, declared_by) "
                f"VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_INCIDENT_COLUMNS}",
                (title, runbook, severity, json.dumps(list(channels)), json.dumps(list(suppress)),
                 reason, source, signal_key, None if signal is None else json.dumps(signal),
                 now, actor)).fetchone())
            # One statement for every channel (10,000 in a few milliseconds), in key order.
            db.execute("INSERT INTO channel_control (channel, incident_id) "
                       "SELECT value, ? FROM json_each(?) ORDER BY value",
                       (incident.id, json.dumps(list(channels))))
            self._log(incident.id, now, "declared", actor,
                      {"title": title, "runbook": runbook, "channels": list(channels),
                       "reason": reason, "source": source, "signal_key": signal_key})
            if request is not None:
                self._keep(request, "incident", [incident.id], 201, now)
        return incident

    def resolve(self, incident_id: int, *, actor: str, note: str | None, now: float,
                cooldown_until: float) -> bool:
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE incidents SET state = 'resolved', resolved_at = ?, resolved_by = ?, "
                "resolve_note = ?, cooldown_until = ? WHERE id = ? AND state = 'active'",
                (now, actor, note, cooldown_until, incident_id))
            if cur.rowcount == 0:
                return False
            db.execute("UPDATE channel_control SET until = ? WHERE incident_id = ?",
                       (cooldown_until, incident_id))
            self._log(incident_id, now, "resolved", actor,
                      {"note": note, "cooldown_until": cooldown_until})
        return True

    def void(self, incident_id: int, *, actor: str, reason: str, now: float,
             requeue: Sequence[tuple[int, float]], review: Sequence[int]) -> bool:
        """A false alarm, in one durable transaction: the incident ends without a
        cooldown, its holds go, and the posts it suppressed are re-queued (at the
        given times) or put up for review. False if it was not active. `held_done`
        stays 0 until its updates are retracted, so a restart finishes that."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE incidents SET state = 'voided', resolved_at = ?, resolved_by = ?, "
                "resolve_note = ?, cooldown_until = ?, held_done = 0, auto_resolve_at = NULL "
                "WHERE id = ? AND state = 'active'", (now, actor, reason, now, incident_id))
            if cur.rowcount == 0:
                return False
            db.execute("DELETE FROM channel_control WHERE incident_id = ?", (incident_id,))
            why = f"INC-{incident_id} voided: {reason}"
            for post_id, due in requeue:
                self._transition([post_id], PostState.SCHEDULED, (PostState.SUPPRESSED,), now,
                                 actor, why, due_at=due)
            self._transition(review, PostState.HELD, (PostState.SUPPRESSED,), now, actor, why)
            self._log(incident_id, now, "voided", actor,
                      {"reason": reason, "rescheduled": [i for i, _ in requeue],
                       "held": list(review)})
        return True

    def move_held(self, plan: HeldPlan, now: float) -> None:
        """A part of the end of a cooldown, in one transaction: these held posts
        follow the runbook's policy (dropped, held for review, or back on the
        schedule at their own times)."""
        with self.transaction():
            if plan.policy in ("drop", "review"):
                assert plan.to_state is not None
                self._transition(plan.ids, PostState(plan.to_state), (PostState.SUPPRESSED,),
                                 now, "runbook", plan.reason)
            else:
                self._reschedule_held(plan.moves, plan.expired, now, "runbook", plan.reason,
                                      plan.expired_reason)

    def finish_cooldown(self, incident_id: int, plan: HeldPlan, now: float) -> dict[str, int]:
        """The incident is done with: what its policy did to its held posts, counted
        from their history (whatever parts, tries and restarts it took), on the
        timeline."""
        keys = {"drop": {PostState.DROPPED: "dropped"}, "review": {PostState.HELD: "held"}}.get(
            plan.policy, {PostState.SCHEDULED: "rescheduled", PostState.EXPIRED: "expired"})
        with self.transaction() as db:
            moved = dict(db.execute(
                "SELECT e.to_state, COUNT(*) FROM posts p JOIN post_events e "
                "ON e.post_id = p.id WHERE p.incident_id = ? AND e.actor = 'runbook' "
                "AND e.from_state = 'suppressed' AND e.reason IN (?, ?) GROUP BY e.to_state",
                (incident_id, plan.reason, plan.expired_reason)).fetchall())
            outcome = {name: int(moved.get(state, 0)) for state, name in keys.items()}
            db.execute("DELETE FROM channel_control WHERE incident_id = ?", (incident_id,))
            db.execute("UPDATE incidents SET held_done = 1 WHERE id = ?", (incident_id,))
            self._log(incident_id, now, "channels_released", "daemon",
                      {"held_posts": plan.policy, **outcome})
        return outcome

    def release_holds(self, incident_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM channel_control WHERE incident_id = ?", (incident_id,))

    def holds(self) -> list[Hold]:
        return [Hold(c, i, u) for c, i, u in self._db.execute(
            "SELECT channel, incident_id, until FROM channel_control")]

    def holds_by_incident(self) -> tuple[float, dict[int, float | None]]:
        """Each holding incident's end of hold (None while active), and a database
        time before the reading: every hold committed before it is in it. Small
        however many channels each holds: a leader reads it at every change."""
        # Every change of the holds is one incident's, to all its channels at once.
        return self.db_time(), {int(i): u for i, u in self._db.execute(
            "SELECT incident_id, MAX(until) FROM channel_control GROUP BY incident_id")}

    def holds_of(self, incident_ids: Sequence[int]) -> list[IncidentHolds]:
        """The holds of these incidents (those that hold no channel are left out)."""
        found: dict[int, IncidentHolds] = {}
        for start in range(0, len(incident_ids), 500):
            chunk = list(incident_ids[start:start + 500])
            for channel, incident_id, until, suppress in self._db.execute(
                    "SELECT c.channel, c.incident_id, c.until, i.suppress FROM channel_control c "
                    "JOIN incidents i ON i.id = c.incident_id "
                    f"WHERE c.incident_id IN ({','.join('?' * len(chunk))}) ORDER BY c.channel",
                    chunk):
                holds = found.get(incident_id)
                if holds is None:
                    holds = found[incident_id] = IncidentHolds(
                        int(incident_id), json.loads(suppress), until, [])
                holds.channels.append(channel)
        return list(found.values())

    def incident(self, incident_id: int) -> Incident | None:
        row = self._db.execute(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?",
                               (incident_id,)).fetchone()
        return _incident(row) if row else None

    def incidents(self, include_resolved: bool = False,
                  limit: int | None = 500) -> list[Incident]:
        sql = f"SELECT {_INCIDENT_COLUMNS} FROM incidents"
        if not include_resolved:
            sql += " WHERE state = 'active'"
        sql += " ORDER BY id DESC" + ("" if limit is None else " LIMIT ?")
        return [_incident(r) for r in self._db.execute(sql, () if limit is None else (limit,))]

    def incidents_awaiting_release(self) -> list[Incident]:
        """Resolved incidents whose held posts have not been dealt with yet."""
        return [_incident(r) for r in self._db.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE state = 'resolved' "
            "AND held_done = 0")]

    def set_incident_fields(self, /, incident_id: int, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE incidents SET {sets} WHERE id = ?",
                       [*fields.values(), incident_id])

    def log(self, incident_id: int, now: float, event: str, actor: str,
            detail: dict[str, Any] | None = None) -> None:
        with self.transaction():
            self._log(incident_id, now, event, actor, detail or {})

    def note_updates(self, incident_id: int, last_operational_at: float | None, now: float,
                     sent: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Operational posts out for an incident: its last update time and one
        `post_sent` entry per post ((actor, detail) pairs), in one transaction."""
        with self.transaction() as db:
            db.execute("UPDATE incidents SET last_operational_at = ? WHERE id = ?",
                       (last_operational_at, incident_id))
            db.executemany("INSERT INTO timeline (incident_id, at, event, actor, detail) "
                           "VALUES (?, ?, 'post_sent', ?, ?)",
                           [(incident_id, now, actor, json.dumps(detail, default=str))
                            for actor, detail in sent])

    def timeline(self, incident_id: int) -> list[TimelineEntry]:
        return [TimelineEntry(at, event, actor, json.loads(detail)) for at, event, actor, detail
                in self._db.execute("SELECT at, event, actor, detail FROM timeline "
                                    "WHERE incident_id = ? ORDER BY id", (incident_id,))]

    def suppress_posts(self, ids: Sequence[int], incident_id: int, now: float,
                       expect: Sequence[PostState] = (PostState.QUEUED,)) -> list[int]:
        """Suppress posts for an incident and note it on the incident's timeline."""
        with self.transaction():
            moved = self._transition(ids, PostState.SUPPRESSED, expect, now, "gate",
                                     f"INC-{incident_id} holds the channel",
                                     incident_id=incident_id)
            if moved:
                self._log(incident_id, now, "posts_suppressed", "gate", {"posts": moved})
        return moved

    # -- runbook steps -----------------------------------------------------

    def claim_step(self, incident_id: int, step: str, occurrence: int, now: float,
                   fence: Fence | None = None) -> bool:
        """Record that a step occurrence runs; False if it already did (restart safety,
        or another daemon ran it). With `fence`, only while it is the leader lease."""
        with self.transaction() as db:
            self._check_fence(fence)
            cur = db.execute(
                "INSERT INTO step_runs (incident_id, step, occurrence, at, result) "
                "VALUES (?, ?, ?, ?, 'started') ON CONFLICT DO NOTHING",
                (incident_id, step, occurrence, now))
            return cur.rowcount == 1

    def finish_step(self, incident_id: int, step: str, occurrence: int, result: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE step_runs SET result = ? WHERE incident_id = ? AND step = ? "
                       "AND occurrence = ?", (result, incident_id, step, occurrence))

    def step_runs(self, incident_id: int) -> list[tuple[str, int, float, str]]:
        return [(s, int(o), float(a), r) for s, o, a, r in self._db.execute(
            "SELECT step, occurrence, at, result FROM step_runs WHERE incident_id = ? "
            "ORDER BY at, step", (incident_id,))]


    # -- feed events -------------------------------------------------------

    def event_seen(self, feed: str, event_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM feed_events WHERE feed = ? AND event_id = ?",
                                (feed, event_id)).fetchone() is not None

    def remember_event(self, feed: str, event_id: str, now: float) -> None:
        """Keep the id for FEED_EVENT_RETENTION; older ones are forgotten here too."""
        with self.transaction() as db:
            db.execute("INSERT INTO feed_events (feed, event_id, seen_at) "
                       "VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (feed, event_id, now))
            db.execute("DELETE FROM feed_events WHERE seen_at < ?",
                       (now - FEED_EVENT_RETENTION,))

    def last_resolved_at(self, signal_key: str) -> float | None:
        """When the latest incident declared by this signal key was resolved."""
        row = self._db.execute("SELECT MAX(resolved_at) FROM incidents WHERE signal_key = ?",
                               (signal_key,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])
