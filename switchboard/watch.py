"""Watching the incident feeds: push deliveries and poll loops, into incidents.

Each feed's parser turns a payload into signals; this module authenticates
push deliveries, counts what came in and what was refused, and hands every
signal to `FeedSignals.on_signal`. A refused delivery changes nothing; within
an accepted one, each signal is applied on its own, so one that fails (counted,
logged, answered 503 for a retry) never stops the others from declaring.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog

from switchboard import refusals
from switchboard.clock import Clock, rfc3339, to_datetime
from switchboard.config import FeedConfig
from switchboard.feeds import parser_for
from switchboard.feeds.auth import check_presented
from switchboard.feeds.jsonfeed import DEFAULT_SIGNATURE_HEADER
from switchboard.feeds.pagerduty import SIGNATURE_HEADER as PAGERDUTY_SIGNATURE
from switchboard.feeds.parser import FeedParser
from switchboard.feeds.poller import Poller
from switchboard.feeds.signal import FeedError, Signal
from switchboard.incidents import FeedSignals
from switchboard.listener import Throttled
from switchboard.metrics import Metrics
from switchboard.text import sanitised

_QUIET_OUTCOMES = frozenset({"unmatched", "ignored", "repeated"})


class FeedWatch:
    def __init__(self, feeds: tuple[FeedConfig, ...], incidents: FeedSignals, metrics: Metrics,
                 clock: Clock) -> None:
        self.incidents, self.metrics, self.clock = incidents, metrics, clock
        self.log = structlog.get_logger("feeds")
        self.feeds = {f.id: f for f in feeds}
        self.parsers: dict[str, FeedParser] = {f.id: parser_for(f) for f in feeds}
        # Per feed, so a reload can replace one poller and leave the others running.
        self.pollers: dict[str, Poller] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.history = {f.id: FeedHistory(since=clock()) for f in feeds}
        # One line per feed and reason per interval: a scanner's thousand
        # refused deliveries are counted in full but logged once.
        self._refusals: dict[tuple[str, str], Throttled] = {}

    async def start(self) -> None:
        polled = [f for f in self.feeds.values() if not self.parsers[f.id].push]
        if not polled:
            return
        self._session = _client_session()
        for feed in polled:
            self._run(Poller(feed, self.parsers[feed.id], self._session, self, clock=self.clock))

    async def stop(self) -> None:
        for poller in self.pollers.values():
            poller.stop()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self.pollers, self._tasks = {}, {}
        await self._close_session()

    def _run(self, poller: Poller) -> None:
        feed_id = poller.config.id
        self.pollers[feed_id] = poller
        self._tasks[feed_id] = asyncio.get_running_loop().create_task(
            poller.run(), name=f"poll-{feed_id}")

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- reload: prepare, retire, install ------------------------------------

    async def prepare(self, feeds: tuple[FeedConfig, ...]) -> FeedChanges:
        """A reload's feeds, built but not started; nothing live is touched.

        A feed whose settings did not change is kept as it runs (its poller, its
        snapshot of the last document, its validators): no re-fetch, no alert
        taken for new. Raises (ValueError, say) if a new or changed feed cannot
        be built; then nothing is left behind.
        """
        kept = frozenset(f.id for f in feeds if self.feeds.get(f.id) == f)
        fresh = [f for f in feeds if f.id not in kept]
        parsers = {f.id: parser_for(f) for f in fresh}
        polled = [f for f in fresh if not parsers[f.id].push]
        session, own = self._session, False
        if polled and session is None:
            session, own = _client_session(), True
        changes = FeedChanges(feeds, kept, parsers, {}, session if own else None)
        try:
            for feed in polled:
                assert session is not None
                changes.pollers[feed.id] = Poller(feed, parsers[feed.id], session, self,
                                                  clock=self.clock)
        except BaseException:
            await changes.discard()
            raise
        return changes

    async def retire(self, changes: FeedChanges) -> None:
        """Stop the pollers of the feeds `changes` replaces or removes; a delivery in
        flight is finished under the settings it began with."""
        gone = [feed_id for feed_id in self.pollers if feed_id not in changes.kept]
        for feed_id in gone:
            self.pollers.pop(feed_id).stop()
        await asyncio.gather(*(self._tasks.pop(feed_id) for feed_id in gone),
                             return_exceptions=True)
        if not self.pollers and not changes.pollers:
            await self._close_session()

    def install(self, changes: FeedChanges) -> None:
        """Swap in the new feeds in one step and start their pollers; cannot fail.
        Feeds that stay keep what was seen of them (`switchboard feeds`)."""
        since = self.clock()
        self.feeds = {f.id: f for f in changes.feeds}
        self.parsers = {f.id: changes.parsers[f.id] if f.id in changes.parsers
                        else self.parsers[f.id] for f in changes.feeds}
        self.history = {f.id: self.history[f.id] if f.id in self.history
                        else FeedHistory(since=since) for f in changes.feeds}
        if changes.session is not None:
            self._session = changes.session
        for poller in changes.pollers.values():
            self._run(poller)

    # -- push --------------------------------------------------------------

    def admit(self, feed_id: str, headers: Mapping[str, str]) -> bool:
        """Refuse a delivery from its headers alone, before its body is read: a
        stranger's megabyte is never buffered. True when the headers prove the
        sender (a bearer token); False when only the body can (a signature)."""
        feed = self.feeds.get(feed_id)
        if feed is None:
            self.count_error(feed_id, "unknown_feed")
            raise refusals.not_found(f"no feed named {feed_id!r}")
        token = None if feed.kind == "pagerduty" else feed.token_sha256
        try:
            if not self.parsers[feed_id].push:
                raise FeedError("unsupported", f"feed {feed_id!r} is polled, not pushed", 405)
            check_presented(feed.id, headers, token_sha256=token, secret=bool(feed.secret),
                            signature_header=_signature_header(feed))
        except FeedError as exc:
            raise self._refused(feed_id, exc) from exc
        return token is not None

    async def deliver(self, feed_id: str, body: bytes,
                      headers: Mapping[str, str]) -> dict[str, Any]:
        self.admit(feed_id, headers)
        parser = self.parsers[feed_id]
        try:
            parser.authenticate(body, headers)
            signals = parser.parse(body, headers, to_datetime(self.clock()))
        except FeedError as exc:
            raise self._refused(feed_id, exc) from exc
        outcomes = await self.apply(feed_id, signals)
        errors = outcomes.count("error")
        if errors:
            # The others are applied; a retry of the delivery repeats them harmlessly
            # and gives the failed ones another chance.
            raise refusals.Refused(503, "signal_failed", f"{errors} of {len(signals)} signal(s) "
                                   "could not be applied (see the daemon log); the others "
                                   "were: send the delivery again")
        return {"accepted": len(signals), "outcomes": outcomes}

    def _refused(self, feed_id: str, exc: FeedError) -> refusals.Refused:
        self.count_error(feed_id, exc.reason, exc.message)
        throttled = self._refusals.setdefault(
            (feed_id, exc.reason), Throttled("feed_refused", logger=self.log))
        throttled(feed=feed_id, reason=exc.reason, error=exc.message)
        return refusals.Refused(exc.http_status, exc.reason, exc.message)

    def count_error(self, feed_id: str, reason: str, message: str = "") -> None:
        # Unknown feed ids are not echoed into labels: a scanner must not be
        # able to grow the metric's cardinality.
        label = feed_id if feed_id in self.feeds else "unknown"
        self.metrics.feed_errors.labels(feed=label, reason=reason).inc()
        history = self.history.get(feed_id)
        if history is not None:
            history.last_error = (self.clock(), reason, message or reason)

    # -- the poller's and the deliveries' common path --------------------------

    async def on_signals(self, feed_id: str, signals: list[Signal]) -> None:
        await self.apply(feed_id, signals)

    async def apply(self, feed_id: str, signals: list[Signal]) -> list[str]:
        feed = self.feeds[feed_id]
        outcomes = []
        statuses = Counter(s.status for s in signals)
        for status, count in statuses.items():
            self.metrics.feed_signals.labels(feed=feed_id, status=status).inc(count)
        self.history[feed_id].signals.update(statuses)
        for signal in signals:
            outcome = await self._apply(feed, signal)
            outcomes.append(outcome)
            # Repeats and unmatched alerts are counted, not logged: Alertmanager
            # resends every alert of a group, and a line each would be the
            # daemon's main cost at a few thousand deliveries a second.
            if outcome not in _QUIET_OUTCOMES:
                self.log.info("feed_signal", feed=feed_id, key=signal.key,
                              status=signal.status, outcome=outcome)
        self.on_success(feed_id, self.clock())
        return outcomes

    async def _apply(self, feed: FeedConfig, signal: Signal) -> str:
        """One signal, isolated: whatever it does wrong, the next one of the delivery runs."""
        try:
            signal = printable(signal)
            return await self.incidents.on_signal(feed, signal)
        except refusals.Refused as exc:
            # A rule naming a runbook that a reload removed, say: counted, logged,
            # never an exception that drops the rest of the delivery.
            self.count_error(feed.id, "rule_failed", exc.message)
            self.log.error("feed_rule_failed", feed=feed.id, key=signal.key, error=exc.message)
            return "failed"
        except Exception:
            # A fault of ours (a store error, a bug) on one signal must not leave
            # the others of the delivery undeclared and the feed looking healthy.
            self.count_error(feed.id, "signal_failed", "a signal could not be applied; "
                             "see the daemon log")
            self.log.exception("feed_signal_failed", feed=feed.id, key=signal.key)
            return "error"

    def on_success(self, feed_id: str, when: float) -> None:
        self.metrics.feed_last_success_timestamp_seconds.labels(feed=feed_id).set(when)
        if feed_id in self.history:
            self.history[feed_id].last_success = when

    def on_error(self, feed_id: str, reason: str, message: str) -> None:
        self.count_error(feed_id, reason, message)
        self.log.warning("feed_poll_failed", feed=feed_id, reason=reason, error=message)

    # -- the feeds view (`switchboard feeds`) --------------------------------

    def status(self, now: float) -> list[dict[str, Any]]:
        out = []
        for feed_id, feed in self.feeds.items():
            history = self.history[feed_id]
            error = history.last_error
            out.append({
                "id": feed_id,
                "kind": feed.kind,
                "mode": "push" if self.parsers[feed_id].push else "poll",
                "last_success": rfc3339(history.last_success),
                "last_error": None if error is None else {
                    "at": rfc3339(error[0]), "reason": error[1], "message": error[2]},
                # Since the last success, or since watching began if none yet.
                "staleness_seconds": round(now - (history.last_success or history.since), 3),
                "signals": sum(history.signals.values()),
                "signals_by_status": dict(history.signals),
            })
        return out


@dataclasses.dataclass
class FeedChanges:
    """A reload's feeds as `FeedWatch.prepare` built them, not yet started."""

    feeds: tuple[FeedConfig, ...]
    kept: frozenset[str]  # ids of the feeds whose settings did not change
    parsers: dict[str, FeedParser]  # of the new and changed feeds
    pollers: dict[str, Poller]  # of the new and changed poll feeds
    session: aiohttp.ClientSession | None  # opened for these pollers (none was open)

    async def discard(self) -> None:
        """The reload failed: drop what was built (the pollers never ran)."""
        if self.session is not None:
            await self.session.close()
            self.session = None
        self.pollers.clear()


