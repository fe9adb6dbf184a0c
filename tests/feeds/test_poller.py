"""The poll loop against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from switchboard.feeds import parser_for
from switchboard.feeds import poller as poller_module
from switchboard.feeds.poller import MAX_BACKOFF_SECONDS, Poller
from tests.feeds.cases import feed_config, fixture
from tests.feeds.feedserver import (
    FeedServer,
    Recorder,
    body,
    chunked,
    hang,
    serving,
    status,
)

ETAG = '"v1"'
MODIFIED = "Wed, 22 May 2024 20:52:00 GMT"
NOW = 1_716_425_000.0


def incidents(*names: str, status: str = "investigating") -> bytes:
    return json.dumps({"page": {"name": "Rail"}, "incidents": [
        {"id": name.lower(), "name": name, "status": status, "impact": "major"}
        for name in names]}).encode()


class MaxJitter(random.Random):
    """Jitter always at its top, so a backoff delay is exactly its ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def make_poller(feed: FeedServer, session: aiohttp.ClientSession, recorder: Recorder,
                kind: str = "statuspage", every: float = 60, timeout: float = 5,
                clock: Callable[[], float] = lambda: NOW, **options: Any) -> Poller:
    config = feed_config(kind, id="status-feed", url=feed.url,
                         every=timedelta(seconds=every), timeout=timeout)
    return Poller(config, parser_for(config), session, recorder, clock=clock,
                  rng=options.pop("rng", MaxJitter()), **options)


Scenario = Callable[[FeedServer, aiohttp.ClientSession, Recorder], Awaitable[None]]


def run(scenario: Scenario, *answers: Any) -> Recorder:
    """Serve `answers`, give the scenario a session and a recorder, return the recorder."""
    recorder = Recorder()

    async def main() -> None:
        async with serving(*answers) as feed, aiohttp.ClientSession() as session:
            await scenario(feed, session, recorder)
    asyncio.run(main())
    return recorder


def test_it_sends_the_validators_of_the_last_200_and_takes_304_as_success() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec)
        assert await poller.poll_once() == pytest.approx(60, abs=1)
        assert await poller.poll_once() == pytest.approx(60, abs=1)
        first, second = feed.requests
        assert "If-None-Match" not in first.headers
        assert "If-Modified-Since" not in first.headers
        assert second.headers["If-None-Match"] == ETAG
        assert second.headers["If-Modified-Since"] == MODIFIED

    async def conditional(request: Any) -> Any:
        if request.headers.get("If-None-Match") != ETAG or \
                request.headers.get("If-Modified-Since") != MODIFIED:
            return await body(b"validators missing", content_type="text/plain")(request)
        return await status(304, ETag=ETAG)(request)

    rec = run(scenario, body(incidents("Signal failure"), ETag=ETAG, Last_Modified=MODIFIED),
              conditional)

    assert [[s.key for s in d] for d in rec.deliveries] == [["signal failure"]]
    assert rec.successes == [NOW, NOW]
    assert rec.errors == []


def test_it_says_who_it_is_and_what_it_accepts() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        await make_poller(feed, session, rec).poll_once()
        headers = feed.requests[0].headers
        assert headers["User-Agent"].startswith("switchboard/")
        assert headers["Accept"] == "application/json"

    run(scenario, body(incidents()))


def test_an_incident_that_disappears_is_resolved_once() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec)
        for _ in range(3):
            await poller.poll_once()

    rec = run(scenario, body(incidents("Flooding", "Power cut")), body(incidents("Flooding")))

    first, second = rec.deliveries
    assert [(s.key, s.status) for s in first] == [("flooding", "firing"),
                                                  ("power cut", "firing")]
    [gone] = second
    assert (gone.key, gone.status, gone.title) == ("power cut", "resolved", "Power cut")
    assert gone.annotations["resolution"] == "no longer in the feed"
    assert len(rec.successes) == 3


