"""Incidents: declare, hand over, update, resolve, and give the channels back.

A declaration commits (incident + channel holds) and closes the gate in the
same event-loop step, before anyone is answered: from the acknowledgement on,
no marketing send can start on the scope's channels. Resolution keeps the
holds for the runbook's cooldown; at its end the held posts follow the
runbook's policy and the channel returns to marketing once no other incident
holds it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from prometheus_client import Gauge

from switchboard import refusals
from switchboard.clock import Clock, rfc3339, to_datetime
from switchboard.config import SEVERITIES, ChannelConfig, FeedConfig
from switchboard.dispatcher import Dispatcher
from switchboard.feeds.signal import Signal
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.model import Incident, NewPost, Post
from switchboard.posts import spaced_times
from switchboard.poststates import PostOrigin, PostState
from switchboard.runbooks import Runbook
from switchboard.store import RequestKey, Store


@dataclass(frozen=True)
class Voided:
    """What `incident void` did."""

    incident: Incident
    rescheduled: list[int]
    held: list[int]
    retracted: list[int]
    retract_failed: list[str]


class Engine(Protocol):
    """The runbook engine, as incidents see it."""

    def on_declared(self, incident: Incident, runbook: Runbook) -> None: ...
    def on_resolved(self, incident: Incident, runbook: Runbook) -> None: ...
    def resume(self, incident: Incident, runbook: Runbook) -> None: ...


@dataclass(frozen=True)
class Context:
    """What incidents read from the live config; swapped as a whole on reload."""

    runbooks: Mapping[str, Runbook]
    channels: Mapping[str, ChannelConfig]
    timezone: ZoneInfo


class Incidents:
    def __init__(self, store: Store, gate: Gate, dispatcher: Dispatcher,
                 scheduler: AsyncIOScheduler, metrics: Metrics, clock: Clock,
                 context: Callable[[], Context]) -> None:
        self.store, self.gate, self.dispatcher = store, gate, dispatcher
        self.scheduler, self.metrics, self.clock = scheduler, metrics, clock
        self.context = context
        self.engine: Engine | None = None
        self.log = structlog.get_logger("incidents")
        # Active incidents by the key of the signal that declared them: a feed's
        # repeats are matched here, not with a query per signal.
        self._signals: dict[str, int] = {}
        # Last content seen per (incident, signal key): a group's alerts each have their own.
        self._seen: dict[tuple[int, str], tuple[str, float]] = {}
        self._cleared_at: dict[int, float] = {}
        # The channels the under-incident gauge was last set for, and those it shows
        # at 1: a declaration over 10,000 channels sets only the gauges that change.
        self._gauged: set[str] = set()
        self._shown: set[str] = set()
        self._gauges: dict[str, Gauge] = {}

    # -- start-up ----------------------------------------------------------

    def load(self) -> None:
        """Rebuild the gate from the store (a crash must not reopen it)."""
        known = self.store.incidents(include_resolved=True, limit=100_000)
        suppress = {i.id: i.suppress for i in known if i.state == "active" or not i.held_done}
        for hold in self.store.holds():
            self.gate.hold(hold.channel, hold.incident_id,
                           suppress.get(hold.incident_id, ["marketing"]), hold.until)
        awaiting = self.store.incidents_awaiting_release()
        for incident in awaiting:
            self._schedule_release(incident)
        # Active incidents resume their steps; resolved ones in cooldown finish
        # any resolve step a crash interrupted.
        active = self.store.incidents(limit=None)
        for incident in active:
            if incident.signal_key is not None:
                self._signals[incident.signal_key] = incident.id
        # A void that a crash cut short still retracts what it had not yet.
        for incident in known:
            if incident.state == "voided" and not incident.held_done:
                self.scheduler.add_job(self._finish_void, args=[incident.id],
                                       id=f"void-{incident.id}", replace_existing=True,
                                       misfire_grace_time=None)
        for incident in [*active, *awaiting]:
            runbook = self.context().runbooks.get(incident.runbook)
            if incident.auto_resolve_at is not None:
                self._schedule_auto_resolve(incident.id, incident.auto_resolve_at)
            if runbook is not None and self.engine is not None:
                self.engine.resume(incident, runbook)
        self.refresh_metrics()

    # -- declare -----------------------------------------------------------

    def declare(self, *, runbook: str, title: str, actor: str, severity: str | None = None,
                channels: list[str] | None = None, reason: str | None = None,
                source: str = "manual", signal: Signal | None = None,
                request: RequestKey | None = None) -> Incident:
        ctx = self.context()
        book = ctx.runbooks.get(runbook)
        if book is None:
            raise refusals.unprocessable(f"no runbook named {runbook!r} "
                                         f"(runbooks: {', '.join(sorted(ctx.runbooks))})")
        # Each channel once, whoever listed it twice (a runbook, a rule, a caller):
        # the store keeps one hold per channel and incident, and refuses a second.
        scope = list(dict.fromkeys(channels or book.public_channels(ctx.channels)))
        unknown = [c for c in scope if c not in ctx.channels]
        if unknown:
            raise refusals.not_found(f"no channel named {unknown[0]!r} "
                                     f"(channels: {', '.join(sorted(ctx.channels))})")
        if not title.strip():
            raise refusals.bad_request("title must not be empty")
        if signal is None and severity is not None and severity not in SEVERITIES:
            # By hand only: each feed maps its own vocabulary onto these (design §7.2),
            # and a feed's signal is never refused for its severity.
            raise refusals.unprocessable(f"unknown severity {severity!r} "
                                         f"(severities: {', '.join(SEVERITIES)})")
        now = self.clock()
        incident_id = self.store.declare(
            title=title, runbook=runbook, severity=severity or book.severity, channels=scope,
            suppress=list(book.suppress), reason=reason, source=source,
            signal_key=None if signal is None else signal_key(signal),
            signal=None if signal is None else signal_json(signal), actor=actor, now=now,
            request=request)
        self.gate.hold_many(scope, incident_id, book.suppress)
        incident = self._get(incident_id)
        if incident.signal_key is not None:
            self._signals[incident.signal_key] = incident_id
        self.log.warning("incident_declared", incident=f"INC-{incident_id}", runbook=runbook,
                         channels=scope, actor=actor, source=source)
        self.refresh_metrics()
        if self.engine is not None:
            self.engine.on_declared(incident, book)
        return incident

    # -- resolve -----------------------------------------------------------

    def resolve(self, incident_id: int, *, actor: str, note: str | None = None) -> Incident:
        incident = self._get(incident_id)
        if incident.state != "active":
            raise refusals.conflict(f"INC-{incident_id} is already resolved")
        book = self.context().runbooks.get(incident.runbook)
        cooldown = book.resolve.cooldown if book else timedelta(0)
        now = self.clock()
        until = now + cooldown.total_seconds()
        self.store.resolve(incident_id, actor=actor, note=note, now=now, cooldown_until=until)
        self.gate.set_until(incident_id, until)
        self._cancel_auto_resolve(incident_id)
        if incident.signal_key is not None:
            self._signals.pop(incident.signal_key, None)
        self._seen = {k: v for k, v in self._seen.items() if k[0] != incident_id}
        self._cleared_at.pop(incident_id, None)
        resolved = self._get(incident_id)
        self.log.warning("incident_resolved", incident=f"INC-{incident_id}", actor=actor,
                         cooldown_until=rfc3339(until))
        if self.engine is not None and book is not None:
            self.engine.on_resolved(resolved, book)
        self._schedule_release(resolved)
        self.refresh_metrics()
        return resolved

    def _schedule_release(self, incident: Incident) -> None:
        at = incident.cooldown_until or self.clock()
        self.scheduler.add_job(self._release, DateTrigger(run_date=to_datetime(at)),
                               args=[incident.id], id=f"release-{incident.id}",
                               replace_existing=True, misfire_grace_time=None)

    async def _release(self, incident_id: int) -> None:
        """Cooldown over: apply the held-post policy, then let go of the channels."""
        try:
            self._release_now(incident_id)
        except Exception:
            # A one-shot job: on a store error try again, or the channels would
            # stay held until a restart.
            self.log.exception("release_failed", incident=f"INC-{incident_id}")
            self.scheduler.add_job(self._release,
                                   DateTrigger(run_date=to_datetime(self.clock() + 30)),
                                   args=[incident_id], id=f"release-{incident_id}",
                                   replace_existing=True, misfire_grace_time=None)

    def _release_now(self, incident_id: int) -> None:
        incident = self._get(incident_id)
        book = self.context().runbooks.get(incident.runbook)
        policy = book.resolve.held_posts if book else "review"
        spacing = book.resolve.min_spacing if book else timedelta(minutes=5)
        now = self.clock()
        held = self.store.list_posts((PostState.SUPPRESSED,), incident_id=incident_id,
                                     limit=1_000_000)
        outcome = self._apply_policy(held, policy, spacing, now)
        self.store.release_holds(incident_id)
        self.gate.release(incident_id)
        self.store.set_incident_fields(incident_id, held_done=1)
        self.store.log(incident_id, now, "channels_released", "daemon",
                       {"held_posts": policy, **outcome})
        self.log.info("channels_released", incident=f"INC-{incident_id}", policy=policy,
                      **outcome)
        if outcome.get("held") and book is not None:
            self.notify(incident_id, list(book.handover.notify),
                        review_notice(incident, outcome["held"]), "review")
        self.dispatcher.arm()
        self.refresh_metrics()

    def _apply_policy(self, held: list[Post], policy: str, spacing: timedelta,
                      now: float) -> dict[str, int]:
        ids = [p.id for p in held]
        reason = f"held-post policy {policy}"
        if policy == "drop":
            return {"dropped": len(self.store.transition(
                ids, PostState.DROPPED, (PostState.SUPPRESSED,), now, "runbook", reason))}
        if policy == "review":
            return {"held": len(self.store.transition(
                ids, PostState.HELD, (PostState.SUPPRESSED,), now, "runbook", reason))}
        expired = [p.id for p in held if p.expires_at is not None and p.expires_at <= now]
        by_channel: dict[str, list[Post]] = {}
        for post in held:
            if post.id not in expired:
                by_channel.setdefault(post.channel, []).append(post)
        moves: list[tuple[int, float]] = []
        for posts in by_channel.values():
            for post, due in zip(posts, spaced_times(now, len(posts), spacing), strict=True):
                if post.expires_at is not None and due >= post.expires_at:
                    expired.append(post.id)  # it would expire before its new slot
                else:
                    moves.append((post.id, due))
        requeued, gone = self.store.reschedule_held(
            moves, expired, now, "runbook", reason,
            expired_reason=f"{reason}: past expires_at, or would be before its new slot")
        return {"rescheduled": len(requeued), "expired": len(gone)}

    # -- void and early release ---------------------------------------------

    async def void(self, incident_id: int, *, actor: str, reason: str) -> Voided:
        """A false alarm: no all-clear, no cooldown; the channels return to marketing
        at once, the posts it suppressed go back to the schedule when their slot is
        still good (else to review), and its holding statement and updates are
        retracted where the channel can delete them."""
        incident = self._get(incident_id)
        if incident.state != "active":
            hint = (f"; end its cooldown with: switchboard incident release INC-{incident_id}"
                    if incident.state == "resolved" and not incident.held_done else "")
            raise refusals.conflict(f"INC-{incident_id} is {incident.state}: only an active "
                                    f"incident can be voided{hint}")
        if not reason.strip():
            raise refusals.bad_request("reason must not be empty: say why it was a false alarm")
        book = self.context().runbooks.get(incident.runbook)
        spacing = book.resolve.min_spacing if book else timedelta(minutes=5)
        now = self.clock()
        requeue, review = self._void_plan(incident_id, spacing, now)
        # The store write, the gate and the in-memory state change in one loop step:
        # no send can see the incident half voided.
        if not self.store.void(incident_id, actor=actor, reason=reason, now=now,
                               requeue=requeue, review=review):
            raise refusals.conflict(f"INC-{incident_id} is no longer active")
        self.gate.release(incident_id)
        self._forget(incident_id)
        self.log.warning("incident_voided", incident=f"INC-{incident_id}", actor=actor,
                         reason=reason, rescheduled=len(requeue), held=len(review))
        self.dispatcher.arm()
        self.refresh_metrics()
        retracted, failed = await self._finish_void(incident_id)
        if book is not None:
            self.notify(incident_id, list(book.handover.notify),
                        void_notice(incident, actor, reason, retracted, len(requeue),
                                    len(review)), "voided")
        return Voided(self._get(incident_id), [i for i, _ in requeue], list(review),
                      retracted, failed)

    async def _finish_void(self, incident_id: int) -> tuple[list[int], list[str]]:
        """Retract a voided incident's updates; also run at start-up for a void that a
        crash interrupted before its retractions were recorded."""
        outcome = await self._retract_updates(self._get(incident_id))
        self.store.set_incident_fields(incident_id, held_done=1)
        return outcome

    def _void_plan(self, incident_id: int, spacing: timedelta,
                   now: float) -> tuple[list[tuple[int, float]], list[int]]:
        """Which suppressed posts go back on the schedule (spaced per channel, as after
        a cooldown) and which need review: those whose slot is older than
        max_lateness, or that would expire before their new slot."""
        late = self.dispatcher.max_lateness
        by_channel: dict[str, list[Post]] = {}
        review: list[int] = []
        for post in self.store.list_posts((PostState.SUPPRESSED,), incident_id=incident_id,
                                          limit=1_000_000):
            if now - post.due_at > late:
                review.append(post.id)
            else:
                by_channel.setdefault(post.channel, []).append(post)
        requeue: list[tuple[int, float]] = []
        for posts in by_channel.values():
            for post, due in zip(posts, spaced_times(now, len(posts), spacing), strict=True):
                if post.expires_at is not None and due >= post.expires_at:
                    review.append(post.id)
                else:
                    requeue.append((post.id, due))
        return requeue, review

    def _forget(self, incident_id: int) -> None:
        """Timers of an incident that ended without a resolution."""
        for job in self.scheduler.get_jobs():
            if job.id.startswith(f"step-{incident_id}-") or job.id in (
                    f"autoresolve-{incident_id}", f"release-{incident_id}"):
                job.remove()
        for seen in [k for k in self._seen if k[0] == incident_id]:
            del self._seen[seen]
        # The signal key stays mapped to the voided incident: while its source goes
        # on firing (an alert repeating), it must not declare the false alarm again.
        self.metrics.operational_update_overdue.labels(incident=f"INC-{incident_id}").set(0)

    def _updates(self, incident_id: int) -> set[int]:
        """The operational posts an incident's timeline records as sent for it."""
        ids: set[int] = set()
        for entry in self.store.timeline(incident_id):
            if entry.event == "post_sent":
                ids.add(int(entry.detail["post"]))
            elif entry.event == "update_posted":
                ids.update(int(i) for i in entry.detail.get("posts", []))
        return ids

    async def _retract_updates(self, incident: Incident) -> tuple[list[int], list[str]]:
        """Delete the incident's published holding statement and updates; a post that
        also served an overlapping incident still active stays up."""
        ids = self._updates(incident.id)
        for other in self.store.incidents():
            if set(other.channels) & set(incident.channels):
                ids -= self._updates(other.id)
        retracted: list[int] = []
        failed: list[str] = []
        for post in self.store.posts(sorted(ids)):
            if post.state != PostState.PUBLISHED or post.kind != "operational":
                continue
            why_not = await self.dispatcher.retract(post, "daemon", f"INC-{incident.id} voided")
            if why_not is None:
                retracted.append(post.id)
            else:
                failed.append(why_not)
        self.store.log(incident.id, self.clock(), "updates_retracted", "daemon",
                       {"posts": retracted, "failed": failed})
        return retracted, failed

    def release(self, incident_id: int, *, actor: str, reason: str) -> Incident:
        """End a cooldown now: the held-post policy runs and the channels return."""
        incident = self._get(incident_id)
        if incident.state == "active":
            raise refusals.conflict(f"INC-{incident_id} is active: resolve it first (or void "
                                    "it if it was a false alarm)")
        if incident.state != "resolved" or incident.held_done:
            raise refusals.conflict(f"INC-{incident_id} has no cooldown to end: its channels "
                                    "are back with marketing")
        if not reason.strip():
            raise refusals.bad_request("reason must not be empty: say why the cooldown ends "
                                       "early")
        now = self.clock()
        self.store.set_incident_fields(incident_id, cooldown_until=now)
        self.store.log(incident_id, now, "cooldown_ended", actor,
                       {"reason": reason, "was_until": incident.cooldown_until})
        self.gate.set_until(incident_id, now)
        self._release_now(incident_id)
        if self.scheduler.get_job(f"release-{incident_id}"):
            self.scheduler.remove_job(f"release-{incident_id}")
        return self._get(incident_id)

    def listing(self, everything: bool) -> list[Incident]:
        """`incident list`: the active incidents and those in cooldown, or all."""
        if everything:
            return self.store.incidents(include_resolved=True)
        current = {i.id: i for i in self.store.incidents()}
        current.update({i.id: i for i in self.store.incidents_awaiting_release()})
        return [current[k] for k in sorted(current, reverse=True)]

    # -- updates and notices -----------------------------------------------

    async def update(self, incident_id: int, text: str, actor: str) -> list[Post]:
        """An operational post to the incident's public channels, now."""
        incident = self._get(incident_id)
        if incident.state != "active":
            raise refusals.conflict(f"INC-{incident_id} is resolved; post with `post send`")
        ctx = self.context()
        public = [c for c in incident.channels
                  if c in ctx.channels and ctx.channels[c].audience == "public"]
        if not public:
            raise refusals.unprocessable(f"INC-{incident_id} has no public channel to post to")
        for channel in public:
            worker = self.dispatcher.workers.get(channel)
            if worker is None:
                raise refusals.unprocessable(f"channel {channel} is not configured any more")
            limit = worker.channel.max_length
            length = worker.channel.length(text)
            if length > limit:
                raise refusals.unprocessable(f"text is {length} characters as channel "
                                             f"{channel} counts them; it allows at most {limit}")
        book = ctx.runbooks.get(incident.runbook)
        if book is not None and book.two_person:
            # A second ops person sends it with `post approve` (see people.check_approver).
            now = self.clock()
            ids = self.store.add_posts([NewPost(c, "operational", text, now,
                                                state=PostState.PENDING_APPROVAL,
                                                incident_id=incident_id,
                                                origin=PostOrigin.SEND_NOW) for c in public],
                                       actor, now)
            self.store.log(incident_id, now, "update_pending", actor,
                           {"posts": ids, "text": text})
            return self.store.posts(ids)
        posts = await self.send_now(public, text, actor, kind="operational",
                                    incident_id=incident_id)
        self.store.log(incident_id, self.clock(), "update_posted", actor,
                       {"posts": [p.id for p in posts], "text": text})
        return posts

    async def send_now(self, channels: list[str], text: str, actor: str,
                       kind: str = "operational", timeout: float = 120.0,
                       request: RequestKey | None = None, incident_id: int | None = None,
                       immediate: bool = False, link: str | None = None) -> list[Post]:
        """Publish now through the gate and wait for each outcome (`immediate`: a
        caller's send, never sent behind its back after a restart)."""
        return await self.send_each([(c, text) for c in channels], actor, kind, timeout,
                                    request, incident_id, immediate, link)

    async def send_each(self, texts: list[tuple[str, str]], actor: str,
                        kind: str = "operational", timeout: float = 120.0,
                        request: RequestKey | None = None, incident_id: int | None = None,
                        immediate: bool = False, link: str | None = None) -> list[Post]:
        """`send_now` with a text of its own per channel: (channel, text) pairs, stored
        in one transaction and sent by each channel's worker side by side."""
        now = self.clock()
        ids = self.store.add_posts([NewPost(channel=c, kind=kind, text=text, due_at=now,
                                            link=link, state=PostState.QUEUED,
                                            incident_id=incident_id,
                                            origin=PostOrigin.SEND_NOW)
                                    for c, text in texts],
                                   actor, now, request=request, immediate=immediate)
        loop = asyncio.get_running_loop()
        waiters = []
        for post in self.store.posts(ids):
            waiter: asyncio.Future[Post] = loop.create_future()
            self.dispatcher.route(post, waiter)
            waiters.append(waiter)
        # A send stuck behind a rate limit is not abandoned: the caller gets the
        # posts as they stand (still `scheduled`), never an error inviting a retry.
        await asyncio.wait(waiters, timeout=timeout)
        return self.store.posts(ids)

    def post_published(self, post: Post) -> None:
        self.posts_published([post])

    def posts_published(self, posts: list[Post]) -> None:
        """Dispatcher hook: operational posts count as updates of the incidents they
        serve; one write per incident for a whole run of sends (a fan-out)."""
        now = self.clock()
        served: dict[int, list[Post]] = {}
        for post in posts:
            if post.kind == "operational":
                for incident_id in self.gate.controlling(post.channel, now):
                    served.setdefault(incident_id, []).append(post)
        for incident_id, updates in served.items():
            incident = self.store.incident(incident_id)
            if incident is None or incident.state != "active":
                continue
            self.store.note_updates(incident_id, updates[-1].published_at, now, [
                (p.created_by, {"post": p.id, "channel": p.channel}) for p in updates])
            self.metrics.operational_update_overdue.labels(incident=f"INC-{incident_id}").set(0)

    # -- feeds -------------------------------------------------------------

    def on_signal(self, feed: FeedConfig, signal: Signal) -> str:
        """What happened: declared, updated, repeated, resolving, cleared, noted,
        unmatched, ignored, replayed (an event already taken) or stale (older
        than the resolution of its incident)."""
        if signal.event_id is not None and self.store.event_seen(feed.id, signal.event_id):
            return "replayed"
        outcome = self._on_signal(feed, signal)
        # Remembered only once handled: a delivery that failed is taken when retried.
        if signal.event_id is not None:
            self.store.remember_event(feed.id, signal.event_id, self.clock())
        return outcome

    def _on_signal(self, feed: FeedConfig, signal: Signal) -> str:
        active = self._active(signal_key(signal))
        group = None if signal.group is None else self._active(group_key(signal))
        for held in (active, group):
            if held is not None and held.state == "voided":
                return self._voided_signal(held, signal)
        if signal.timeline_only:
            return self._noted(active, signal)
        if signal.status == "firing":
            current = active or group
            if current is not None:
                return self._refired(current, signal)
            if signal.event_id is not None and self._older_than_resolution(signal):
                return "stale"
            rule = next((r for r in feed.rules if r.matches(signal.fields())), None)
            if rule is None:
                return "unmatched"
            keyed = signal if rule.per == "alert" or signal.group is None else \
                replace(signal, key=f"group:{signal.group}")
            self.declare(runbook=rule.runbook, title=rule.title or signal.title,
                         severity=rule.severity or _severity(signal),
                         channels=list(rule.channels) if rule.channels else None,
                         reason=signal.annotations.get("description") or signal.title,
                         actor=f"feed:{feed.id}", source=feed.id, signal=keyed)
            return "declared"
        if active is not None:
            return self._cleared(active, signal)
        if group is not None:
            # One alert of the group cleared; the group's incident waits for all.
            return self._cleared(group, signal) if signal.group_status == "resolved" \
                else "repeated"
        return "ignored"

    def _active(self, key: str) -> Incident | None:
        incident_id = self._signals.get(key)
        return None if incident_id is None else self.store.incident(incident_id)

    def _older_than_resolution(self, signal: Signal) -> bool:
        """A replayed delivery from before its incident was resolved never reopens it."""
        resolved_at = self.store.last_resolved_at(signal_key(signal))
        return resolved_at is not None and signal.at.timestamp() <= resolved_at

    def _noted(self, incident: Incident | None, signal: Signal) -> str:
        if incident is None:
            return "ignored"
        self.store.log(incident.id, self.clock(), "signal_note", f"feed:{signal.source}",
                       {"title": signal.title, **signal.annotations})
        return "noted"

    def _voided_signal(self, incident: Incident, signal: Signal) -> str:
        """The source of a false alarm repeats it until it clears: ignored till then."""
        if signal.status == "resolved":
            self._signals.pop(signal_key(signal), None)
            if signal.group is not None and signal.group_status == "resolved":
                self._signals.pop(group_key(signal), None)
            self.store.log(incident.id, self.clock(), "signal_resolved",
                           f"feed:{signal.source}", {"note": "the voided alarm's source cleared"})
        return "ignored"

    def _refired(self, incident: Incident, signal: Signal) -> str:
        now = self.clock()
        actor = f"feed:{signal.source}"
        self._cleared_at.pop(incident.id, None)  # a later all-clear is news again
        if incident.auto_resolve_at is not None:
            self._cancel_auto_resolve(incident.id)
            self.store.log(incident.id, now, "signal_refired", actor,
                           {"note": "auto-resolve cancelled: the source fired again"})
            return "updated"
        content = _content(signal)
        seen = self._seen.get((incident.id, signal.key))
        if seen is None or seen[0] != content:
            event = "signal_repeated" if seen is None else "signal_updated"
            self.store.log(incident.id, now, event, actor,
                           {"title": signal.title, "labels": signal.labels})
        elif now - seen[1] >= REPEAT_LOG_INTERVAL:
            self.store.log(incident.id, now, "signal_repeated", actor, {"title": signal.title})
        else:
            # Alertmanager resends the same alert every group interval: the
            # timeline gets it at most once per REPEAT_LOG_INTERVAL.
            return "repeated"
        self._seen[(incident.id, signal.key)] = (content, now)
        return "updated"

    def _cleared(self, incident: Incident, signal: Signal) -> str:
        now = self.clock()
        if incident.auto_resolve_at is not None:
            return "repeated"  # already resolving: the quiet period keeps its start
        last = self._cleared_at.get(incident.id)
        if last is not None and now - last < REPEAT_LOG_INTERVAL:
            return "repeated"  # the other alerts of a group, or a resend: one notice
        self._cleared_at[incident.id] = now
        book = self.context().runbooks.get(incident.runbook)
        if book is not None and book.resolve.auto:
            at = now + book.resolve.quiet_period.total_seconds()
            self.store.set_incident_fields(incident.id, auto_resolve_at=at)
            self.store.log(incident.id, now, "signal_resolved", f"feed:{signal.source}",
                           {"auto_resolve_at": rfc3339(at)})
            self._schedule_auto_resolve(incident.id, at)
            return "resolving"
        self.store.log(incident.id, now, "signal_resolved", f"feed:{signal.source}",
                       {"note": "source cleared; resolve by command"})
        if book is not None:
            text = (f"INC-{incident.id} ({incident.title}): the source {signal.source} reports "
                    f"it has cleared. Resolve with: switchboard incident resolve INC-{incident.id}")
            self.notify(incident.id, list(book.handover.notify), text, "source-cleared")
        return "cleared"

    def notify(self, incident_id: int, channels: list[str], text: str, why: str) -> None:
        """Internal notice (ops chat) sent as an operational post, recorded like any post."""
        live = [c for c in channels if c in self.dispatcher.workers]
        if not live:
            return
        now = self.clock()
        ids = self.store.add_posts([NewPost(channel=c, kind="operational", text=text,
                                            due_at=now, state=PostState.QUEUED,
                                            incident_id=incident_id,
                                            origin=PostOrigin.SEND_NOW) for c in live],
                                   f"runbook:{why}", now)
        for post in self.store.posts(ids):
            self.dispatcher.route(post)
        self.store.log(incident_id, now, "notified", "runbook",
                       {"channels": live, "why": why, "posts": ids})

    def _schedule_auto_resolve(self, incident_id: int, at: float) -> None:
        self.scheduler.add_job(self._auto_resolve, DateTrigger(run_date=to_datetime(at)),
                               args=[incident_id], id=f"autoresolve-{incident_id}",
                               replace_existing=True, misfire_grace_time=None)

    def _cancel_auto_resolve(self, incident_id: int) -> None:
        self.store.set_incident_fields(incident_id, auto_resolve_at=None)
        if self.scheduler.get_job(f"autoresolve-{incident_id}"):
            self.scheduler.remove_job(f"autoresolve-{incident_id}")

    async def _auto_resolve(self, incident_id: int) -> None:
        incident = self._get(incident_id)
        if incident.state == "active" and incident.auto_resolve_at is not None:
            self.resolve(incident_id, actor="feed", note="source quiet for the quiet period")

    # -- queries -----------------------------------------------------------

    def _get(self, incident_id: int) -> Incident:
        incident = self.store.incident(incident_id)
        if incident is None:
            raise refusals.not_found(f"no incident INC-{incident_id}")
        return incident

    def refresh_metrics(self) -> None:
        now = self.clock()
        active = self.store.incidents()
        self.metrics.incidents_active.set(len(active))
        oldest = min((i.declared_at for i in active), default=None)
        self.metrics.incident_oldest_open_seconds.set(0 if oldest is None else now - oldest)
        controlled = self.gate.channels_under_control(now)
        channels = self.context().channels
        if channels.keys() != self._gauged:  # start-up or a reload: every channel
            self._gauged, changed = set(channels), set(channels)
        else:
            changed = controlled ^ self._shown
        for channel in changed & self._gauged:
            gauge = self._gauges.get(channel)
            if gauge is None:  # `labels()` costs microseconds: looked up once per channel
                gauge = self._gauges[channel] = self.metrics.channel_under_incident.labels(
                    channel=channel)
            gauge.set(1 if channel in controlled else 0)
        self._shown = controlled & self._gauged


