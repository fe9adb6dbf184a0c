"""Publishing: one timer for the next due post, one worker per channel.

Posts stay in the store; a single APScheduler job is armed for the earliest
due post and re-armed when an earlier one arrives (one job per post does not
scale). Each publish is a short pipeline: claim -> gate -> send -> record.

- claim: the tick moves due posts `scheduled -> queued` and hands them to the
  channel's worker (late ones become `missed`, old offers `expired`);
- gate: the worker asks the gate before the claim, and the channel asks it
  again at the true start of each attempt (`channels.base.Start`), which is
  also the post's `published_at`;
- send: `sending` is committed before the platform call, so a crash leaves
  `sending`, which start-up turns into `unknown` (never re-sent);
- record: `published` with the platform's id, or `failed` with its message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Generic, TypeVar

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from switchboard.channels.base import (
    Channel,
    ChannelError,
    GateClosed,
    LastError,
    Message,
    Start,
)
from switchboard.clock import Clock, to_datetime
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.model import Post, SendOutcome
from switchboard.poststates import PostOrigin, PostState
from switchboard.store import Claim, Store, StoreUnavailable

JOB_ID = "dispatch"
RETRY_AFTER_ERROR = 2.0  # seconds before a tick that hit a store error runs again
CLAIM_BATCH = 1000
SEND_BATCH = 200
# Ids per shared claim or record transaction: large enough that 10,000 channels
# fanning out at once take a few commits, small enough that one commit never
# holds the loop for long.
SHARED_BATCH = 2000

Outcome = Callable[[list[Post]], None]
Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Shared(Generic[Item, Answer]):
    """Store writes that many channel workers ask for in the same loop step, done
    in one transaction right after it (one fsync for a fan-out over thousands of
    channels, not one per channel). Each caller awaits its own answer."""

    def __init__(self, run: Callable[[list[list[Item]]], list[Answer]],
                 limit: int = SHARED_BATCH) -> None:
        self._run, self._limit = run, limit
        self._pending: list[tuple[list[Item], asyncio.Future[Answer]]] = []
        self._armed = False

    async def __call__(self, items: list[Item]) -> Answer:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._pending.append((items, future))
        if not self._armed:
            self._armed = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        taken, size = 0, 0
        while taken < len(self._pending) and size < self._limit:
            size += len(self._pending[taken][0])
            taken += 1
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        self._armed = bool(self._pending)
        if self._armed:  # the rest after whatever else waits (a declaration, say)
            asyncio.get_running_loop().call_soon(self._flush)
        try:
            answers = self._run([items for items, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)


class Dispatcher:
    def __init__(self, store: Store, gate: Gate, channels: dict[str, Channel],
                 scheduler: AsyncIOScheduler, metrics: Metrics, clock: Clock,
                 max_lateness: timedelta, on_published: Outcome | None = None) -> None:
        self.store, self.gate, self.metrics, self.clock = store, gate, metrics, clock
        self.scheduler = scheduler
        self.max_lateness = max_lateness.total_seconds()
        self.log = structlog.get_logger("dispatcher")
        self.on_published = on_published
        self.claims: Shared[int, Claim] = Shared(self._claim_all)
        self.records: Shared[tuple[Post, SendOutcome], None] = Shared(self._record_all)
        self.workers = {cid: ChannelWorker(self, ch) for cid, ch in channels.items()}
        self._armed_at: float | None = None
        self._accepting = True
        # Posts left `queued` by a worker that could not hand them back (the
        # store failing): the next tick returns them to `scheduled`.
        self.orphans: set[int] = set()

    def start(self) -> None:
        self.arm()

    def _claim_all(self, requests: list[list[int]]) -> list[Claim]:
        """One `queued -> sending` transaction for the chunks of many channels."""
        claim = self.store.claim_sending([i for ids in requests for i in ids], self.clock())
        sending, held = set(claim.sending), dict(claim.suppressed)
        return [Claim([i for i in ids if i in sending],
                      [(i, held[i]) for i in ids if i in held]) for ids in requests]

    def _record_all(self, requests: list[list[tuple[Post, SendOutcome]]]) -> list[None]:
        """The platforms' answers of many channels' sends in one transaction."""
        outcomes = [o for items in requests for o in items]
        self.store.record_sends([o for _, o in outcomes], self.clock())
        published = []
        for post, outcome in outcomes:
            if outcome.state == PostState.PUBLISHED:
                post.state, post.published_at = PostState.PUBLISHED, outcome.published_at
                published.append(post)
        if published and self.on_published is not None:
            try:
                self.on_published(published)
            except Exception:  # recorded already: a failing hook must not undo that
                self.log.exception("on_published_failed", posts=len(published))
        return [None] * len(requests)

    def arm(self, due: float | None = None) -> None:
        """Arm the timer for the earliest pending post (or `due`, if earlier)."""
        if not self._accepting:
            return
        next_due = self.store.next_due() if due is None else due
        if next_due is None:
            if self.scheduler.get_job(JOB_ID):
                self.scheduler.remove_job(JOB_ID)
            self._armed_at = None
            return
        self._armed_at = next_due
        self.scheduler.add_job(self.tick, DateTrigger(run_date=to_datetime(next_due)),
                               id=JOB_ID, replace_existing=True, misfire_grace_time=None,
                               coalesce=True, max_instances=16)

    def poke(self, due_at: float) -> None:
        """A post was added: re-arm if it is due before the armed time."""
        if self._armed_at is None or due_at < self._armed_at:
            self.arm(due_at)

    async def tick(self) -> None:
        # No awaits: the whole claim runs as one step of the event loop.
        now = self.clock()
        self._armed_at = None
        try:
            if self.orphans:
                ids = sorted(self.orphans)
                self.store.transition(ids, PostState.SCHEDULED, (PostState.QUEUED,), now,
                                      "dispatcher", "returned after an internal error")
                self.store.transition(ids, PostState.UNKNOWN, (PostState.SENDING,), now,
                                      "dispatcher",
                                      "internal error around the send; check the platform")
                self.orphans.clear()
            missed = self.store.mark_missed(now - self.max_lateness, now)
            if missed:
                self.log.warning("posts_missed", count=len(missed),
                                 max_lateness=self.max_lateness)
            batch, held = (self.store.claim_due_held(now, CLAIM_BATCH) if self._accepting
                           else ([], []))
        except StoreUnavailable as exc:
            # Busy, full or lost: nothing is claimed (fail closed); said once a tick,
            # without a traceback that would say nothing more.
            self.log.warning("dispatch_paused", reason=exc.reason, error=exc.message)
            self.arm(now + RETRY_AFTER_ERROR)
            return
        except Exception:
            # The timer is a one-shot job: without this the dispatcher would stop
            # for good on one store error. Try again shortly (not in a tight loop).
            self.log.exception("dispatch_tick_failed")
            self.arm(now + RETRY_AFTER_ERROR)
            return
        for _, channel in held:
            self.metrics.posts_suppressed.labels(channel=channel).inc()
        for post in batch:
            self.route(post)
        # A full batch means more are due: come back at once, after the loop
        # has served whatever else is waiting (a declaration, say).
        self.arm(now if len(batch) == CLAIM_BATCH else None)

    def route(self, post: Post, waiter: asyncio.Future[Post] | None = None) -> None:
        worker = self.workers.get(post.channel)
        if worker is None:
            # The channel left the config (reload): the post cannot go anywhere.
            self.store.transition([post.id], PostState.FAILED, (PostState.QUEUED,), self.clock(),
                                  "dispatcher", "channel no longer configured",
                                  error=f"channel {post.channel} is not configured")
            if waiter is not None and not waiter.done():
                failed = self.store.post(post.id)
                assert failed is not None
                waiter.set_result(failed)
            return
        worker.enqueue(post, waiter)

    async def retract(self, post: Post, actor: str, reason: str) -> str | None:
        """Delete a published post from its platform and record it `retracted`;
        None when done, else why not (the platform refused, the channel is gone)."""
        worker = self.workers.get(post.channel)
        if worker is None:
            return f"post {post.id}: channel {post.channel} is not configured"
        try:
            await worker.channel.retract(str(post.id), post.remote_id, to_datetime(self.clock()))
        except ChannelError as exc:
            return f"post {post.id} on {post.channel}: {exc.message}"
        self.store.transition([post.id], PostState.RETRACTED, (PostState.PUBLISHED,),
                              self.clock(), actor, reason)
        return None

    def workers_channels(self) -> dict[str, Channel]:
        return {cid: w.channel for cid, w in self.workers.items()}

    async def replace_channels(self, channels: dict[str, Channel]) -> None:
        """Reload: a channel kept as it was keeps its worker (one sender per account,
        its rate-limit state intact); a changed or new one gets a new worker; the
        replaced ones finish their send and hand their queues over (posts of a
        removed channel fail, visibly)."""
        old = self.workers
        self.workers = {}
        for cid, channel in channels.items():
            kept = old.get(cid)
            if kept is not None and kept.channel is channel:
                self.workers[cid] = kept
            else:
                self.workers[cid] = ChannelWorker(self, channel)
        for cid, worker in old.items():
            if self.workers.get(cid) is worker:
                continue
            await worker.stop()
            while worker.queue:
                post, waiter = worker.queue.popleft()
                self.route(post, waiter)

    async def drain(self, timeout: float = 30.0) -> None:
        """Stop taking work; let each worker finish the send it is in."""
        self._accepting = False
        if self.scheduler.get_job(JOB_ID):
            self.scheduler.remove_job(JOB_ID)
        left = sum(len(w.queue) for w in self.workers.values())
        await asyncio.wait_for(asyncio.gather(*(w.stop() for w in self.workers.values())),
                               timeout)
        self.log.info("dispatcher_drained", queued_left_for_restart=left)


class ChannelWorker:
    """Sends one channel's posts in order; a slow platform holds up only itself."""

    def __init__(self, dispatcher: Dispatcher, channel: Channel) -> None:
        self.d = dispatcher
        self.channel = channel
        self.queue: deque[tuple[Post, asyncio.Future[Post] | None]] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """The worker's task, made when its first post arrives: a daemon with
        thousands of channels starts without a task per channel."""
        if self._task is None and not self._stopping:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"channel-{self.channel.id}")

    def enqueue(self, post: Post, waiter: asyncio.Future[Post] | None) -> None:
        self.queue.append((post, waiter))
        self._wake.set()
        self.start()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stopping:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self.queue.popleft() for _ in range(min(SEND_BATCH, len(self.queue)))]
            try:
                await self._send_batch(batch)
            except StoreUnavailable as exc:
                # Busy or full: a give-back now would wait on the same lock or disk.
                self.d.log.warning("channel_worker_paused", channel=self.channel.id,
                                   reason=exc.reason)
                self._orphan(batch)
            except Exception:  # never let one bad batch kill the channel's worker
                self.d.log.exception("channel_worker_error", channel=self.channel.id)
                self._give_back(batch)

    def _give_back(self, batch: list[tuple[Post, asyncio.Future[Post] | None]]) -> None:
        """After an unexpected error (the store failing, say): posts not yet sending
        go back to `scheduled` for a later tick; `sending` ones stay for review."""
        for _, waiter in batch:
            if waiter is not None and not waiter.done():
                waiter.set_exception(RuntimeError("send failed; see the daemon log"))
        ids = [p.id for p, _ in batch]
        try:
            back = self.d.store.transition(ids, PostState.SCHEDULED, (PostState.QUEUED,),
                                           self.d.clock(), "dispatcher",
                                           "returned after an internal error")
            # A send may have happened before the error: its outcome is not known.
            self.d.store.transition(ids, PostState.UNKNOWN, (PostState.SENDING,), self.d.clock(),
                                    "dispatcher",
                                    "internal error around the send; check the platform")
        except Exception:
            self.d.log.exception("channel_worker_give_back_failed", channel=self.channel.id)
            self._orphan(batch)
            return
        if back:
            # Not before a second from now: a failing store must not spin the loop.
            self.d.poke(self.d.clock() + 1.0)

    def _orphan(self, batch: list[tuple[Post, asyncio.Future[Post] | None]]) -> None:
        """Still `queued` (or `sending`) in the store: the next tick hands them back,
        not a restart; waiting callers are told now."""
        for _, waiter in batch:
            if waiter is not None and not waiter.done():
                waiter.set_exception(RuntimeError("send failed; see the daemon log"))
        self.d.orphans.update(p.id for p, _ in batch)
        # Not before a second from now: a failing store must not spin the loop.
        self.d.poke(self.d.clock() + 1.0)

    async def _send_batch(self, batch: list[tuple[Post, asyncio.Future[Post] | None]]) -> None:
        d = self.d
        waiters = {p.id: w for p, w in batch if w is not None}
        queue = [p for p, _ in batch]
        size = self.channel.claim_size
        for i in range(0, len(queue), size):
            # Judged per chunk, right before the claim: on a slow or rate-limited
            # account a post can wait here past its expiry or its lateness.
            now = d.clock()
            posts = queue[i:i + size]
            chunk = self._gate(self._still_timely(posts, now), now, (PostState.QUEUED,))
            claimed = await self._claim(chunk)
            outcomes = []
            for post in chunk:
                # Re-ask: earlier sends yielded the loop, a declaration may have come in.
                if post.id in claimed and self._gate([post], d.clock(), (PostState.SENDING,)):
                    outcome = await self._send(post)
                    if outcome is not None:
                        outcomes.append(outcome)
                # Let API requests (a declaration above all) in between two sends.
                await asyncio.sleep(0)
            await self._record(outcomes)
            for post in posts:  # sent or not: a waiting caller learns the outcome
                self._settle(post.id, waiters.get(post.id))

    async def _claim(self, chunk: list[Post]) -> set[int]:
        """The store decides: it suppresses, in the claim's own transaction, what a
        hold covers, even one this process's gate has not seen (another writer).
        The transaction is shared with the other channels claiming in this step."""
        d = self.d
        if not chunk:
            return set()
        claim = await d.claims([p.id for p in chunk])
        for _, channel in claim.suppressed:
            d.metrics.posts_suppressed.labels(channel=channel).inc()
        return set(claim.sending)

    def _still_timely(self, posts: list[Post], now: float) -> list[Post]:
        d = self.d
        timely = []
        for post in posts:
            if post.expires_at is not None and now >= post.expires_at:
                d.store.transition([post.id], PostState.EXPIRED, (PostState.QUEUED,), now,
                                   "dispatcher", "past expires_at")
            elif post.origin == PostOrigin.SCHEDULE and now - post.due_at > d.max_lateness:
                d.store.transition([post.id], PostState.MISSED, (PostState.QUEUED,), now,
                                   "dispatcher", "waited longer than max_lateness to be sent")
            else:
                timely.append(post)
        return timely

    def _gate(self, posts: list[Post], now: float,
              expect: tuple[PostState, ...]) -> list[Post]:
        allowed = []
        for post in posts:
            decision = self.d.gate.decide(post.channel, post.kind, now)
            if decision.allowed:
                allowed.append(post)
            elif decision.incident_id is not None and self.d.store.suppress_posts(
                    [post.id], decision.incident_id, now, expect):
                self.d.metrics.posts_suppressed.labels(channel=post.channel).inc()
        return allowed

    async def _send(self, post: Post) -> tuple[Post, SendOutcome] | None:
        d = self.d
        handed_at = d.clock()
        start = Start(lambda now: d.gate.decide(post.channel, post.kind, now).allowed, d.clock)
        message = Message(str(post.id), post.channel, post.kind, post.text, post.link,
                          to_datetime(handed_at), may_start=start,
                          install_id=d.store.install_id())
        try:
            receipt = await self.channel.publish(message)
        except GateClosed:
            self._gate([post], d.clock(), (PostState.SENDING,))
            return None
        except ChannelError as exc:
            return post, self._failed(post, exc)
        except Exception as exc:  # a bug in a channel must not leave the post 'sending'
            d.log.exception("channel_publish_crashed", channel=post.channel, post_id=post.id)
            return post, self._failed(post, ChannelError(f"internal error: {exc}",
                                                         permanent=True, reason="internal"))
        self.channel.last_error = None
        sent_at = handed_at if start.at is None else start.at  # the true start
        d.metrics.posts_published.labels(channel=post.channel, kind=post.kind).inc()
        if post.origin == PostOrigin.SCHEDULE:  # a send-now post has no due time to be late for
            d.metrics.publish_lateness_seconds.observe(max(0.0, sent_at - post.due_at))
        return post, SendOutcome(
            post.id, PostState.PUBLISHED, remote_id=receipt.remote_id, published_at=sent_at,
            reason="already existed on the platform" if receipt.already_existed else None)

    async def _record(self, outcomes: list[tuple[Post, SendOutcome]]) -> None:
        if outcomes:
            await self.d.records(outcomes)

    def _failed(self, post: Post, exc: ChannelError) -> SendOutcome:
        d = self.d
        now = d.clock()
        self.channel.last_error = LastError(to_datetime(now), exc.message, exc.permanent)
        d.metrics.channel_last_error_timestamp_seconds.labels(channel=post.channel).set(now)
        d.log.warning("publish_failed", channel=post.channel, post_id=post.id,
                      reason=exc.reason, permanent=exc.permanent, error=exc.message,
                      maybe_sent=exc.maybe_sent)
        if exc.maybe_sent:
            return SendOutcome(post.id, PostState.UNKNOWN, error=exc.message,
                               reason="an attempt may have reached the platform; check it "
                                      "before releasing")
        d.metrics.posts_failed.labels(channel=post.channel, reason=exc.reason).inc()
        return SendOutcome(post.id, PostState.FAILED, error=exc.message,
                           reason=f"{'permanent' if exc.permanent else 'transient'}: "
                                  f"{exc.reason}")

    def _settle(self, post_id: int, waiter: asyncio.Future[Post] | None) -> None:
        if waiter is not None and not waiter.done():
            post = self.d.store.post(post_id)
            assert post is not None
            waiter.set_result(post)