def test_unchanged_incidents_are_not_emitted_again_but_changes_are() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec)
        for _ in range(4):
            await poller.poll_once()

    rec = run(scenario, body(incidents("Flooding")), body(incidents("Flooding")),
              body(incidents("Flooding", status="identified")))

    assert [[(s.key, s.labels["incident_status"]) for s in d] for d in rec.deliveries] == [
        [("flooding", "investigating")], [("flooding", "identified")]]
    assert len(rec.successes) == 4


def test_an_error_is_reported_and_retried_later_than_usual() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec, every=10)
        assert await poller.poll_once() == 20  # 2x every, jitter at its top
        assert await poller.poll_once() == 40
        assert await poller.poll_once() == pytest.approx(10, abs=1)  # recovered
        assert poller.failures == 0

    rec = run(scenario, status(500), status(503), body(incidents("Flooding")))

    assert rec.reasons == ["http_status", "http_status"]
    assert "HTTP 500" in rec.errors[0][1] and "HTTP 503" in rec.errors[1][1]
    assert len(rec.successes) == 1


def test_the_backoff_grows_to_a_cap_and_never_comes_back_sooner_than_every() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        for every, cap in ((60, 600), (300, MAX_BACKOFF_SECONDS), (86_400, 86_400)):
            poller = make_poller(feed, session, rec, every=every, rng=random.Random(1))
            delays = []
            for failures in range(1, 60):
                poller.failures = failures
                delays.append(poller.backoff())
            assert min(delays) >= every
            assert max(delays) <= cap
            assert max(delays) > cap / 2 or every >= MAX_BACKOFF_SECONDS

    run(scenario, status(500))


def test_the_run_loop_waits_longer_after_an_error_than_after_a_success(
        monkeypatch: pytest.MonkeyPatch) -> None:
    every = 60.0
    # The poll's stopwatch stands still: the wait after a success is then all of
    # `every`, none of it taken by the poll itself.
    monkeypatch.setattr(poller_module, "time", SimpleNamespace(monotonic=lambda: 1000.0))

    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec, every=every)
        waits: list[float] = []

        async def pause(seconds: float) -> None:  # what the loop asks for, not waited out
            waits.append(seconds)
            if len(waits) == 2:
                poller.stop()

        monkeypatch.setattr(poller, "_pause", pause)
        await asyncio.wait_for(poller.run(), 5)
        assert waits == [2 * every, every], "after the 500: 2x every; after a success: every"
        assert len(feed.requests) == 2

    rec = run(scenario, status(500), body(incidents()))
    assert rec.reasons == ["http_status"]
    assert len(rec.successes) == 1


def test_a_server_that_hangs_is_a_timeout() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        started = time.monotonic()
        await make_poller(feed, session, rec, timeout=0.3).poll_once()
        assert time.monotonic() - started < 3

    rec = run(scenario, hang())
    assert rec.reasons == ["timeout"]
    assert "within 0.3s" in rec.errors[0][1]


def test_a_body_over_1_mib_is_refused() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec)
        await poller.poll_once()  # Content-Length says so
        await poller.poll_once()  # chunked: counted while reading
        await poller.poll_once()  # exactly 1 MiB is allowed (and is not JSON)

    rec = run(scenario, body(b" " * (1024 * 1024 + 1)), chunked(3 * 1024 * 1024),
              chunked(1024 * 1024))
    assert rec.reasons == ["too_large", "too_large", "malformed"]
    assert "over 1048576 bytes" in rec.errors[0][1]


def test_a_server_that_is_not_there_is_a_fetch_error() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        await make_poller(feed, session, rec).poll_once()

    async def closed_port() -> Recorder:
        recorder = Recorder()
        async with serving(status(200)) as feed:
            url = feed.url
        async with aiohttp.ClientSession() as session:
            await scenario(FeedServer([], url=url), session, recorder)
        return recorder

    rec = asyncio.run(closed_port())
    assert rec.reasons == ["fetch"]
    assert "cannot fetch http://127.0.0.1:" in rec.errors[0][1]


