"""Real incidents behind the feeds: a store, gate, dispatcher and runbook in tmp_path.

No channel is started and no step runs (no engine): what the tests look at
is which incidents the feed's signals declare, update and clear.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from switchboard.config import ChannelConfig, FeedConfig, Matcher, Rule
from switchboard.dispatcher import Dispatcher
from switchboard.feeds import Signal, parser_for
from switchboard.gate import Gate
from switchboard.incidents import Context, Incidents
from switchboard.metrics import Metrics
from switchboard.model import Incident
from switchboard.runbooks import ChannelInfo, load_runbooks
from switchboard.store import Store
from switchboard.watch import FeedWatch

RUNBOOK = """\
name: rb
title: Feed incident
severity: major
handover:
  notify: [ops]
steps: []
"""


class Clock:
    """The daemon's clock, moved by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


def rule(runbook: str = "rb", **options: Any) -> Rule:
    """A rule matching every signal, or `match` ({field: value or [values]})."""
    match = {name: Matcher(values=tuple(v) if isinstance(v, list) else (str(v),))
             for name, v in options.pop("match", {}).items()}
    return Rule(match=match, runbook=runbook, **options)


class Rig:
    def __init__(self, tmp_path: Path, start: datetime = datetime(2024, 1, 1, tzinfo=UTC)) -> None:
        (tmp_path / "runbooks").mkdir(exist_ok=True)
        (tmp_path / "runbooks" / "rb.yaml").write_text(textwrap.dedent(RUNBOOK))
        channels = {"pub": ChannelConfig("pub", "outbox", options={"path": tmp_path / "o"}),
                    "ops": ChannelConfig("ops", "outbox", audience="internal",
                                         options={"path": tmp_path / "p"})}
        infos = {c.id: ChannelInfo(c.id, c.audience, 280) for c in channels.values()}
        runbooks = load_runbooks(tmp_path / "runbooks", infos)
        self.clock = Clock(start)
        self.store = Store.open(tmp_path / "switchboard.db")
        self.metrics = Metrics(CollectorRegistry())
        scheduler = AsyncIOScheduler(timezone=UTC)
        dispatcher = Dispatcher(self.store, Gate(), {}, scheduler, self.metrics, self.clock,
                                timedelta(minutes=10))
        context = Context(runbooks, channels, ZoneInfo("UTC"))
        self.incidents = Incidents(self.store, Gate(), dispatcher, scheduler, self.metrics,
                                   self.clock, lambda: context)

    def watch(self, feed: FeedConfig) -> FeedWatch:
        return FeedWatch((feed,), self.incidents, self.metrics, self.clock)

    def apply(self, feed: FeedConfig, signals: list[Signal]) -> list[str]:
        return [self.incidents.on_signal(feed, signal) for signal in signals]

    def feed_parse(self, feed: FeedConfig, body: bytes, now: datetime) -> list[str]:
        """Parse `body` as `feed` would at `now` and hand the signals to incidents."""
        self.clock.set(now)
        return self.apply(feed, parser_for(feed).parse(body, {}, now))

    def all_incidents(self) -> list[Incident]:
        return self.store.incidents(include_resolved=True, limit=None)

    def active(self) -> list[Incident]:
        return self.store.incidents(limit=None)
