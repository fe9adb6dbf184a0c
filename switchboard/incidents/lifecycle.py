"""The life of an incident: loaded at start-up, declared, updated, resolved."""

from __future__ import annotations

from datetime import timedelta

from switchboard import refusals
from switchboard.clock import rfc3339
from switchboard.config import SEVERITIES
from switchboard.feeds.signal import Signal
from switchboard.incidents.views import signal_json, signal_key
from switchboard.incidents.void import Voids
from switchboard.model import Incident, NewPost, Post
from switchboard.poststates import PostOrigin, PostState
from switchboard.store import RequestKey


class Incidents(Voids):
    """Every incident operation the API, the console and the feeds call."""

    # -- start-up ----------------------------------------------------------

    async def load(self) -> None:
        """Rebuild the gate from the store (a crash must not reopen it)."""
        known = await self.store.incidents(include_resolved=True, limit=100_000)
        suppress = {i.id: i.suppress for i in known if i.state == "active" or not i.held_done}
        for hold in await self.store.holds():
            self.gate.hold(hold.channel, hold.incident_id,
                           suppress.get(hold.incident_id, ["marketing"]), hold.until)
        awaiting = await self.store.incidents_awaiting_release()
        for incident in awaiting:
            self.schedule_release(incident)
        # Active incidents resume their steps; resolved ones in cooldown finish
        # any resolve step a crash interrupted.
        active = await self.store.incidents(limit=None)
        for incident in active:
            if incident.signal_key is not None:
                self.by_signal[incident.signal_key] = incident.id
        # A void that a crash cut short still retracts what it had not yet.
        for incident in known:
            if incident.state == "voided" and not incident.held_done:
                self.timer.call_at(f"void-{incident.id}", self.clock(), self.resume_void,
                                   incident.id)
        for incident in [*active, *awaiting]:
            runbook = self.context().runbooks.get(incident.runbook)
            if incident.auto_resolve_at is not None:
                self.schedule_auto_resolve(incident.id, incident.auto_resolve_at)
            if runbook is not None:
                await self.steps.resume(incident, runbook)
        await self.refresh_metrics()

    # -- declare -----------------------------------------------------------

    async def declare(self, *, runbook: str, title: str, actor: str, severity: str | None = None,
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
        incident = await self.store.declared(
            title=title, runbook=runbook, severity=severity or book.severity, channels=scope,
            suppress=list(book.suppress), reason=reason, source=source,
            signal_key=None if signal is None else signal_key(signal),
            signal=None if signal is None else signal_json(signal), actor=actor, now=now,
            request=request)
        self.gate.hold_many(scope, incident.id, book.suppress)
        if self.holds_committed is not None:
            await self.holds_committed(incident.id)
        if incident.signal_key is not None:
            self.by_signal[incident.signal_key] = incident.id
        self.log.warning("incident_declared", incident=f"INC-{incident.id}", runbook=runbook,
                         channels=scope, actor=actor, source=source)
        self.refresh_metrics_soon()  # the gauges follow; the answer does not wait for them
        self.steps.on_declared(incident, book)
        return incident

    # -- resolve -----------------------------------------------------------

    async def resolve(self, incident_id: int, *, actor: str, note: str | None = None) -> Incident:
        incident = await self._get(incident_id)
        if incident.state != "active":
            raise refusals.conflict(f"INC-{incident_id} is already resolved")
        book = self.context().runbooks.get(incident.runbook)
        cooldown = book.resolve.cooldown if book else timedelta(0)
        now = self.clock()
        until = now + cooldown.total_seconds()
        if not await self.store.resolve(incident_id, actor=actor, note=note, now=now,
                                        cooldown_until=until):
            # Resolved (or voided) meanwhile, by a request racing this one.
            raise refusals.conflict(f"INC-{incident_id} is already resolved")
        self.touch(incident_id)
        self.gate.set_until(incident_id, until)
        await self.cancel_auto_resolve(incident_id)
        if incident.signal_key is not None:
            self.by_signal.pop(incident.signal_key, None)
        resolved = await self._get(incident_id)
        self.log.warning("incident_resolved", incident=f"INC-{incident_id}", actor=actor,
                         cooldown_until=rfc3339(until))
        if book is not None:
            self.steps.on_resolved(resolved, book)
        self.schedule_release(resolved)
        await self.refresh_metrics()
        return resolved

    def schedule_auto_resolve(self, incident_id: int, at: float) -> None:
        self.timer.call_at(f"autoresolve-{incident_id}", at, self._auto_resolve, incident_id)

    # -- queries and updates ------------------------------------------------

    async def listing(self, everything: bool) -> list[Incident]:
        """`incident list`: the active incidents and those in cooldown, or all."""
        if everything:
            return await self.store.incidents(include_resolved=True)
        current = {i.id: i for i in await self.store.incidents()}
        current.update({i.id: i for i in await self.store.incidents_awaiting_release()})
        return [current[k] for k in sorted(current, reverse=True)]

    async def update(self, incident_id: int, text: str, actor: str) -> list[Post]:
        """An operational post to the incident's public channels, now."""
        incident = await self._get(incident_id)
        if incident.state != "active":
            raise refusals.conflict(f"INC-{incident_id} is resolved; post with `post send`")
        ctx = self.context()
        public = [c for c in incident.channels
                  if c in ctx.channels and ctx.channels[c].audience == "public"]
        if not public:
            raise refusals.unprocessable(f"INC-{incident_id} has no public channel to post to")
        for channel in public:
            worker = self.publisher.workers.get(channel)
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
            ids = await self.store.add_posts([NewPost(c, "operational", text, now,
                                                state=PostState.PENDING_APPROVAL,
                                                incident_id=incident_id,
                                                origin=PostOrigin.SEND_NOW) for c in public],
                                       actor, now)
            await self.store.log(incident_id, now, "update_pending", actor,
                           {"posts": ids, "text": text})
            return await self.store.posts(ids)
        posts = await self.publisher.submit([(c, text) for c in public], actor,
                                            incident_id=incident_id)
        await self.store.log(incident_id, self.clock(), "update_posted", actor,
                       {"posts": [p.id for p in posts], "text": text})
        return posts