def test_other_statuses_are_errors_with_the_status_in_the_message() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec)
        await poller.poll_once()
        await poller.poll_once()

    rec = run(scenario, status(404), status(304))  # a 304 we never asked for
    assert rec.reasons == ["http_status", "http_status"]
    assert "HTTP 404" in rec.errors[0][1]


def test_a_malformed_poll_changes_nothing_it_holds() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec)
        for _ in range(3):
            await poller.poll_once()

    rec = run(scenario, body(incidents("Flooding")), body(b'{"incidents": "oops"}'),
              body(incidents()))

    assert rec.reasons == ["malformed"]
    firing, resolved = rec.deliveries
    assert [(s.key, s.status) for s in firing] == [("flooding", "firing")]
    assert [(s.key, s.status) for s in resolved] == [("flooding", "resolved")]


def test_signals_the_daemon_failed_to_take_are_offered_again() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        rec.refuse_next = 1
        poller = make_poller(feed, session, rec)
        await poller.poll_once()
        await poller.poll_once()
        # not committed: the second request must not be conditional, or a 304 would hide them
        assert "If-None-Match" not in feed.requests[1].headers

    rec = run(scenario, body(incidents("Flooding"), ETag=ETAG))

    assert rec.reasons == ["delivery"]
    assert "store unavailable" in rec.errors[0][1]
    assert [[s.key for s in d] for d in rec.deliveries] == [["flooding"]]


def test_a_304_still_lets_an_alert_expire() -> None:
    pdt = timezone(timedelta(hours=-7))
    now = [datetime(2003, 6, 17, 15, 0, tzinfo=pdt).timestamp()]  # expires at 16:00

    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec, kind="cap", clock=lambda: now[0])
        await poller.poll_once()
        now[0] = datetime(2003, 6, 17, 16, 30, tzinfo=pdt).timestamp()
        await poller.poll_once()
        assert feed.requests[1].headers["If-None-Match"] == ETAG

    rec = run(scenario, body(fixture("cap-1.2-oasis-example.xml"),
                             content_type="application/cap+xml", ETag=ETAG), status(304))

    assert [[(s.key, s.status) for s in d] for d in rec.deliveries] == [
        [("KSTO1055887203", "firing")], [("KSTO1055887203", "resolved")]]


def test_stop_abandons_a_poll_in_flight_promptly() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec, timeout=30)
        task = asyncio.create_task(poller.run())
        await feed.wait_for_requests(1)
        started = time.monotonic()
        poller.stop()
        await asyncio.wait_for(task, 2)
        assert time.monotonic() - started < 1

    rec = run(scenario, hang(30))
    assert rec.errors == [] and rec.successes == []


def test_stop_ends_the_wait_between_polls() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec, every=3600)
        task = asyncio.create_task(poller.run())
        # The success is told just before the loop starts its wait, with nothing
        # awaited in between: once it is recorded, the poller is waiting.
        deadline = time.monotonic() + 5
        while not rec.successes:
            assert time.monotonic() < deadline, "the first poll never succeeded"
            await asyncio.sleep(0.01)
        poller.stop()
        await asyncio.wait_for(task, 1)

    rec = run(scenario, body(incidents("Flooding")))
    assert len(rec.successes) == 1


def test_a_feed_without_url_cannot_be_polled() -> None:
    config = feed_config("statuspage", url=None)

    async def build() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ValueError, match="no url to poll"):
                Poller(config, parser_for(config), session, Recorder(), clock=lambda: 0.0)
    asyncio.run(build())


def test_cancelling_the_run_task_leaves_nothing_behind() -> None:
    async def scenario(feed: FeedServer, session: aiohttp.ClientSession, rec: Recorder) -> None:
        poller = make_poller(feed, session, rec, timeout=30)
        task = asyncio.create_task(poller.run())
        await feed.wait_for_requests(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)
        await asyncio.sleep(0)
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()
                and any(name in repr(t.get_coro()) for name in ("Poller.", "Event.wait"))]
        assert left == []

    run(scenario, hang(30))
