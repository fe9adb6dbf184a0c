"""False alarms: `incident void` gives the channels back at once, with no
all-clear and no cooldown, and retracts what the incident posted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from switchboard import refusals
from switchboard.incidents.cooldown import Cooldowns, spaced_train
from switchboard.incidents.views import void_notice
from switchboard.model import Incident, Post
from switchboard.poststates import PostState


@dataclass(frozen=True)
class Voided:
    """What `incident void` did."""

    incident: Incident
    rescheduled: list[int]
    held: list[int]
    retracted: list[int]
    retract_failed: list[str]


class Voids(Cooldowns):
    """Voiding an active incident, and finishing a void a crash cut short."""

    async def void(self, incident_id: int, *, actor: str, reason: str) -> Voided:
        """A false alarm: no all-clear, no cooldown; the channels return to marketing
        at once, the posts it suppressed go back to the schedule when their slot is
        still good (else to review), and its holding statement and updates are
        retracted where the channel can delete them."""
        incident = await self._get(incident_id)
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
        requeue, review = await self._void_plan(incident_id, spacing, now)
        # The gate opens only once the void is committed: a send may see the
        # incident still holding its channel, never the other way round.
        if not await self.store.void(incident_id, actor=actor, reason=reason, now=now,
                               requeue=requeue, review=review):
            raise refusals.conflict(f"INC-{incident_id} is no longer active")
        self.touch(incident_id)
        self.gate.release(incident_id)
        await self._hold_stragglers(incident_id, actor, now)
        self.forget(incident_id)
        self.log.warning("incident_voided", incident=f"INC-{incident_id}", actor=actor,
                         reason=reason, rescheduled=len(requeue), held=len(review))
        await self.publisher.arm()
        await self.refresh_metrics()
        retracted, failed = await self._finish_void(incident_id)
        if book is not None:
            await self.publisher.notify(incident_id, list(book.handover.notify),
                                        void_notice(incident, actor, reason, retracted,
                                                    len(requeue), len(review)), "voided")
        return Voided(await self._get(incident_id), [i for i, _ in requeue], list(review),
                      retracted, failed)

    async def resume_void(self, incident_id: int) -> None:
        """At start-up: finish a void that a crash cut short."""
        await self._finish_void(incident_id)

    async def _finish_void(self, incident_id: int) -> tuple[list[int], list[str]]:
        """Retract a voided incident's updates; also run at start-up for a void that a
        crash interrupted before its retractions were recorded."""
        outcome = await self._retract_updates(await self._get(incident_id))
        await self.store.set_incident_fields(incident_id, held_done=1)
        self.touch(incident_id)
        return outcome

    async def _void_plan(self, incident_id: int, spacing: timedelta,
                   now: float) -> tuple[list[tuple[int, float]], list[int]]:
        """Which suppressed posts go back on the schedule (spaced per channel, as after
        a cooldown) and which need review: those whose slot is older than
        max_lateness, or that would expire before their new slot."""
        late = self.publisher.max_lateness
        by_channel: dict[str, list[Post]] = {}
        review: list[int] = []
        for post in await self.store.list_posts((PostState.SUPPRESSED,), incident_id=incident_id,
                                          limit=1_000_000):
            if now - post.due_at > late:
                review.append(post.id)
            else:
                by_channel.setdefault(post.channel, []).append(post)
        requeue: list[tuple[int, float]] = []
        for posts in by_channel.values():
            train, expiring = spaced_train(posts, now, spacing)
            requeue += train
            review += expiring
        return requeue, review

    async def _hold_stragglers(self, incident_id: int, actor: str, now: float) -> None:
        """A post a worker suppressed for this incident while the void was being
        committed: held for review, never left suppressed for an incident gone."""
        left = await self.store.list_posts((PostState.SUPPRESSED,), incident_id=incident_id,
                                           limit=1_000_000)
        if left:
            await self.store.transition([p.id for p in left], PostState.HELD,
                                        (PostState.SUPPRESSED,), now, actor,
                                        "suppressed while the void was recorded")

    def forget(self, incident_id: int) -> None:
        """Timers of an incident that ended without a resolution."""
        self.timer.cancel_prefix(f"step-{incident_id}-")
        self.timer.cancel(f"autoresolve-{incident_id}")
        self.timer.cancel(f"release-{incident_id}")
        # The signal key stays mapped to the voided incident: while its source goes
        # on firing (an alert repeating), it must not declare the false alarm again.
        self.metrics.operational_update_overdue.labels(incident=f"INC-{incident_id}").set(0)

    async def _updates(self, incident_id: int) -> set[int]:
        """The operational posts an incident's timeline records as sent for it."""
        ids: set[int] = set()
        for entry in await self.store.timeline(incident_id):
            if entry.event == "post_sent":
                ids.add(int(entry.detail["post"]))
            elif entry.event == "update_posted":
                ids.update(int(i) for i in entry.detail.get("posts", []))
        return ids

    async def _retract_updates(self, incident: Incident) -> tuple[list[int], list[str]]:
        """Delete the incident's published holding statement and updates; a post that
        also served an overlapping incident still active stays up."""
        ids = await self._updates(incident.id)
        for other in await self.store.incidents():
            if set(other.channels) & set(incident.channels):
                ids -= await self._updates(other.id)
        retracted: list[int] = []
        failed: list[str] = []
        for post in await self.store.posts(sorted(ids)):
            if post.state != PostState.PUBLISHED or post.kind != "operational":
                continue
            why_not = await self.publisher.retract(post, "daemon", f"INC-{incident.id} voided")
            if why_not is None:
                retracted.append(post.id)
            else:
                failed.append(why_not)
        await self.store.log(incident.id, self.clock(), "updates_retracted", "daemon",
                       {"posts": retracted, "failed": failed})
        return retracted, failed
