"""Who claims and sends: the leader lease of daemons sharing one database (design §7.3).

Every daemon serves the whole API and the push feeds; only the leader runs
the publisher's timer, claims and sends posts, and runs runbook timers. The
lease is a row in the database written with the database's clock (store/lease.py):

- each process start draws a random holder id; it renews every `renew_every`
  (2 s) for `lease` (10 s); a standby takes a lapsed lease over, one epoch up.
- a leader that has not renewed for `fence_after` (8 s, on this process's
  MONOTONIC clock, measured from the moment before the renewal was sent)
  stops claiming and sending by itself, before the lease can pass: a process
  frozen (SIGSTOP, a stalled VM) and woken cannot send what it had claimed.
  Every claim also checks holder and epoch in its own transaction.
- a graceful stop releases the row and NOTIFYs the standbys, who LISTEN on a
  connection of their own; NOTIFY is lost across reconnects, so they also
  poll every `poll_every` (1 s).

On SQLite one process holds the state_dir's lock: it is always the leader
(`SoleLeader`, epoch 1) and its claims need no fence.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
import structlog

from switchboard.metrics import Metrics
from switchboard.store import Fence, Lease, Store, StoreUnavailable
from switchboard.timer import Job, Timer

log = structlog.get_logger("leadership")
CHANNEL = "switchboard"  # the NOTIFY channel every daemon on a database listens on
# What a notice says: the lease was given up, holds (of an incident) or posts
# changed at a standby, the leader has applied the holds (up to a time, or one
# incident's).
RELEASED, HOLDS, POSTS, SEEN = "released", "holds", "posts", "seen"
SEEN_INCIDENT = "seen-incident"  # the leader's gate has this one incident's holds
Monotonic = Callable[[], float]
Change = Callable[[Fence], Awaitable[None]]


@dataclass(frozen=True)
class Timing:
    renew_every: float = 2.0
    lease: float = 10.0
    fence_after: float = 8.0  # < lease: a leader stops before its lease can pass
    poll_every: float = 1.0


class Leader(Protocol):
    """What the publisher and the step runner ask: may this daemon act now, and
    with which fence does it claim."""

    @property
    def role(self) -> str: ...

    @property
    def epoch(self) -> int: ...

    def may_act(self) -> bool: ...

    def fence(self) -> Fence | None: ...

    def wake(self, what: str) -> None:
        """Tell the leader (if that is another daemon) that there is new work."""


class SoleLeader:
    """SQLite: one daemon per store (its state_dir lock), always the leader."""

    role = "leader"
    epoch = 1

    def may_act(self) -> bool:
        return True

    def fence(self) -> Fence | None:
        return None

    def wake(self, what: str) -> None:
        """Nobody else to tell."""


class LeaderOnly:
    """The incidents' and the steps' timer on a shared database: a job that comes
    due while this daemon is not the leader does nothing (the end of a cooldown,
    an auto-resolution, a step: the leader runs its own, and a new leader arms
    them all again when it takes over)."""

    def __init__(self, timer: Timer, leader: Leader) -> None:
        self._timer, self._leader = timer, leader

    def now(self) -> float:
        return self._timer.now()

    def call_at(self, key: str, when: float, job: Job, *args: Any) -> None:
        self._timer.call_at(key, when, self._if_leading, job, *args)

    async def _if_leading(self, job: Job, *args: Any) -> None:
        if self._leader.may_act():
            await job(*args)

    def cancel(self, key: str) -> None:
        self._timer.cancel(key)

    def cancel_prefix(self, prefix: str) -> None:
        self._timer.cancel_prefix(prefix)

    def keys(self) -> list[str]:
        return self._timer.keys()

    @property
    def running(self) -> bool:
        return self._timer.running


class LeaseKeeper:
    """This daemon's side of the lease: take, renew, fence itself, hand over."""

    def __init__(self, store: Store, metrics: Metrics, *, holder: str | None = None,
                 monotonic: Monotonic = time.monotonic, timing: Timing = Timing()) -> None:
        self.store, self.metrics, self.timing = store, metrics, timing
        self.holder = holder or secrets.token_hex(8)
        self._monotonic = monotonic
        self._fence: Fence | None = None
        self._renewed: float = 0.0  # monotonic time just before the last renewal was sent
        self.last: Lease | None = None
        self._on_gain: Change | None = None
        self._on_lose: Change | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.nudge = asyncio.Event()  # set by a notice: try to take the lease now
        self._stopping = False

    # -- what the others ask ---------------------------------------------------

    @property
    def role(self) -> str:
        return "leader" if self.may_act() else "standby"

    @property
    def epoch(self) -> int:
        """The lease's epoch as this daemon last saw it (its own while it leads)."""
        if self._fence is not None:
            return self._fence.epoch
        return 0 if self.last is None else self.last.epoch

    def may_act(self) -> bool:
        """Leader, and renewed within `fence_after` by the monotonic clock."""
        return (self._fence is not None
                and self._monotonic() - self._renewed < self.timing.fence_after)

    def fence(self) -> Fence:
        # Epoch 0 is never a lease's: a standby's claim is refused by the store.
        return self._fence or Fence(self.holder, 0)

    def wake(self, what: str) -> None:
        if self.may_act():
            return  # this daemon is the one to wake: its own timer already knows
        self.spawn(self._notify(what))

    async def _notify(self, what: str) -> None:
        try:
            await self.store.notify(CHANNEL, what)
        except StoreUnavailable as exc:  # the leader's poll finds the work anyway
            log.warning("notice_not_sent", notice=what, reason=exc.reason)

    def spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one round ---------------------------------------------------------------

    async def step(self) -> None:
        """Renew, take over or stay standby; then act on what changed."""
        started = self._monotonic()
        try:
            lease = await self.store.take_lease(self.holder, self.timing.lease)
        except StoreUnavailable as exc:
            log.warning("lease_not_renewed" if self._fence else "lease_not_taken",
                        reason=exc.reason, error=exc.message)
            await self.check_fence()
            return
        self.last = lease
        async with self._lock:
            if lease.held_by(self.holder):
                fence = Fence(self.holder, lease.epoch)
                # Fenced meanwhile (even if the lease did not lapse): a new term, with
                # the holds and the posts `sending` read afresh, never the old memory.
                if self._fence != fence or not self.may_act():
                    if self._fence is not None:
                        await self._lose("the lease lapsed")
                    await self._gain(fence, started)
                    await self._renew_after_gain(fence)
                else:
                    self._renewed = started
            elif self._fence is not None:
                await self._lose(f"the lease passed to {lease.holder} (epoch {lease.epoch})")
        self._show()

    async def _renew_after_gain(self, fence: Fence) -> None:
        """Taking over (recovery, loading the incidents) may have taken seconds:
        renew at once, so a slow start does not fence the new leader."""
        if self._fence != fence:
            return  # its start failed and gave the lease up
        started = self._monotonic()
        try:
            lease = await self.store.take_lease(self.holder, self.timing.lease)
        except StoreUnavailable:
            return  # the next round tries again; the fence watch stops it meanwhile
        if lease.held_by(self.holder) and lease.epoch == fence.epoch:
            self._renewed = started

    async def check_fence(self) -> None:
        """Stop acting once `fence_after` has passed without a renewal."""
        if self._fence is None or self.may_act():
            return
        async with self._lock:
            if self._fence is not None and not self.may_act():
                await self._lose(f"not renewed for {self.timing.fence_after:g}s")
        self._show()

    async def _gain(self, fence: Fence, started: float) -> None:
        self._fence, self._renewed = fence, started
        log.warning("leader_lease_taken", holder=self.holder, epoch=fence.epoch)
        if self._on_gain is not None:
            try:
                await self._on_gain(fence)
            except Exception:
                # Half a leader is worse than none: give the lease up, try again later.
                log.exception("leader_start_failed", epoch=fence.epoch)
                await self._lose("its start as leader failed")
                with contextlib.suppress(StoreUnavailable):
                    await self.store.release_lease(fence)

    async def _lose(self, why: str) -> None:
        fence, self._fence = self._fence, None
        if fence is None:
            return
        log.warning("leader_lease_lost", holder=self.holder, epoch=fence.epoch, why=why)
        if self._on_lose is not None:
            await self._on_lose(fence)

    def _show(self) -> None:
        self.metrics.leader.set(1 if self.may_act() else 0)
        self.metrics.leader_epoch.set(self.epoch)

    # -- the loops -----------------------------------------------------------------

    async def start(self, on_gain: Change, on_lose: Change) -> None:
        """The first round now (a daemon alone takes the lease before it serves),
        then the renewal and the fence watch in the background."""
        self._on_gain, self._on_lose = on_gain, on_lose
        await self.step()
        self.spawn(self._renewing())
        self.spawn(self._watching())

    async def _renewing(self) -> None:
        while not self._stopping:
            every = self.timing.renew_every if self._fence else self.timing.poll_every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.nudge.wait(), every)
            self.nudge.clear()
            if self._stopping:
                return
            try:
                await self.step()
            except Exception:  # the loop must outlive any one round
                log.exception("lease_round_failed")

    async def _watching(self) -> None:
        """A renewal stuck on an unreachable database must not keep a leader acting."""
        while not self._stopping:
            await asyncio.sleep(0.25)
            try:
                await self.check_fence()
            except Exception:
                log.exception("fence_check_failed")
            self._show()

    async def stop(self) -> None:
        """Graceful stop: stop acting, give the lease up and tell the standbys."""
        self._stopping = True
        self.nudge.set()
        async with self._lock:
            fence = self._fence
            await self._lose("the daemon is stopping")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if fence is not None:
            try:
                if await self.store.release_lease(fence):
                    await self.store.notify(CHANNEL, RELEASED)
                    log.info("leader_lease_released", epoch=fence.epoch)
            except StoreUnavailable as exc:  # it lapses by itself in `lease` seconds
                log.warning("leader_lease_not_released", reason=exc.reason)
        self._show()


