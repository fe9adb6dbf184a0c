"""Real incidents behind the feeds: a store, gate, publisher and runbook in tmp_path.

No channel is started and no step runs (no engine): what the tests look at
is which incidents the feed's signals declare, update and clear.
"""

from __future__ import annotations

import asyncio
import textwrap
import weakref
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from switchboard.config import ChannelConfig, FeedConfig, Matcher, Rule
from switchboard.feeds import Signal, parser_for
from switchboard.gate import Gate
from switchboard.incidents import FeedSignals, Incidents
from switchboard.metrics import Metrics
from switchboard.model import Incident
from switchboard.publisher import Publisher
from switchboard.runbooks import ChannelInfo, load_runbooks
from switchboard.runbooks.context import RunContext
from switchboard.steps import StepRunner
from switchboard.store import Store
from switchboard.timer import FakeTimer
from switchboard.watch import FeedWatch

T = TypeVar("T")
RUNBOOK = """\
name: rb
title: Feed incident
severity: major
handover:
  notify: [ops]
steps: []
"""


class Clock(FakeTimer):
    """The daemon's timer, its time set by hand (feeds' signals carry their own times)."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start.timestamp())

    def __call__(self) -> float:
        return self.now()

    def set(self, when: datetime) -> None:
        self._now = when.timestamp()


def rule(runbook: str = "rb", **options: Any) -> Rule:
    """A rule matching every signal, or `match` ({field: value or [values]})."""
    match = {name: Matcher(values=tuple(v) if isinstance(v, list) else (str(v),))
             for name, v in options.pop("match", {}).items()}
    return Rule(match=match, runbook=runbook, **options)


def _close(loop: asyncio.AbstractEventLoop, store: Store) -> None:
    loop.run_until_complete(store.close())
    loop.close()


class Rig:
    """The core behind the feeds, on a loop of its own: each call runs it to the end."""

    def __init__(self, tmp_path: Path, start: datetime = datetime(2024, 1, 1, tzinfo=UTC)) -> None:
        (tmp_path / "runbooks").mkdir(exist_ok=True)
        (tmp_path / "runbooks" / "rb.yaml").write_text(textwrap.dedent(RUNBOOK))
        channels = {"pub": ChannelConfig("pub", "outbox", options={"path": tmp_path / "o"}),
                    "ops": ChannelConfig("ops", "outbox", audience="internal",
                                         options={"path": tmp_path / "p"})}
        infos = {c.id: ChannelInfo(c.id, c.audience, 280) for c in channels.values()}
        runbooks = load_runbooks(tmp_path / "runbooks", infos)
        self.clock = Clock(start)
        self.loop = asyncio.new_event_loop()
        self.async_store = self.run(Store.open(tmp_path / "switchboard.db"))
        self.store = self.async_store.backend  # direct reads while the loop is idle
        self.metrics = Metrics(CollectorRegistry())
        gate = Gate()
        publisher = Publisher(self.async_store, gate, {}, self.clock, self.metrics,
                              timedelta(minutes=10))
        context = RunContext(runbooks, channels, ZoneInfo("UTC"))
        steps = StepRunner(self.async_store, publisher, self.clock, self.metrics,
                           lambda: context)
        self.incidents = Incidents(self.async_store, gate, publisher, steps, self.clock,
                                   self.metrics, lambda: context)
        self.signals = FeedSignals(self.incidents)
        # Closed with the rig: the store's threads, then the loop.
        weakref.finalize(self, _close, self.loop, self.async_store)

    def run(self, job: Awaitable[T]) -> T:
        return self.loop.run_until_complete(job)

    def watch(self, feed: FeedConfig) -> FeedWatch:
        return FeedWatch((feed,), self.signals, self.metrics, self.clock)

    def apply(self, feed: FeedConfig, signals: list[Signal]) -> list[str]:
        return [self.run(self.signals.on_signal(feed, signal)) for signal in signals]

    def resolve(self, incident_id: int) -> Incident:
        return self.run(self.incidents.resolve(incident_id, actor="test"))

    def feed_parse(self, feed: FeedConfig, body: bytes, now: datetime) -> list[str]:
        """Parse `body` as `feed` would at `now` and hand the signals to incidents."""
        self.clock.set(now)
        return self.apply(feed, parser_for(feed).parse(body, {}, now))

    def all_incidents(self) -> list[Incident]:
        return self.store.incidents(include_resolved=True, limit=None)

    def active(self) -> list[Incident]:
        return self.store.incidents(limit=None)
