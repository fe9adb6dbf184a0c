"""The Timer port: the clock and `call_at`, one object injected everywhere.

Every part that reads the time or waits for a moment takes a `Timer`, so a
test drives the whole core by moving one fake clock (`FakeTimer`). The
production timer is APScheduler's asyncio scheduler over the system clock.

Jobs have keys: arming a key again replaces its job (the dispatcher keeps one
timer for the next due post, each runbook step one per occurrence).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from switchboard.clock import Clock, system_clock, to_datetime

Job = Callable[..., Awaitable[None]]


class Timer(Protocol):
    """Now, and a coroutine run at a given moment (Unix seconds)."""

    def now(self) -> float: ...

    def call_at(self, key: str, when: float, job: Job, *args: Any) -> None:
        """Run `job(*args)` at `when` (at once if past); replaces the job of `key`."""

    def cancel(self, key: str) -> None:
        """Forget the job of `key`, if any."""

    def cancel_prefix(self, prefix: str) -> None:
        """Forget every job whose key starts with `prefix`."""

    def keys(self) -> list[str]:
        """The keys of the jobs still to run."""

    @property
    def running(self) -> bool:
        """False once stopped: the watchdog pets systemd only while the timer runs."""


class SchedulerTimer:
    """The production timer: APScheduler 3 on the running asyncio loop."""

    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._scheduler = AsyncIOScheduler(timezone=UTC)

    def now(self) -> float:
        return self._clock()

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def call_at(self, key: str, when: float, job: Job, *args: Any) -> None:
        # misfire_grace_time=None: a job late because the loop was busy still runs;
        # max_instances lets a dispatch tick re-arm itself while it is running.
        self._scheduler.add_job(job, DateTrigger(run_date=to_datetime(when)), args=list(args),
                                id=key, replace_existing=True, misfire_grace_time=None,
                                coalesce=True, max_instances=16)

    def cancel(self, key: str) -> None:
        if self._scheduler.get_job(key) is not None:
            self._scheduler.remove_job(key)

    def cancel_prefix(self, prefix: str) -> None:
        for job in self._scheduler.get_jobs():
            if job.id.startswith(prefix):
                job.remove()

    def keys(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()]


class FakeTimer:
    """A timer that tests move: `await timer.advance(seconds)` runs, in time
    order, every job due by then, each at its own moment of the fake clock."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._jobs: dict[str, tuple[float, int, Job, tuple[Any, ...]]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self.running = True

    def now(self) -> float:
        return self._now

    def call_at(self, key: str, when: float, job: Job, *args: Any) -> None:
        seq = next(self._seq)
        self._jobs[key] = (when, seq, job, args)
        heapq.heappush(self._heap, (when, seq, key))

    def cancel(self, key: str) -> None:
        self._jobs.pop(key, None)

    def cancel_prefix(self, prefix: str) -> None:
        for key in [k for k in self._jobs if k.startswith(prefix)]:
            del self._jobs[key]

    def keys(self) -> list[str]:
        return sorted(self._jobs, key=lambda k: self._jobs[k][:2])

    def next_at(self) -> float | None:
        """When the earliest job is due, or None."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self._now + seconds)

    async def advance_to(self, moment: float) -> None:
        while (due := self.next_at()) is not None and due <= moment:
            key = heapq.heappop(self._heap)[2]
            when, _, job, args = self._jobs.pop(key)
            self._now = max(self._now, when)
            await job(*args)
            await settle()
        self._now = max(self._now, moment)
        await settle()

    def _drop_stale(self) -> None:
        # A replaced or cancelled job leaves its old heap entry behind.
        while self._heap:
            _, seq, key = self._heap[0]
            entry = self._jobs.get(key)
            if entry is not None and entry[1] == seq:
                return
            heapq.heappop(self._heap)


async def settle(rounds: int = 50) -> None:
    """Let the tasks that are ready run (workers woken by a job, say)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
