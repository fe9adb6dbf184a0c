"""Feed deliveries into incidents: one bad signal never stops the others of its delivery."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from switchboard.config import FeedConfig
from switchboard.feeds.signal import Signal
from switchboard.incidents import FeedSignals
from switchboard.metrics import Metrics
from switchboard.refusals import Refused
from switchboard.watch import FeedWatch

TOKEN = "feed-token"
FEED = FeedConfig(id="am", kind="alertmanager",
                  token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest())
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


class RecordingIncidents:
    """Declares every signal it is given, except those whose title says to fail."""

    def __init__(self) -> None:
        self.declared: list[Signal] = []

    async def on_signal(self, feed: FeedConfig, signal: Signal) -> str:
        if signal.title.startswith("breaks"):
            raise RuntimeError("the store refused the row")
        signal.title.encode("utf-8")  # as SQLite does: a lone surrogate raises here
        self.declared.append(signal)
        return "declared"


def watch(incidents: RecordingIncidents) -> tuple[FeedWatch, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return FeedWatch((FEED,), cast(FeedSignals, incidents), metrics, lambda: 1_790_000_000.0), \
        metrics


def delivery(*summaries: str) -> bytes:
    alerts: list[dict[str, Any]] = [
        {"status": "firing", "fingerprint": f"fp{i}", "labels": {"alertname": f"A{i}"},
         "annotations": {"summary": summary}, "startsAt": "2026-09-21T10:00:00Z"}
        for i, summary in enumerate(summaries)]
    # json.dumps writes a lone surrogate as the escape "\udc80", as senders do.
    return json.dumps({"version": "4", "status": "firing", "alerts": alerts}).encode()


def errors(metrics: Metrics, reason: str) -> float | None:
    return metrics.registry.get_sample_value("switchboard_feed_errors_total",
                                             {"feed": "am", "reason": reason})


def test_a_failing_signal_never_stops_the_next_one_from_declaring() -> None:
    incidents = RecordingIncidents()
    feed_watch, metrics = watch(incidents)
    with pytest.raises(Refused) as caught:
        asyncio.run(feed_watch.deliver("am", delivery("breaks the store", "Signal failure"),
                                       HEADERS))
    assert [s.title for s in incidents.declared] == ["Signal failure"]
    assert errors(metrics, "signal_failed") == 1.0
    # 503: the sender retries; the declared one then only repeats.
    assert caught.value.status == 503
    assert caught.value.message.startswith("1 of 2 signal(s) could not be applied")


def test_a_lone_surrogate_in_an_alert_is_replaced_and_the_alert_declares() -> None:
    incidents = RecordingIncidents()
    feed_watch, metrics = watch(incidents)
    result = asyncio.run(feed_watch.deliver("am", delivery("Signal \udc80 failure", "Lifts"),
                                            HEADERS))
    assert result["outcomes"] == ["declared", "declared"]
    assert [s.title for s in incidents.declared] == ["Signal \ufffd failure", "Lifts"]
    assert errors(metrics, "signal_failed") is None
