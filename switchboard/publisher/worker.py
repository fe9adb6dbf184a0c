"""One channel's sender: its posts in order, one at a time; a slow or hung
platform holds up only itself (design §7.1: one account never delays another)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

from switchboard.channels.base import Channel, ChannelError, GateClosed, LastError, Message, Start
from switchboard.clock import to_datetime
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.model import Post, SendOutcome
from switchboard.poststates import PostOrigin, PostState
from switchboard.publisher.shared import Shared
from switchboard.store import Claim, Store, StoreUnavailable
from switchboard.timer import Timer

SEND_BATCH = 200
Waiter = asyncio.Future[Post]
Entry = tuple[Post, Waiter | None]
INTERNAL_ERROR = "internal error around the send; check the platform"


class Hub(Protocol):
    """What a worker shares with the others of its publisher."""

    store: Store
    gate: Gate
    metrics: Metrics
    timer: Timer
    log: Any
    max_lateness: float
    claims: Shared[int, Claim]
    records: Shared[tuple[Post, SendOutcome], None]
    orphans: set[int]

    def poke(self, due_at: float) -> None: ...
    def may_send(self) -> bool: ...
    async def note_error(self, channel: Channel) -> None: ...


class ChannelWorker:
    """Sends one channel's posts: claim -> gate -> send -> record, per chunk."""

    def __init__(self, publisher: Hub, channel: Channel) -> None:
        self.p = publisher
        self.channel = channel
        self.queue: deque[Entry] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """The worker's task, made when its first post arrives: a daemon with
        thousands of channels starts without a task per channel."""
        if self._task is None and not self._stopping:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"channel-{self.channel.id}")

    def enqueue(self, post: Post, waiter: Waiter | None) -> None:
        self.queue.append((post, waiter))
        self._wake.set()
        self.start()

    def take_back(self, post_id: int) -> Entry | None:
        """Out of the queue, if still waiting there (not yet taken into a batch)."""
        for entry in list(self.queue):
            if entry[0].id == post_id:
                self.queue.remove(entry)
                return entry
        return None

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
                self.p.log.warning("channel_worker_paused", channel=self.channel.id,
                                   reason=exc.reason)
                self._orphan(batch)
            except Exception:  # never let one bad batch kill the channel's worker
                self.p.log.exception("channel_worker_error", channel=self.channel.id)
                await self._give_back(batch)

    async def _give_back(self, batch: list[Entry]) -> None:
        """After an unexpected error: posts not yet sending go back to `scheduled`
        for a later tick; `sending` ones become `unknown`, for review."""
        _fail_waiters(batch)
        ids = [p.id for p, _ in batch]
        try:
            now = self.p.timer.now()
            back = await self.p.store.transition(ids, PostState.SCHEDULED, (PostState.QUEUED,),
                                                 now, "dispatcher",
                                                 "returned after an internal error")
            await self.p.store.transition(ids, PostState.UNKNOWN, (PostState.SENDING,), now,
                                          "dispatcher", INTERNAL_ERROR)
        except Exception:
            self.p.log.exception("channel_worker_give_back_failed", channel=self.channel.id)
            self._orphan(batch)
            return
        if back:
            # Not before a second from now: a failing store must not spin the loop.
            self.p.poke(self.p.timer.now() + 1.0)

    def _orphan(self, batch: list[Entry]) -> None:
        """Still `queued` (or `sending`) in the store: the next tick hands them back,
        not a restart; waiting callers are told now."""
        _fail_waiters(batch)
        self.p.orphans.update(p.id for p, _ in batch)
        self.p.poke(self.p.timer.now() + 1.0)

    async def _send_batch(self, batch: list[Entry]) -> None:
        waiters = {p.id: w for p, w in batch if w is not None}
        queue = [p for p, _ in batch]
        size = self.channel.claim_size
        for i in range(0, len(queue), size):
            # Judged per chunk, right before the claim: on a slow or rate-limited
            # account a post can wait here past its expiry or its lateness.
            posts = queue[i:i + size]
            timely = await self._still_timely(posts, self.p.timer.now())
            chunk = await self._gate(timely, (PostState.QUEUED,))
            claimed = await self._claim(chunk)
            outcomes = []
            for post in chunk:
                # Re-ask: the claim yielded the loop, a declaration may have come in.
                if post.id in claimed and await self._gate([post], (PostState.SENDING,)):
                    outcome = await self._send(post)
                    if outcome is not None:
                        outcomes.append(outcome)
                        await self.p.note_error(self.channel)
                # Let API requests (a declaration above all) in between two sends.
                await asyncio.sleep(0)
            if outcomes:
                await self.p.records(outcomes)
            await self._settle([p.id for p in posts if p.id in waiters], waiters)

    async def _claim(self, chunk: list[Post]) -> set[int]:
        """The store decides: it suppresses, in the claim's own transaction, what a
        hold covers, even one this process's gate has not seen (another writer).
        The transaction is shared with the other channels claiming in this step."""
        if not chunk:
            return set()
        claim = await self.p.claims([p.id for p in chunk])
        for _, channel in claim.suppressed:
            self.p.metrics.posts_suppressed.labels(channel=channel).inc()
        return set(claim.sending)

    async def _still_timely(self, posts: list[Post], now: float) -> list[Post]:
        expired = [p.id for p in posts if p.expires_at is not None and now >= p.expires_at]
        late = [p.id for p in posts if p.id not in expired and p.origin == PostOrigin.SCHEDULE
                and now - p.due_at > self.p.max_lateness]
        store = self.p.store
        if expired:
            await store.transition(expired, PostState.EXPIRED, (PostState.QUEUED,), now,
                                   "dispatcher", "past expires_at")
        if late:
            await store.transition(late, PostState.MISSED, (PostState.QUEUED,), now,
                                   "dispatcher", "waited longer than max_lateness to be sent")
        gone = set(expired) | set(late)
        return [p for p in posts if p.id not in gone]

    async def _gate(self, posts: list[Post], expect: tuple[PostState, ...]) -> list[Post]:
        """The posts the gate lets through now; the others are suppressed for the
        incident that holds their channel."""
        allowed = []
        now = self.p.timer.now()
        for post in posts:
            decision = self.p.gate.decide(post.channel, post.kind, now)
            if decision.allowed:
                allowed.append(post)
            elif decision.incident_id is not None and await self.p.store.suppress_posts(
                    [post.id], decision.incident_id, now, expect):
                self.p.metrics.posts_suppressed.labels(channel=post.channel).inc()
        return allowed

    async def _send(self, post: Post) -> tuple[Post, SendOutcome] | None:
        p = self.p
        handed_at = p.timer.now()
        start = Start(lambda now: p.may_send()
                      and p.gate.decide(post.channel, post.kind, now).allowed, p.timer.now)
        message = Message(str(post.id), post.channel, post.kind, post.text, post.link,
                          to_datetime(handed_at), may_start=start,
                          install_id=p.store.install_id())
        try:
            receipt = await self.channel.publish(message)
        except GateClosed:
            await self._gate([post], (PostState.SENDING,))
            return None
        except ChannelError as exc:
            return post, self._failed(post, exc)
        except Exception as exc:  # a bug in a channel must not leave the post 'sending'
            p.log.exception("channel_publish_crashed", channel=post.channel, post_id=post.id)
            return post, self._failed(post, ChannelError(f"internal error: {exc}",
                                                         permanent=True, reason="internal"))
        self.channel.last_error = None
        sent_at = handed_at if start.at is None else start.at  # the true start
        p.metrics.posts_published.labels(channel=post.channel, kind=post.kind).inc()
        if post.origin == PostOrigin.SCHEDULE:  # a send-now post has no due time to be late for
            p.metrics.publish_lateness_seconds.observe(max(0.0, sent_at - post.due_at))
        return post, SendOutcome(
            post.id, PostState.PUBLISHED, remote_id=receipt.remote_id, published_at=sent_at,
            reason="already existed on the platform" if receipt.already_existed else None)

    def _failed(self, post: Post, exc: ChannelError) -> SendOutcome:
        p = self.p
        now = p.timer.now()
        self.channel.last_error = LastError(to_datetime(now), exc.message, exc.permanent)
        p.metrics.channel_last_error_timestamp_seconds.labels(channel=post.channel).set(now)
        p.log.warning("publish_failed", channel=post.channel, post_id=post.id,
                      reason=exc.reason, permanent=exc.permanent, error=exc.message,
                      maybe_sent=exc.maybe_sent)
        if exc.maybe_sent:
            return SendOutcome(post.id, PostState.UNKNOWN, error=exc.message,
                               reason="an attempt may have reached the platform; check it "
                                      "before releasing")
        p.metrics.posts_failed.labels(channel=post.channel, reason=exc.reason).inc()
        return SendOutcome(post.id, PostState.FAILED, error=exc.message,
                           reason=f"{'permanent' if exc.permanent else 'transient'}: "
                                  f"{exc.reason}")

    async def _settle(self, ids: list[int], waiters: dict[int, Waiter]) -> None:
        """Sent or not: a waiting caller learns the outcome."""
        if not ids:
            return
        for post in await self.p.store.posts(ids):
            waiter = waiters.get(post.id)
            if waiter is not None and not waiter.done():
                waiter.set_result(post)


def _fail_waiters(batch: list[Entry]) -> None:
    for _, waiter in batch:
        if waiter is not None and not waiter.done():
            waiter.set_exception(RuntimeError("send failed; see the daemon log"))