# How often an unchanged repeat of an incident's signal is written to its timeline.
REPEAT_LOG_INTERVAL = 600.0


def _content(signal: Signal) -> str:
    return json.dumps([signal.title, sorted(signal.labels.items())])


REVIEW_COMMAND = "switchboard post list --state held"


def review_notice(incident: Incident, held: int) -> str:
    posts = "post is" if held == 1 else "posts are"
    return (f"INC-{incident.id} ({incident.title}): channels back with marketing; {held} held "
            f"{posts} waiting for review: {REVIEW_COMMAND}")


def void_notice(incident: Incident, actor: str, reason: str, retracted: list[int],
                rescheduled: int, held: int) -> str:
    text = (f"INC-{incident.id} ({incident.title}) voided by {actor}: {reason}. Channels back "
            f"with marketing; {len(retracted)} holding statement(s)/update(s) retracted, "
            f"{rescheduled} post(s) back on the schedule")
    if held:
        text += f", {held} waiting for review: {REVIEW_COMMAND}"
    return text + "."


def parse_incident_id(value: str) -> int:
    text = value.strip().upper()
    number = text[4:] if text.startswith("INC-") else text
    if not (number.isascii() and number.isdigit() and len(number) <= 18):
        raise refusals.bad_request(f"bad incident id {value[:40]!r} (expected INC-<n>)")
    return int(number)


