"""The poll loop for one poll feed (cap, atom/rss, statuspage, gtfs-rt).

Every `config.every` it GETs `config.url` with the validators of the last
200 (If-None-Match / If-Modified-Since), so an unchanged feed costs a 304.
The body is read up to 1 MiB, parsed, and diffed against the previous poll
(`snapshot.Snapshot`): only new, changed and vanished items are reported.
On a 304 the cached body is parsed again with the current time, so CAP
`expires` and GTFS-rt active periods still end on time.

Failures (timeout, transport, HTTP status, too large, malformed, a failing
`on_signals`) are reported and retried with exponential backoff and jitter,
capped at 10x `every` or 15 minutes, whichever is less (never below
`every`). Nothing is committed (snapshot, validators, cache) until
`on_signals` has returned, so a failed delivery is retried by the next poll
instead of being hidden behind a 304.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

import aiohttp

from switchboard import __version__
from switchboard.clock import Clock
from switchboard.feeds.parser import FeedParser
from switchboard.feeds.signal import FeedError, Signal
from switchboard.feeds.snapshot import Snapshot

if TYPE_CHECKING:
    from switchboard.feeds.settings import FeedConfig

MAX_BODY_BYTES = 1024 * 1024
MAX_BACKOFF_SECONDS = 15 * 60
USER_AGENT = f"switchboard/{__version__} (incident feed poller)"

T = TypeVar("T")


class PollListener(Protocol):
    """Where a poller reports; the daemon counts metrics from these calls."""

    async def on_signals(self, feed_id: str, signals: list[Signal]) -> None: ...

    def on_success(self, feed_id: str, when: float) -> None:
        """`when`: Unix seconds of the successful poll (200 or 304)."""

    def on_error(self, feed_id: str, reason: str, message: str) -> None:
        """`reason`: timeout, fetch, http_status, too_large, malformed, delivery
        (`on_signals` raised) or internal (a bug)."""


@dataclass(frozen=True)
class _Copy:
    """The last body accepted, with what is needed to ask whether it changed."""

    body: bytes
    headers: dict[str, str]
    etag: str | None
    last_modified: str | None


class Poller:
    def __init__(self, config: FeedConfig, parser: FeedParser, session: aiohttp.ClientSession,
                 listener: PollListener, *, clock: Clock,
                 rng: random.Random | None = None, max_bytes: int = MAX_BODY_BYTES) -> None:
        if not config.url:
            raise ValueError(f"feed {config.id!r} has no url to poll")
        self.config, self.parser, self.session, self.listener = config, parser, session, listener
        self.clock, self.max_bytes = clock, max_bytes
        self.rng = rng or random.Random()
        self.failures = 0  # consecutive; drives the backoff
        self._snapshot = Snapshot()
        self._copy: _Copy | None = None
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Poll until `stop()`; a poll in flight is abandoned, a delivery is finished."""
        while not self._stopping.is_set():
            delay = await self.poll_once()
            if delay is None:
                break
            await self._pause(delay)

    def stop(self) -> None:
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        """The wait between two polls; `stop()` ends it at once."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def poll_once(self) -> float | None:
        """One poll; returns seconds until the next one, None if stopped meanwhile."""
        # The poll's own duration, for the interval: a stopwatch, not the time.
        started = time.monotonic()
        try:
            fetched = await self._unless_stopped(self._fetch())
            if fetched is None:
                return None
            copy, now = fetched, datetime.fromtimestamp(self.clock(), UTC)
            emit, snapshot = self._snapshot.diff(
                self.parser.parse(copy.body, copy.headers, now), now)
        except FeedError as exc:
            return self._failed(exc.reason, exc.message)
        except Exception as exc:  # a parser bug must not end this feed's polling for good
            return self._failed("internal", f"{type(exc).__name__}: {exc}")
        if emit:
            try:
                await self.listener.on_signals(self.config.id, emit)
            except Exception as exc:  # the daemon's side failed: keep state, retry
                return self._failed("delivery", f"signals not taken: {exc!r}")
        self._snapshot, self._copy, self.failures = snapshot, copy, 0
        self.listener.on_success(self.config.id, self.clock())
        return max(0.0, self.every - (time.monotonic() - started))

    @property
    def every(self) -> float:
        return max(self.config.every.total_seconds(), 0.001)

    def backoff(self) -> float:
        """Seconds before retrying after `failures` consecutive failures."""
        cap = max(self.every, min(10 * self.every, MAX_BACKOFF_SECONDS))
        ceiling = min(cap, self.every * 2.0 ** min(self.failures, 30))
        # Half fixed, half random: spreads retries without ever coming back sooner than `every`.
        return max(self.every, ceiling / 2 + self.rng.uniform(0, ceiling / 2))

    def _failed(self, reason: str, message: str) -> float:
        self.failures += 1
        self.listener.on_error(self.config.id, reason, message)
        return self.backoff()

    async def _unless_stopped(self, work: Awaitable[T]) -> T | None:
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, stopping):
                if not pending.done():
                    pending.cancel()
                    with suppress(asyncio.CancelledError):
                        await pending
        return task.result() if not task.cancelled() else None

    async def _fetch(self) -> _Copy:
        url, timeout = str(self.config.url), self.config.timeout
        try:
            async with self.session.get(
                    url, headers=self._request_headers(),
                    timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                return await self._read(response)
        except TimeoutError:
            raise FeedError("timeout", f"no complete answer from {url} within {timeout:g}s",
                            504) from None
        except aiohttp.ClientError as exc:
            raise FeedError("fetch", f"cannot fetch {url}: {str(exc) or type(exc).__name__}",
                            502) from None

    def _request_headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": self.parser.accept}
        if self._copy is not None:
            if self._copy.etag:
                headers["If-None-Match"] = self._copy.etag
            if self._copy.last_modified:
                headers["If-Modified-Since"] = self._copy.last_modified
        return headers

    async def _read(self, response: aiohttp.ClientResponse) -> _Copy:
        if response.status == 304 and self._copy is not None:
            # A 304 may refresh the validators; the body is the one we hold.
            return _Copy(self._copy.body, self._copy.headers,
                         response.headers.get("ETag") or self._copy.etag,
                         response.headers.get("Last-Modified") or self._copy.last_modified)
        if response.status != 200:
            raise FeedError("http_status", f"{self.config.url} answered HTTP {response.status}",
                            response.status)
        body = await _read_capped(response, self.max_bytes)
        return _Copy(body, _kept_headers(response.headers), response.headers.get("ETag"),
                     response.headers.get("Last-Modified"))


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:  # no or lying Content-Length, or a compressed body that grew
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> FeedError:
    return FeedError("too_large", f"feed body over {limit} bytes", 413)


def _kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The response headers parsers look at (the charset in Content-Type)."""
    return {name: headers[name] for name in ("Content-Type",) if name in headers}
