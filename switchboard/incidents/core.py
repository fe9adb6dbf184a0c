"""Incidents: the state they share, their timers and their metrics.

A declaration commits (incident + channel holds) and closes the in-memory
gate before anyone is answered: from the acknowledgement on, no marketing
send can start on the scope's channels (and the claim checks the holds in
its own transaction besides). Resolution keeps the holds for the runbook's
cooldown; at its end the held posts follow the runbook's policy and the
channel returns to marketing once no other incident holds it.

The parts: `core` (this), `cooldown` (the held-post policy and the end of a
cooldown), `void` (false alarms), `lifecycle` (load, declare, resolve,
update: the `Incidents` everyone uses), `signals` (what feeds' signals do)
and `views` (JSON and texts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import Gauge

from switchboard import refusals
from switchboard.gate import Gate
from switchboard.metrics import Metrics
from switchboard.model import Incident
from switchboard.publisher import Publisher
from switchboard.runbooks.context import RunContext
from switchboard.steps import StepRunner
from switchboard.store import Store
from switchboard.timer import Timer


class IncidentsBase:
    """What every part of the incidents works with, and the timers they share."""

    def __init__(self, store: Store, gate: Gate, publisher: Publisher, steps: StepRunner,
                 timer: Timer, metrics: Metrics, context: Callable[[], RunContext],
                 holds_committed: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.store, self.gate, self.publisher, self.steps = store, gate, publisher, steps
        self.timer, self.metrics, self.clock = timer, metrics, timer.now
        self.context = context
        # Awaited after a declaration's holds commit, before the caller is answered:
        # at a standby, until the leader's gate has them too (roles.Roles.confirm_holds).
        self.holds_committed = holds_committed
        self.log = structlog.get_logger("incidents")
        # Active incidents by the key of the signal that declared them: a feed's
        # repeats are matched here, not with a query per signal.
        self.by_signal: dict[str, int] = {}
        # Bumped by every change this daemon makes to an incident: readers that
        # keep an incident in memory (the feeds' signals) know to read it again.
        self.versions: dict[int, int] = {}
        # The channels the under-incident gauge was last set for, and those it shows
        # at 1: a declaration over 10,000 channels sets only the gauges that change.
        self._gauged: set[str] = set()
        self._shown: set[str] = set()
        self._gauges: dict[str, Gauge] = {}
        self._refreshing: set[asyncio.Task[None]] = set()

    def touch(self, incident_id: int) -> None:
        """This daemon changed the incident (see `versions`)."""
        self.versions[incident_id] = self.versions.get(incident_id, 0) + 1

    async def cancel_auto_resolve(self, incident_id: int) -> None:
        await self.store.set_incident_fields(incident_id, auto_resolve_at=None)
        self.touch(incident_id)
        self.timer.cancel(f"autoresolve-{incident_id}")

    async def _auto_resolve(self, incident_id: int) -> None:
        incident = await self._get(incident_id)
        if incident.state == "active" and incident.auto_resolve_at is not None:
            await self.resolve(incident_id, actor="feed", note="source quiet for the quiet period")

    async def resolve(self, incident_id: int, *, actor: str, note: str | None = None) -> Incident:
        raise NotImplementedError  # lifecycle.Incidents resolves

    # -- queries -----------------------------------------------------------

    async def _get(self, incident_id: int) -> Incident:
        incident = await self.store.incident(incident_id)
        if incident is None:
            raise refusals.not_found(f"no incident INC-{incident_id}")
        return incident

    def refresh_metrics_soon(self) -> None:
        """The gauges refreshed in a task of their own (a store error is logged)."""
        task = asyncio.get_running_loop().create_task(self._refresh_quietly())
        self._refreshing.add(task)  # kept until done: the loop holds tasks only weakly
        task.add_done_callback(self._refreshing.discard)

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh_metrics()
        except Exception:
            self.log.exception("incident_metrics_failed")

    async def refresh_metrics(self) -> None:
        now = self.clock()
        active = await self.store.incidents()
        self.metrics.incidents_active.set(len(active))
        oldest = min((i.declared_at for i in active), default=None)
        self.metrics.incident_oldest_open_seconds.set(0 if oldest is None else now - oldest)
        controlled = self.gate.channels_under_control(now)
        channels = self.context().channels
        if channels.keys() != self._gauged:  # start-up or a reload: every channel
            self._gauged, changed = set(channels), set(channels)
        else:
            changed = controlled ^ self._shown
        for channel in changed & self._gauged:
            gauge = self._gauges.get(channel)
            if gauge is None:  # `labels()` costs microseconds: looked up once per channel
                gauge = self._gauges[channel] = self.metrics.channel_under_incident.labels(
                    channel=channel)
            gauge.set(1 if channel in controlled else 0)
        self._shown = controlled & self._gauged
