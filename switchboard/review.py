"""Marketing's review of posts: cancel, release, drop, and edits before a send.

Each post moves on its own (one refusal stops nothing in a bulk action); a
released post goes back on the schedule and the publisher's timer follows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from switchboard.clock import rfc3339
from switchboard.config import Config
from switchboard.model import Post
from switchboard.posts import (
    EDITABLE_STATES,
    ChannelLimit,
    describe_changes,
    post_edit,
    release_times,
)
from switchboard.poststates import PostState
from switchboard.publisher import Publisher
from switchboard.refusals import Refused, conflict, not_found
from switchboard.store import Store
from switchboard.timer import Timer

RELEASABLE = ("held", "unknown", "failed", "missed")
# `queued` is shown as scheduled: it can be cancelled until its send starts.
MOVES = {"cancel": ("cancelled", ("scheduled", "queued")),
         "release": ("scheduled", RELEASABLE),
         "drop": ("dropped", ("held", "unknown", "failed", "missed", "suppressed"))}


class Review:
    def __init__(self, store: Store, publisher: Publisher, timer: Timer,
                 config: Callable[[], Config]) -> None:
        self.store, self.publisher, self.timer, self.config = store, publisher, timer, config

    async def _get(self, post_id: int) -> Post:
        post = await self.store.post(post_id)
        if post is None:
            raise not_found(f"no post {post_id}")
        return post

    async def review(self, post_id: int, action: str, actor: str, at: float | None) -> Post:
        """cancel / release / drop one post (marketing's review of held posts)."""
        post = await self._get(post_id)
        now = self.timer.now()
        to_state, allowed = MOVES[action]
        fields: dict[str, Any] = {}
        if action == "release":
            fields["due_at"] = now if at is None else at
            fields["error"] = None
        if not await self.store.transition([post_id], PostState(to_state),
                                           tuple(PostState(a) for a in allowed), now, actor,
                                           f"{action} by {actor}", **fields):
            raise conflict(f"post {post_id} is {post.state}; {action} needs it "
                           f"{' or '.join(allowed)}")
        if action == "release":
            self.publisher.poke(fields["due_at"])
        return await self._get(post_id)

    async def edit_post(self, post_id: int, body: dict[str, Any], role: str, actor: str,
                        channels: dict[str, ChannelLimit]) -> Post:
        """`post edit`: new text, time, channel or expiry for a post not yet sending.

        A marketing post on a channel that needs approval waits for an approver
        again after any edit: what was approved is not what would go out.
        """
        post = await self._get(post_id)
        config = self.config()
        changes = post_edit(post, body, role=role, now=self.timer.now(), tz=config.timezone,
                            channels=channels)
        if changes:
            if post.state == "queued" and not self.publisher.take_back(post):
                raise conflict(f"post {post_id} is being sent; it can no longer be edited")
            reason = describe_changes(post, changes)
            again = post.kind == "marketing" and config.needs_approval(
                changes.get("channel", post.channel))
            if again and post.state != "pending_approval":
                reason += "; needs approval again"
            if not await self.store.update_post_fields(post_id, changes, EDITABLE_STATES,
                                                       self.timer.now(), actor, reason,
                                                       "pending_approval" if again else None):
                # Out of its queue but not edited: back to the schedule, never stranded.
                await self.store.transition([post_id], PostState.SCHEDULED,
                                            (PostState.QUEUED,), self.timer.now(), actor,
                                            "edit failed; returned to the schedule")
                await self.publisher.arm()
                raise conflict(f"post {post_id} changed state meanwhile; see post show")
            # Earlier or later: the timer must follow the new time.
            await self.publisher.arm()
        return await self._get(post_id)

    async def review_many(self, ids: list[int], action: str, actor: str, at: float | None,
                          spacing: timedelta | None,
                          may_act: Callable[[Post], None] = lambda post: None) -> dict[str, Any]:
        """Bulk cancel / release / drop; each post on its own, so one refusal stops nothing.

        `may_act` raises Refused for a post the caller's rights do not reach. A
        spaced release gives each channel's posts one slot per `spacing`, the
        first at `at` (or now).
        """
        posts = {p.id: p for p in await self.store.posts(ids)}
        refused: list[dict[str, Any]] = []
        for post in list(posts.values()):
            try:
                may_act(post)
            except Refused as exc:
                refused.append({"id": post.id, "reason": exc.message})
                del posts[post.id]
        turned_away = {r["id"] for r in refused}
        start = self.timer.now() if at is None else at
        times: dict[int, float] = {}
        if action == "release":
            ready = [p for p in posts.values() if p.state in RELEASABLE]
            times = release_times(ready, start, spacing or timedelta())
        done: list[int] = []
        for post_id in ids:
            if post_id in turned_away:
                continue
            if post_id not in posts:
                refused.append({"id": post_id, "reason": f"no post {post_id}"})
                continue
            try:
                await self.review(post_id, action, actor, times.get(post_id, at))
            except Refused as exc:
                refused.append({"id": post_id, "reason": exc.message})
                continue
            done.append(post_id)
        return {"action": action, "done": done, "refused": refused,
                "due_at": {str(i): rfc3339(times[i]) for i in done if i in times}}