def signal_key(signal: Signal) -> str:
    return f"{signal.source}:{signal.key}"


def group_key(signal: Signal) -> str:
    """The key an incident declared for a whole Alertmanager group is kept under."""
    return f"{signal.source}:group:{signal.group}"


def _severity(signal: Signal) -> str | None:
    """The feed's severity where it maps onto the incident vocabulary."""
    severity = signal.labels.get("severity")
    return severity if severity in SEVERITIES else None


def signal_json(signal: Signal) -> dict[str, Any]:
    return {"source": signal.source, "key": signal.key, "status": signal.status,
            "title": signal.title, "at": signal.at.isoformat(), "labels": signal.labels,
            "annotations": signal.annotations}


def incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "id": f"INC-{incident.id}",
        "title": incident.title,
        "runbook": incident.runbook,
        "severity": incident.severity,
        "state": incident.state,
        "channels": incident.channels,
        "suppress": incident.suppress,
        "reason": incident.reason,
        "source": incident.source,
        "signal_key": incident.signal_key,
        "declared_at": rfc3339(incident.declared_at),
        "declared_by": incident.declared_by,
        "resolved_at": rfc3339(incident.resolved_at),
        "resolved_by": incident.resolved_by,
        "resolve_note": incident.resolve_note,
        "cooldown_until": rfc3339(incident.cooldown_until),
        "in_cooldown": incident.state == "resolved" and not incident.held_done,
        "last_operational_at": rfc3339(incident.last_operational_at),
    }
