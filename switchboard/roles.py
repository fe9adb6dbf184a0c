"""Leader and standby: what a daemon on a shared database does in each role.

Both serve the whole API and the push feeds. Only the leader claims and sends
posts and runs the runbook timers (leadership.py holds the lease).

- Becoming leader: the old leader's `sending` posts become `unknown` (never
  sent again) and its `queued` ones `scheduled` (store.recover, as at a
  restart); the incidents' gate and timers are loaded; then the publisher's
  timer is armed.
- Losing the lease (or fencing itself): the publisher stops claiming and the
  incidents' timers are cancelled; what was claimed is refused at its start.
- Holds declared at a standby: the standby NOTIFYs once its declaration has
  committed; the leader reads the holds into its gate and records, in the
  lease row, the database time its reading began (`holds_seen`). The standby
  answers its caller only once `holds_seen` has passed its commit, or once no
  leader can be sending any more (the lease lapsed, or the leader's last
  renewal is `fence_after` old, so it fenced itself); at most `fence_after`.
  From that answer on no marketing send starts on those channels, wherever it
  was acknowledged. The claim's own check of the holds stays the hard guard.
  Both roles also poll the holds every second (a notice can be lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from switchboard.gate import Gate
from switchboard.incidents import Incidents
from switchboard.leadership import (
    CHANNEL,
    HOLDS,
    POSTS,
    RELEASED,
    SEEN,
    SEEN_INCIDENT,
    LeaseKeeper,
    Notices,
)
from switchboard.publisher import Publisher
from switchboard.steps import StepRunner
from switchboard.store import Fence, Lease, Store, StoreUnavailable
from switchboard.text import decimal
from switchboard.timer import Timer

log = structlog.get_logger("roles")
_NONE = object()  # a hold the last reading did not have
# The incidents' timers, which only the leader keeps (steps, step records,
# auto-resolution, the end of a cooldown, the rest of a void).
LEADER_TIMERS = ("step-", "record-", "autoresolve-", "release-", "void-")
RECOVER_RETRY = 1.0  # seconds between tries of a takeover's recovery the store refused


class Roles:
    """Switches the publisher, the steps and the incidents' timers with the lease."""

    def __init__(self, keeper: LeaseKeeper, confirmations: Confirmations, store: Store,
                 gate: Gate, publisher: Publisher, steps: StepRunner, incidents: Incidents,
                 timer: Timer, dsn: str) -> None:
        self.keeper, self.store, self.gate = keeper, store, gate
        self.publisher, self.steps, self.incidents, self.timer = publisher, steps, incidents, timer
        # Each holding incident's end as last read (None: read every hold next time).
        self._applied: dict[int, float | None] | None = None
        self._sync_lock = asyncio.Lock()  # the holds into the gate, one reading at a time
        self._follow_lock = asyncio.Lock()  # the incidents' steps, armed once each
        self._poller: asyncio.Task[None] | None = None
        self._recovering: asyncio.Task[None] | None = None
        self.notices = Notices(dsn, {
            RELEASED: lambda _: keeper.nudge.set(),
            HOLDS: lambda incident: keeper.spawn(self._quietly(self._on_holds, incident)),
            POSTS: lambda _: keeper.spawn(self._quietly(self._arm)),
            SEEN: confirmations.saw,
            SEEN_INCIDENT: confirmations.saw_incident,
        })

    async def start(self) -> None:
        self.notices.start()
        # Listening before the first round: a release in between is not missed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.notices.connected.wait(), 5.0)
        await self.keeper.start(self._gained, self._lost)
        await self.sync()
        self._poller = asyncio.get_running_loop().create_task(self._polling(), name="roles")

    async def stop(self) -> None:
        """Graceful stop: the lease handed over at once (released, NOTIFY)."""
        for task in (self._poller, self._recovering):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.keeper.stop()
        await self.notices.stop()

    # -- the lease changes hands ------------------------------------------------

    async def _gained(self, fence: Fence) -> None:
        self.publisher.pause()
        self._cancel_timers()
        if not await self._recover(fence):
            # The old leader's rows are still locked (its transaction not yet ended by
            # the server). Its `sending` posts are never claimed again meanwhile, and
            # it cannot send them (fenced): lead now, mark them `unknown` shortly.
            self._recovering = asyncio.get_running_loop().create_task(
                self._recover_later(fence), name="recover-after-takeover")
        async with self._follow_lock:
            async with self._sync_lock:
                self._applied = None  # read afresh whatever this daemon saw as a standby
                at = await self._apply_holds()
                # The gate is whole: sends may start (the steps that load arms send too).
                await self.publisher.resume()
                await self._confirm(fence, at)
            await self.incidents.load()
        log.warning("leading", epoch=fence.epoch)

    async def _recover(self, fence: Fence) -> bool:
        """The old leader's `sending` posts to `unknown` (never re-sent) and its
        `queued` ones back to the schedule; False if the store was busy."""
        try:
            recovered = await self.store.recover(self.timer.now())
        except StoreUnavailable as exc:
            log.warning("takeover_recovery_postponed", reason=exc.reason, epoch=fence.epoch)
            return False
        if recovered["unknown"]:
            log.warning("posts_unknown_after_takeover", count=recovered["unknown"],
                        epoch=fence.epoch)
        return True

    async def _recover_later(self, fence: Fence) -> None:
        while self.keeper.fence() == fence:
            await asyncio.sleep(RECOVER_RETRY)
            if self.keeper.fence() == fence and await self._recover(fence):
                return

    async def _lost(self, fence: Fence) -> None:
        self.publisher.pause()
        self._cancel_timers()
        log.warning("standing_by", epoch=fence.epoch)

    def _cancel_timers(self) -> None:
        for prefix in LEADER_TIMERS:
            self.timer.cancel_prefix(prefix)
        self.steps.armed.clear()

    # -- holds and incidents from the other daemons ---------------------------------

    async def _polling(self) -> None:
        while True:
            await asyncio.sleep(self.keeper.timing.poll_every)
            try:
                await self.sync()
                await self._arm()
            except StoreUnavailable as exc:
                log.warning("roles_poll_failed", reason=exc.reason)
            except Exception:
                log.exception("roles_poll_failed")

    async def _quietly(self, job: Callable[..., Awaitable[None]], *args: str) -> None:
        """A notice's work: on a failure the next poll does it."""
        try:
            await job(*args)
        except StoreUnavailable as exc:
            log.warning("notice_not_acted_on", reason=exc.reason)
        except Exception:
            log.exception("notice_not_acted_on")

    async def _on_holds(self, incident: str) -> None:
        """A standby's HOLDS notice: at the leader, first the named incident's holds
        into the gate and SEEN for it (its caller waits for that alone), then the
        whole reading and the incidents' steps."""
        number = decimal(incident)
        if number is not None and self.keeper.may_act():
            fence = self.keeper.fence()
            for holds in await self.store.holds_of([number]):
                self.gate.hold_many(holds.channels, holds.incident_id, holds.suppress)
                if holds.until is not None:
                    self.gate.set_until(holds.incident_id, holds.until)
            await self.store.notify_if_leading(fence, CHANNEL,
                                               f"{SEEN_INCIDENT} {incident} {fence.holder}")
        await self.sync()

    async def _arm(self) -> None:
        """The leader's timer, for posts a standby added (due now, or earlier)."""
        if self.keeper.may_act():
            await self.publisher.arm()

    async def sync(self) -> None:
        """The store's holds into this daemon's gate; at the leader, `holds_seen`,
        then the steps of incidents declared or resolved elsewhere."""
        async with self._sync_lock:
            fence = self.keeper.fence() if self.keeper.may_act() else None
            at = await self._apply_holds()
            # The gate has the holds: a standby's caller waits for this, not for the
            # runbook steps that follow (a holding statement on every channel).
            if fence is not None and self.keeper.may_act():
                await self._confirm(fence, at)
        async with self._follow_lock:
            await self._follow_incidents(fence is not None and self.keeper.may_act())

    async def _confirm(self, fence: Fence, at: float) -> None:
        """`holds_seen`, and a SEEN notice naming the time and this holder (a
        standby's caller need not read the lease). Refused while another daemon
        holds the lease row (a takeover): the next reading confirms."""
        try:
            await self.store.see_holds(fence, at, (CHANNEL, f"{SEEN} {at!r} {fence.holder}"))
        except StoreUnavailable as exc:
            log.warning("holds_not_confirmed_now", reason=exc.reason, epoch=fence.epoch)

    async def _apply_holds(self) -> float:
        """The holds of incidents new since the last reading, and the ends of those
        resolved since, into the gate; incidents the store no longer holds for
        that the gate had before the read leave it (one declared meanwhile here
        is kept). The database time the reading began."""
        before = self.gate.incidents()
        at, ends = await self.store.holds_by_incident()
        applied = self._applied or {}
        new = {i for i, until in ends.items()
               if self._applied is None or i not in applied or (until is None
                                                                 and applied[i] is not None)}
        for holds in await self.store.holds_of(sorted(new)) if new else []:
            self.gate.hold_many(holds.channels, holds.incident_id, holds.suppress)
        for incident_id, until in ends.items():
            if until is not None and (incident_id in new
                                      or applied.get(incident_id, _NONE) != until):
                self.gate.set_until(incident_id, until)
        for incident_id in before - ends.keys():
            self.gate.release(incident_id)
        self._applied = ends
        return at

    async def _follow_incidents(self, leading: bool) -> None:
        active = await self.store.incidents(limit=None)
        for incident in active:
            if incident.signal_key is not None:
                self.incidents.by_signal.setdefault(incident.signal_key, incident.id)
        if not leading:
            return
        runbooks = self.incidents.context().runbooks
        for incident in active:
            book = runbooks.get(incident.runbook)
            if book is not None and (incident.id, "active") not in self.steps.armed:
                await self.steps.resume(incident, book)
        for incident in await self.store.incidents_awaiting_release():
            book = runbooks.get(incident.runbook)
            if (incident.id, "resolved") in self.steps.armed:
                continue
            if book is not None:
                self.steps.on_resolved(incident, book)
            else:
                self.steps.armed.add((incident.id, "resolved"))
            self.incidents.schedule_release(incident)