class Notices:
    """LISTEN on the daemons' channel, on a connection of its own (autocommit),
    reconnecting with backoff. A notice's payload is a word and what follows it
    (if anything): the word names the handler, which is given the rest."""

    def __init__(self, dsn: str, handlers: dict[str, Callable[[str], None]]) -> None:
        self._dsn, self._handlers = dsn, handlers
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="notices")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _dispatch(self, payload: str) -> None:
        """Anyone who may connect to the database may NOTIFY: a payload is a hint,
        its handler checks it, and no payload can end the listening."""
        word, _, rest = payload.partition(" ")
        handler = self._handlers.get(word)
        if handler is None:
            return
        try:
            handler(rest)
        except Exception:
            log.exception("notice_not_understood", notice=payload[:80])

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True,
                                                             connect_timeout=5)
            except psycopg.Error as exc:
                log.warning("notices_unreachable", error=_first_line(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            try:
                await conn.execute(f"LISTEN {CHANNEL}")
                self.connected.set()
                delay = 0.5
                while True:
                    async for notice in conn.notifies(timeout=5.0):
                        self._dispatch(notice.payload)
                    # A quiet spell: make sure the connection is still there.
                    await conn.execute("SELECT 1")
            except psycopg.Error as exc:
                # Notices sent meanwhile are lost: the polls find what they said.
                log.warning("notices_lost", error=_first_line(exc))
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await conn.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
