"""A publisher's roles on a shared database: a standby (or a leader that lost
its lease) claims and sends nothing; what it is asked to send it leaves to
the leader, stored due now, and its caller still gets the outcome."""

from __future__ import annotations

import asyncio

from switchboard.leadership import Leader
from switchboard.model import Post
from switchboard.poststates import PostState
from switchboard.publisher.worker import Waiter
from switchboard.store import Store
from switchboard.timer import Timer

JOB_ID = "dispatch"
HANDED_POLL = 0.2  # seconds between looks at a send this standby left to the leader


class HandOver:
    """Pause, resume and the hand-over to the leader (Publisher's part)."""

    store: Store
    timer: Timer
    leader: Leader
    orphans: set[int]
    _paused: bool
    _armed_at: float | None
    _waits: set[asyncio.Task[None]]

    async def arm(self, due: float | None = None) -> None:
        raise NotImplementedError

    def may_send(self) -> bool:
        """Asked with the gate at the true start of each send: a leader that fenced
        itself (frozen, cut off) never starts one, even one claimed before."""
        return not self._paused and self.leader.may_act()

    def pause(self) -> None:
        """Lost the lease: claim nothing more; what the workers hold is refused at
        its claim (the store's fence) or at its start (`may_send`)."""
        self._paused = True
        self.timer.cancel(JOB_ID)
        self._armed_at = None

    async def resume(self) -> None:
        """Became leader (after store.recover, which put every post left `queued` or
        `sending` right): the timer again, for the earliest due post."""
        self.orphans.clear()
        self._paused = False
        await self.arm()

    def _first_state(self) -> PostState:
        # A standby sends nothing itself: its posts are due now, for the leader to claim.
        return PostState.SCHEDULED if self._paused else PostState.QUEUED

    async def _route_to_leader(self, posts: list[Post], waiters: dict[int, Waiter]) -> None:
        now = self.timer.now()
        ids = [p.id for p in posts]
        await self.store.transition(ids, PostState.SCHEDULED, (PostState.QUEUED,), now,
                                    "dispatcher", "left to the leader", due_at=now)
        waiting = [i for i in ids if i in waiters]
        if waiting:
            task = asyncio.get_running_loop().create_task(self._tell_waiters(waiting, waiters))
            self._waits.add(task)
            task.add_done_callback(self._waits.discard)
        else:
            self.leader.wake("posts")

    async def _tell_waiters(self, ids: list[int], waiters: dict[int, Waiter]) -> None:
        for post in await self._handed_over(ids, 120.0):
            waiter = waiters[post.id]
            if not waiter.done():
                waiter.set_result(post)

    async def _handed_over(self, ids: list[int], timeout: float) -> list[Post]:
        """A send asked of a standby: the leader claims it (woken by a notice, or
        its next poll); the caller gets the posts once each has an outcome, or as
        they stand after `timeout`, like any send."""
        self.leader.wake("posts")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = {PostState.SCHEDULED, PostState.QUEUED, PostState.SENDING}
        while True:
            posts = await self.store.posts(ids)
            if loop.time() >= deadline or not any(p.state in pending for p in posts):
                return posts
            await asyncio.sleep(HANDED_POLL)
