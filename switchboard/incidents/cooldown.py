"""The end of a cooldown: the held posts follow the runbook's policy (drop,
review, reschedule spaced per channel) and the channels go back to marketing.

The channels are let go first (a held post cannot be claimed, so none goes
out early); then the policy moves the held posts in parts of RELEASE_PART,
each one transaction, never one per post, so that a declaration waits for
at most one part; last, the incident is marked done and the timeline counts
what the policy did from the posts' own history. A failure or a crash at any
point leaves the rest to the retry (or the restart), which finishes it and
still counts every post, and ops is told of the posts held for review.
"""

from __future__ import annotations

from datetime import timedelta

from switchboard import refusals
from switchboard.incidents.core import IncidentsBase
from switchboard.incidents.views import review_notice
from switchboard.model import HeldPlan, Incident, Post
from switchboard.poststates import PostState

RELEASE_RETRY = 30.0  # seconds before a release the store could not take is tried again
RELEASE_PART = 500  # held posts per transaction (under 10 ms of the store's writer)


def spaced_train(posts: list[Post], start: float,
                 spacing: timedelta) -> tuple[list[tuple[int, float]], list[int]]:
    """One channel's posts back on the schedule in order, `spacing` apart from
    `start`: (post id, due) each, and the posts that would expire before their
    slot, which leave no gap in the train."""
    step = spacing.total_seconds()
    train: list[tuple[int, float]] = []
    late: list[int] = []
    for post in posts:
        due = start + len(train) * step
        if post.expires_at is not None and due >= post.expires_at:
            late.append(post.id)
        else:
            train.append((post.id, due))
    return train, late


def plan(held: list[Post], policy: str, spacing: timedelta, now: float) -> HeldPlan:
    """What the held-post policy does with the incident's suppressed posts."""
    reason = f"held-post policy {policy}"
    if policy in ("drop", "review"):
        return HeldPlan(policy, reason, ids=tuple(p.id for p in held),
                        to_state=PostState.DROPPED if policy == "drop" else PostState.HELD)
    expired = [p.id for p in held if p.expires_at is not None and p.expires_at <= now]
    by_channel: dict[str, list[Post]] = {}
    for post in held:
        if post.id not in expired:
            by_channel.setdefault(post.channel, []).append(post)
    moves: list[tuple[int, float]] = []
    for posts in by_channel.values():
        train, late = spaced_train(posts, now, spacing)
        moves += train
        expired += late
    return HeldPlan("reschedule", reason, moves=tuple(moves), expired=tuple(expired),
                    expired_reason=f"{reason}: past expires_at, or would be before its new "
                                   "slot")


class Cooldowns(IncidentsBase):
    """Ending cooldowns, at their time or early by command."""

    def schedule_release(self, incident: Incident) -> None:
        at = incident.cooldown_until or self.clock()
        self.timer.call_at(f"release-{incident.id}", at, self._release, incident.id)

    async def _release(self, incident_id: int) -> None:
        """Cooldown over: apply the held-post policy, then let go of the channels."""
        try:
            await self._release_now(incident_id)
        except Exception:
            # A one-shot job: on a store error try again, or the channels would
            # stay held until a restart.
            self.log.exception("release_failed", incident=f"INC-{incident_id}")
            self.timer.call_at(f"release-{incident_id}", self.clock() + RELEASE_RETRY,
                               self._release, incident_id)

    async def _release_now(self, incident_id: int) -> None:
        incident = await self._get(incident_id)
        book = self.context().runbooks.get(incident.runbook)
        policy = book.resolve.held_posts if book else "review"
        spacing = book.resolve.min_spacing if book else timedelta(minutes=5)
        now = self.clock()
        # The channels first: a held post cannot be claimed, and one put back on the
        # schedule must not meet its incident's hold again.
        await self.store.release_holds(incident_id)
        self.gate.release(incident_id)
        held = await self.store.list_posts((PostState.SUPPRESSED,), incident_id=incident_id,
                                           limit=1_000_000)
        steps = plan(held, policy, spacing, now)
        # In parts, each its own transaction: a declaration waiting for the store's
        # writer meanwhile goes in between two parts, never behind 10,000 posts.
        for part in steps.chunks(RELEASE_PART):
            await self.store.move_held(part, now)
        outcome = await self.store.finish_cooldown(incident_id, steps, now)
        self.touch(incident_id)
        self.log.info("channels_released", incident=f"INC-{incident_id}", policy=policy,
                      **outcome)
        if outcome.get("held") and book is not None:
            await self.publisher.notify(incident_id, list(book.handover.notify),
                                        review_notice(incident, outcome["held"]), "review")
        await self.publisher.arm()
        await self.refresh_metrics()

    # -- void and early release ---------------------------------------------

    async def release(self, incident_id: int, *, actor: str, reason: str) -> Incident:
        """End a cooldown now: the held-post policy runs and the channels return."""
        incident = await self._get(incident_id)
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
        await self.store.set_incident_fields(incident_id, cooldown_until=now)
        self.touch(incident_id)
        await self.store.log(incident_id, now, "cooldown_ended", actor,
                       {"reason": reason, "was_until": incident.cooldown_until})
        self.gate.set_until(incident_id, now)
        await self._release_now(incident_id)
        self.timer.cancel(f"release-{incident_id}")
        return await self._get(incident_id)
