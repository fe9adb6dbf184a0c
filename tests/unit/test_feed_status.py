"""`switchboard feeds`: what the daemon saw of each feed, kept across a reload."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from switchboard.incidents import FeedSignals
from switchboard.metrics import Metrics
from switchboard.refusals import Refused
from switchboard.watch import FeedWatch
from tests.unit.test_watch import FEED, HEADERS, RecordingIncidents, delivery

START = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def watching(clock: Clock) -> FeedWatch:
    return FeedWatch((FEED,), cast(FeedSignals, RecordingIncidents()),
                     Metrics(CollectorRegistry()), clock)


def test_a_feed_never_heard_from_is_stale_since_watching_began() -> None:
    clock = Clock()
    feed_watch = watching(clock)
    clock.now += 90
    [feed] = feed_watch.status(clock.now)
    assert (feed["last_success"], feed["last_error"], feed["signals"]) == (None, None, 0)
    assert feed["staleness_seconds"] == 90.0


def test_success_error_and_signals_are_each_recorded_with_their_time() -> None:
    clock = Clock()
    feed_watch = watching(clock)
    asyncio.run(feed_watch.deliver("am", delivery("Signal failure", "Lifts"), HEADERS))
    clock.now += 30
    with pytest.raises(Refused):
        asyncio.run(feed_watch.deliver("am", b'{"alerts": [', HEADERS))
    clock.now += 15
    [feed] = feed_watch.status(clock.now)
    assert feed["last_success"] == "2026-09-21T14:13:20.000000+00:00"
    assert feed["staleness_seconds"] == 45.0
    assert feed["signals"] == 2 and feed["signals_by_status"] == {"firing": 2}
    error = feed["last_error"]
    assert (error["at"], error["reason"]) == ("2026-09-21T14:13:50.000000+00:00", "malformed")
    assert error["message"]


def test_a_reload_keeps_what_was_seen_of_the_feeds_that_stay() -> None:
    clock = Clock()
    feed_watch = watching(clock)
    asyncio.run(feed_watch.deliver("am", delivery("Signal failure"), HEADERS))
    # Its settings changed (a new timeout), and a new feed joined.
    changed = dataclasses.replace(FEED, timeout=3.0)
    joined = dataclasses.replace(FEED, id="am-2")

    async def reload() -> None:
        changes = await feed_watch.prepare((changed, joined))
        await feed_watch.retire(changes)
        feed_watch.install(changes)

    clock.now += 60
    asyncio.run(reload())
    seen, new = feed_watch.status(clock.now)
    assert seen["signals"] == 1 and seen["last_success"] is not None
    assert new["id"] == "am-2" and new["signals"] == 0 and new["staleness_seconds"] == 0.0