def _client_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"User-Agent": "switchboard"})


@dataclasses.dataclass
class FeedHistory:
    """What the daemon saw of one feed since it started watching it."""

    since: float
    last_success: float | None = None
    last_error: tuple[float, str, str] | None = None  # at, reason, message
    signals: Counter[str] = dataclasses.field(default_factory=Counter)


def printable(signal: Signal) -> Signal:
    """The signal with each lone surrogate (`"\\udc80"` in a JSON payload) made U+FFFD.

    Senders do put them in summaries; the store and the log cannot encode them,
    and an alert is never left undeclared for one broken character.
    """
    texts = [signal.source, signal.key, signal.title, *signal.labels, *signal.labels.values(),
             *signal.annotations, *signal.annotations.values()]
    if all(sanitised(t) is t for t in texts):
        return signal
    return dataclasses.replace(
        signal, source=sanitised(signal.source), key=sanitised(signal.key),
        title=sanitised(signal.title),
        labels={sanitised(k): sanitised(v) for k, v in signal.labels.items()},
        annotations={sanitised(k): sanitised(v) for k, v in signal.annotations.items()})


def _signature_header(feed: FeedConfig) -> str | None:
    """The header a signed push feed carries its HMAC in (None: not a signed kind)."""
    if feed.kind == "pagerduty":
        return PAGERDUTY_SIGNATURE
    if feed.kind == "json":
        return feed.signature_header or DEFAULT_SIGNATURE_HEADER
    return None
