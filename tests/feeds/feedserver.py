"""A feed served on loopback whose answers a test scripts, and a listener that
records what a poller reports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

from switchboard.feeds import Signal

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    at: float  # time.monotonic() on arrival
    headers: dict[str, str]


@dataclass
class FeedServer:
    """Answers each GET with the next scripted answer; the last one repeats."""

    answers: list[Answer]
    requests: list[Seen] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Seen(time.monotonic(), dict(request.headers)))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return await answer(request)

    async def wait_for_requests(self, count: int, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"only {len(self.requests)} requests arrived"
            await asyncio.sleep(0.01)


@asynccontextmanager
async def serving(*answers: Answer) -> AsyncIterator[FeedServer]:
    feed = FeedServer(list(answers))
    app = web.Application()
    app.router.add_get("/feed", feed.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    feed.url = str(server.make_url("/feed"))
    try:
        yield feed
    finally:
        await server.close()


def body(content: bytes, *, content_type: str = "application/json",
         **headers: str) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=content, content_type=content_type,
                            headers={k.replace("_", "-"): v for k, v in headers.items()})
    return answer


def status(code: int, **headers: str) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, headers={k.replace("_", "-"): v
                                                  for k, v in headers.items()})
    return answer


def hang(seconds: float = 30.0) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(text="too late")
    return answer


def chunked(size: int, chunk: int = 64 * 1024) -> Answer:
    """A body with no Content-Length, so only counting the bytes can stop it."""
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        while sent < size:
            piece = min(chunk, size - sent)
            await response.write(b" " * piece)
            sent += piece
        await response.write_eof()
        return response
    return answer


@dataclass
class Recorder:
    """A PollListener that keeps everything it is told."""

    deliveries: list[list[Signal]] = field(default_factory=list)
    successes: list[float] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    refuse_next: int = 0  # this many deliveries raise, as if the store were down

    async def on_signals(self, feed_id: str, signals: list[Signal]) -> None:
        assert feed_id == "status-feed"
        if self.refuse_next:
            self.refuse_next -= 1
            raise RuntimeError("store unavailable")
        self.deliveries.append(signals)

    def on_success(self, feed_id: str, when: float) -> None:
        self.successes.append(when)

    def on_error(self, feed_id: str, reason: str, message: str) -> None:
        self.errors.append((reason, message))

    @property
    def reasons(self) -> list[str]:
        return [reason for reason, _ in self.errors]
