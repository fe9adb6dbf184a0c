"""The Publisher: the one way posts go out (claim -> gate -> send -> record).

Posts stay in the store; one timer is armed for the earliest due post and
re-armed when an earlier one arrives (one job per post does not scale). The
tick moves due posts `scheduled -> queued` (late ones become `missed`, old
offers `expired`) and hands them to their channel's worker. `sending` is
committed before the platform call, so a crash leaves `sending`, which
start-up turns into `unknown` (never re-sent).

Operational posts that go out count as updates of the incidents that hold
their channel: the publisher records that with the outcome, in the same
shared transaction.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from switchboard.channels.base import Channel, ChannelError, LastError
from switchboard.clock import to_datetime
from switchboard.gate import Gate
from switchboard.leadership import Leader, SoleLeader
from switchboard.metrics import Metrics
from switchboard.model import NewPost, Post, SendOutcome
from switchboard.poststates import PostOrigin, PostState
from switchboard.publisher.handover import JOB_ID, HandOver
from switchboard.publisher.shared import Shared
from switchboard.publisher.worker import INTERNAL_ERROR, ChannelWorker, Waiter
from switchboard.store import Claim, RequestKey, Store, StoreUnavailable
from switchboard.store.channels import ChannelError as StoredError
from switchboard.timer import Timer

RETRY_AFTER_ERROR = 2.0  # seconds before a tick that hit a store error runs again
CLAIM_BATCH = 1000


class Publisher(HandOver):
    def __init__(self, store: Store, gate: Gate, channels: dict[str, Channel], timer: Timer,
                 metrics: Metrics, max_lateness: timedelta, leader: Leader | None = None) -> None:
        self.store, self.gate, self.metrics, self.timer = store, gate, metrics, timer
        # Only the leader claims and sends (design §7.3); SQLite's daemon always leads.
        self.leader: Leader = leader or SoleLeader()
        self.max_lateness = max_lateness.total_seconds()
        self.log = structlog.get_logger("dispatcher")
        self.claims: Shared[int, Claim] = Shared(self._claim_all)
        self.records: Shared[tuple[Post, SendOutcome], None] = Shared(self._record_all)
        self.errors: Shared[StoredError, None] = Shared(self._save_errors)
        # Each channel's last error as stored: only a change is written.
        self._saved: dict[str, tuple[float, str, bool]] = {}
        self.workers = {cid: ChannelWorker(self, ch) for cid, ch in channels.items()}
        self._armed_at: float | None = None
        self._accepting = True
        self._paused = False  # a standby, or a leader that lost its lease: no claims
        self._waits: set[asyncio.Task[None]] = set()  # callers' sends left to the leader
        self._pokes = 0  # counts pokes, so an arm() that awaited the store sees them
        # Posts left `queued` by a worker that could not hand them back (the
        # store failing): the next tick returns them to `scheduled`.
        self.orphans: set[int] = set()

    async def start(self, paused: bool = False) -> None:
        """Each channel's last error as the store kept it, then the timer (not
        while `paused`: a standby arms it when it becomes leader, `resume`)."""
        self._saved = await self.store.channel_errors()
        for cid, worker in self.workers.items():
            self._restore_error(worker.channel, cid)
        self._paused = paused
        await self.arm()

    def _restore_error(self, channel: Channel, cid: str) -> None:
        saved = self._saved.get(cid)
        if channel.last_error is None and saved is not None:
            at, message, permanent = saved
            channel.last_error = LastError(to_datetime(at), message, permanent)
            self.metrics.channel_last_error_timestamp_seconds.labels(channel=cid).set(at)

    async def note_error(self, channel: Channel) -> None:
        """Store the channel's last error if it changed (or was cleared by a success)."""
        err = channel.last_error
        now = None if err is None else (err.at.timestamp(), err.message, err.permanent)
        if now == self._saved.get(channel.id):
            return
        stored: StoredError = (channel.id, None, "", False) if now is None else (channel.id, *now)
        try:
            await self.errors([stored])
        except Exception:  # a message lost, never a post: the send goes on
            self.log.exception("channel_error_not_stored", channel=channel.id)
            return
        if now is None:
            self._saved.pop(channel.id, None)
        else:
            self._saved[channel.id] = now

    def channels(self) -> dict[str, Channel]:
        return {cid: w.channel for cid, w in self.workers.items()}

    # -- the timer ---------------------------------------------------------

    async def arm(self, due: float | None = None) -> None:
        """Arm the timer for the earliest pending post (or `due`, if earlier)."""
        if not self._accepting or self._paused:
            return
        next_due = due
        if due is None:
            pokes = self._pokes
            next_due = await self.store.next_due()
            if pokes != self._pokes and self._armed_at is not None:
                # A post added while the store was asked: its time may be earlier.
                next_due = min(self._armed_at, next_due or self._armed_at)
        if next_due is None:
            self.timer.cancel(JOB_ID)
            self._armed_at = None
            return
        self._armed_at = next_due
        self.timer.call_at(JOB_ID, next_due, self.tick)

    def poke(self, due_at: float) -> None:
        """A post was added: re-arm if it is due before the armed time."""
        self._pokes += 1
        if self._paused:
            self.leader.wake("posts")
        elif self._accepting and (self._armed_at is None or due_at < self._armed_at):
            self._armed_at = due_at
            self.timer.call_at(JOB_ID, due_at, self.tick)

    async def tick(self) -> None:
        now = self.timer.now()
        self._armed_at = None
        if not self.may_send():
            return  # fenced before the pause came: re-armed at `resume`, not in a loop
        try:
            await self._return_orphans(now)
            missed = await self.store.mark_missed(now - self.max_lateness, now)
            if missed:
                self.log.warning("posts_missed", count=len(missed),
                                 max_lateness=self.max_lateness)
            batch, held = (await self.store.claim_due_held(now, CLAIM_BATCH,
                                                           self.leader.fence())
                           if self._accepting else ([], []))
        except StoreUnavailable as exc:
            # Busy, full or lost: nothing is claimed (fail closed); said once a tick,
            # without a traceback that would say nothing more.
            self.log.warning("dispatch_paused", reason=exc.reason, error=exc.message)
            await self.arm(now + RETRY_AFTER_ERROR)
            return
        except Exception:
            # The timer is a one-shot job: without this the dispatcher would stop
            # for good on one store error. Try again shortly (not in a tight loop).
            self.log.exception("dispatch_tick_failed")
            await self.arm(now + RETRY_AFTER_ERROR)
            return
        for _, channel in held:
            self.metrics.posts_suppressed.labels(channel=channel).inc()
        await self.route(batch)
        # A full batch means more are due: come back at once, after the loop
        # has served whatever else is waiting (a declaration, say).
        await self.arm(now if len(batch) == CLAIM_BATCH else None)

    async def _return_orphans(self, now: float) -> None:
        if not self.orphans:
            return
        ids = sorted(self.orphans)
        await self.store.transition(ids, PostState.SCHEDULED, (PostState.QUEUED,), now,
                                    "dispatcher", "returned after an internal error")
        await self.store.transition(ids, PostState.UNKNOWN, (PostState.SENDING,), now,
                                    "dispatcher", INTERNAL_ERROR)
        self.orphans.difference_update(ids)

    # -- handing posts to the workers ----------------------------------------

    async def route(self, posts: list[Post], waiters: dict[int, Waiter] | None = None) -> None:
        """Each `queued` post to its channel's worker; a post whose channel left the
        config (a reload) fails, visibly, and its caller learns it. A standby hands
        them to the leader instead (due now)."""
        waiters = waiters or {}
        if self._paused and posts:
            await self._route_to_leader(posts, waiters)
            return
        orphaned = []
        for post in posts:
            worker = self.workers.get(post.channel)
            if worker is None:
                orphaned.append(post)
            else:
                worker.enqueue(post, waiters.get(post.id))
        for post in orphaned:
            await self.store.transition([post.id], PostState.FAILED, (PostState.QUEUED,),
                                        self.timer.now(), "dispatcher",
                                        "channel no longer configured",
                                        error=f"channel {post.channel} is not configured")
        waiting = [p.id for p in orphaned if p.id in waiters]
        for failed in await self.store.posts(waiting) if waiting else []:
            if not waiters[failed.id].done():
                waiters[failed.id].set_result(failed)

    async def submit(self, texts: list[tuple[str, str]], actor: str, kind: str = "operational",
                     timeout: float = 120.0, request: RequestKey | None = None,
                     incident_id: int | None = None, immediate: bool = False,
                     link: str | None = None) -> list[Post]:
        """Send now: (channel, text) pairs, stored in one transaction, sent through
        the gate by each channel's worker side by side; the posts as they stand
        once each has an outcome (`immediate`: a caller's send, never sent behind
        its back after a restart)."""
        now = self.timer.now()
        new = [NewPost(channel=c, kind=kind, text=text, due_at=now, link=link,
                       state=self._first_state(), incident_id=incident_id,
                       origin=PostOrigin.SEND_NOW) for c, text in texts]
        ids = await self.store.add_posts(new, actor, now, request=request, immediate=immediate)
        if self._paused:
            return await self._handed_over(ids, timeout)
        loop = asyncio.get_running_loop()
        posts = [p.stored(i, actor, now) for p, i in zip(new, ids, strict=True)]
        waiters: dict[int, Waiter] = {p.id: loop.create_future() for p in posts}
        await self.route(posts, waiters)
        # A send stuck behind a rate limit is not abandoned: the caller gets the
        # posts as they stand (still `queued`), never an error inviting a retry.
        await asyncio.wait(list(waiters.values()), timeout=timeout)
        return await self.store.posts(ids)

    async def notify(self, incident_id: int, channels: list[str], text: str, why: str) -> None:
        """Internal notice (ops chat) sent as an operational post, recorded like any
        post; not awaited to its outcome (a slow chat never holds up a runbook)."""
        live = [c for c in channels if c in self.workers]
        if not live:
            return
        now = self.timer.now()
        new = [NewPost(channel=c, kind="operational", text=text, due_at=now,
                       state=self._first_state(), incident_id=incident_id,
                       origin=PostOrigin.SEND_NOW) for c in live]
        ids = await self.store.add_posts(new, f"runbook:{why}", now)
        if self._paused:
            self.leader.wake("posts")
        else:
            await self.route([p.stored(i, f"runbook:{why}", now)
                              for p, i in zip(new, ids, strict=True)])
        await self.store.log(incident_id, now, "notified", "runbook",
                             {"channels": live, "why": why, "posts": ids})

    async def retract(self, post: Post, actor: str, reason: str) -> str | None:
        """Delete a published post from its platform and record it `retracted`;
        None when done, else why not (the platform refused, the channel is gone)."""
        worker = self.workers.get(post.channel)
        if worker is None:
            return f"post {post.id}: channel {post.channel} is not configured"
        try:
            await worker.channel.retract(str(post.id), post.remote_id,
                                         to_datetime(self.timer.now()))
        except ChannelError as exc:
            await self.note_error(worker.channel)
            return f"post {post.id} on {post.channel}: {exc.message}"
        await self.store.transition([post.id], PostState.RETRACTED, (PostState.PUBLISHED,),
                                    self.timer.now(), actor, reason)
        return None

    def take_back(self, post: Post) -> bool:
        """Take a `queued` post out of its channel's queue (before an edit): only
        a post still waiting there is safe to change."""
        worker = self.workers.get(post.channel)
        entry = None if worker is None else worker.take_back(post.id)
        if entry is None:
            return False
        if entry[1] is not None and not entry[1].done():
            entry[1].set_result(post)
        return True

    # -- shared transactions -------------------------------------------------

    async def _claim_all(self, requests: list[list[int]]) -> list[Claim]:
        """One `queued -> sending` transaction for the chunks of many channels."""
        claim = await self.store.claim_sending([i for ids in requests for i in ids],
                                               self.timer.now(), self.leader.fence())
        sending, held = set(claim.sending), dict(claim.suppressed)
        return [Claim([i for i in ids if i in sending],
                      [(i, held[i]) for i in ids if i in held]) for ids in requests]

    async def _record_all(self, requests: list[list[tuple[Post, SendOutcome]]]) -> list[None]:
        """The platforms' answers of many channels' sends in one transaction; the
        operational ones then count as updates of the incidents they serve."""
        outcomes = [o for items in requests for o in items]
        now = self.timer.now()
        await self.store.record_sends([o for _, o in outcomes], now)
        published = []
        for post, outcome in outcomes:
            if outcome.state == PostState.PUBLISHED:
                post.state, post.published_at = PostState.PUBLISHED, outcome.published_at
                published.append(post)
        try:
            await self._note_updates(published, now)
        except Exception:  # recorded already: a failing note must not undo that
            self.log.exception("note_updates_failed", posts=len(published))
        return [None] * len(requests)

    async def _note_updates(self, posts: list[Post], now: float) -> None:
        """One timeline write per incident for a whole run of sends (a fan-out)."""
        served: dict[int, list[Post]] = {}
        for post in posts:
            # An update is what the public hears: ops' own notices on an internal
            # channel the incident also holds (a reminder, say) are not one.
            worker = self.workers.get(post.channel)
            public = worker is not None and worker.channel.audience == "public"
            if post.kind == "operational" and public:
                # Active ones only: a channel may be held by hundreds in cooldown.
                for incident_id in self.gate.declared_on(post.channel):
                    served.setdefault(incident_id, []).append(post)
        for incident_id, updates in served.items():
            incident = await self.store.incident(incident_id)
            if incident is None or incident.state != "active":
                continue
            await self.store.note_updates(incident_id, updates[-1].published_at, now, [
                (p.created_by, {"post": p.id, "channel": p.channel}) for p in updates])
            self.metrics.operational_update_overdue.labels(incident=f"INC-{incident_id}").set(0)

    async def _save_errors(self, requests: list[list[StoredError]]) -> list[None]:
        await self.store.save_channel_errors([e for items in requests for e in items])
        return [None] * len(requests)

    # -- reload and stop -----------------------------------------------------

    async def replace_channels(self, channels: dict[str, Channel]) -> None:
        """Reload: a channel kept as it was keeps its worker (one sender per account,
        its rate-limit state intact); a changed or new one gets a new worker; the
        replaced ones finish their send and hand their queues over (posts of a
        removed channel fail, visibly)."""
        old = self.workers
        self.workers = {}
        for cid, channel in channels.items():
            kept = old.get(cid)
            self.workers[cid] = (kept if kept is not None and kept.channel is channel
                                 else ChannelWorker(self, channel))
            self._restore_error(channel, cid)  # a changed channel keeps its last error
        for cid, worker in old.items():
            if self.workers.get(cid) is worker:
                continue
            await worker.stop()
            handed = list(worker.queue)
            worker.queue.clear()
            await self.route([post for post, _ in handed],
                             {post.id: w for post, w in handed if w is not None})

    async def drain(self, timeout: float = 30.0) -> None:
        """Stop taking work; let each worker finish the send it is in."""
        self._accepting = False
        self.timer.cancel(JOB_ID)
        left = sum(len(w.queue) for w in self.workers.values())
        await asyncio.wait_for(asyncio.gather(*(w.stop() for w in self.workers.values())),
                               timeout)
        self.log.info("dispatcher_drained", queued_left_for_restart=left)