class Confirmations:
    """A declaration at a standby waits for the leader's gate (see the module's doc)."""

    def __init__(self, keeper: LeaseKeeper, store: Store) -> None:
        self.keeper, self.store = keeper, store
        self.seen = asyncio.Event()  # set by the leader's SEEN notices
        self.seen_up_to = 0.0  # the latest `holds_seen` a SEEN notice told
        # The incidents a SEEN_INCIDENT notice named (the latest few hundred).
        self.seen_incidents: dict[int, None] = {}

    async def confirm_holds(self, incident_id: int) -> None:
        """After a declaration committed here: return once the leader's gate has its
        holds (its SEEN_INCIDENT for it, or a `holds_seen` past the commit), or once
        no leader can be sending; at most `fence_after`."""
        if self.keeper.may_act():
            return  # the leader's own gate took them before this
        started = time.monotonic()
        limit = self.keeper.timing.fence_after
        self.seen.clear()
        # The notice's time is after the declaration's commit: a leader whose
        # reading of the holds began later has them.
        committed = await self.store.notify(CHANNEL, f"{HOLDS} {incident_id}")
        while not self.keeper.may_act():  # became leader meanwhile: its gate has them
            # The leader's SEEN notice, or a look at the lease every 50 ms (a notice
            # can be lost, and none pass through PgBouncer).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.seen.wait(), 0.05)
            self.seen.clear()
            if incident_id in self.seen_incidents or self.seen_up_to >= committed:
                return
            try:
                lease = await self.store.lease()
            except StoreUnavailable:
                lease = None
            if lease is not None and _binds(lease, committed, limit):
                return
            if time.monotonic() - started >= limit:
                log.warning("holds_not_confirmed", waited=limit)
                return

    def saw(self, payload: str) -> None:
        """The leader's SEEN notice: it has applied the holds committed before the
        time it names (its update of `holds_seen`, committed with the notice)."""
        at, holder = _words(payload, 2)
        if self._from_leader(holder):
            with contextlib.suppress(ValueError):
                self.seen_up_to = max(self.seen_up_to, float(at))
        self.seen.set()  # in any case, the waiting callers look at the lease

    def saw_incident(self, payload: str) -> None:
        """The leader's SEEN_INCIDENT notice: its gate has that incident's holds.
        Sent only while its lease is live (checked in the notice's statement), so
        a deposed leader's never arrives; a leader that took over later read every
        hold, this one's included, when it did."""
        incident, holder = _words(payload, 2)
        number = decimal(incident)
        if self._from_leader(holder) and number is not None:
            self.seen_incidents[number] = None
            while len(self.seen_incidents) > 500:
                del self.seen_incidents[next(iter(self.seen_incidents))]
        self.seen.set()

    def _from_leader(self, holder: str) -> bool:
        """Any session on the database may NOTIFY; only the daemons that read the
        lease know its holder's random id. A notice naming another (a leader
        this daemon has not seen yet, another installation's) is only a wake-up."""
        lease = self.keeper.last
        return lease is not None and lease.holder is not None and holder == lease.holder


def _words(payload: str, count: int) -> list[str]:
    words = payload.split(" ")
    return (words + [""] * count)[:count]


def _binds(lease: Lease, committed: float, fence_after: float) -> bool:
    """Whether every send that can still start is bound by holds committed at `committed`."""
    return (not lease.live or lease.holds_seen >= committed
            or lease.now - lease.renewed_at >= fence_after)
