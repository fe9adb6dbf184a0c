"""What the network channels share: the gate at the true start (retries: retry.py).

The gate at the true start (design 7.1). A send may not start after a
declaration was acknowledged, so the gate is asked at the moment the bytes of
each attempt leave, not before the waits in front of it (a thread, a
connection, a DNS lookup). Each attempt is an `Attempt` over the message's
`may_start`; `Attempt.begin()` is what asks the gate, and it is called:

- for blocking clients (tweepy, Mastodon.py, requests): by `ChannelThreads.run`,
  inside the channel's own worker thread, right before the client call, and
  again, for a requests session passed through `gate_requests`, once the
  client's connection is open (DNS, TCP, TLS done) and before the request is
  written: that second answer is the binding one. The question is put to the
  event loop (where the gate lives) and the thread waits for the answer;
- for aiohttp: by the connector of `gated_session`, once the connection is
  ready (new or reused) and before the request is written, for requests made
  inside `with attempt.connecting():`;
- for httpx (the atproto SDK): by the trace hook `httpx_trace(attempt)`, passed
  as the request's `trace` extension, which httpcore calls once the connection
  is ready and right before it writes the request headers. `gated_transports`
  resolves host names in the channel's own threads.

Each channel has its own bounded thread pool (`ChannelThreads`), DNS lookups
of its aiohttp session or httpx client included, so one hung account never
delays another account's sends. `Attempt.failed(error)` marks an error `not_sent` when the
attempt never reached its start: nothing can have left, so it is retried and
at worst `failed`, never `unknown`. A channel uses it so (x.py, webhook.py,
bluesky.py; `http.exchange` does it for the Graph and Bot API channels):

    self._threads = ChannelThreads(config.id)      # __init__; close() closes it
    client.session = gate_requests(requests.Session())  # a requests-based client
    # a blocking client, inside a Retrier attempt:
    await self._threads.run(Attempt(message.may_start), client.create, text)
    #   a requests error that `never_reached(exc)` gets `error.not_sent = True`
    # aiohttp: the session from start(), then per attempt:
    self._session = gated_session(self._threads, config.timeout, headers)
    tried = Attempt(message.may_start)
    with tried.connecting():
        async with self._session.post(url, json=body) as response: ...
    #   and a ChannelError raised for the attempt goes through tried.failed(error)
    # httpx: the client's transports, then per request:
    client = httpx.AsyncClient(**gated_transports(self._threads))
    tried = Attempt(message.may_start)
    await client.post(url, json=body, extensions={"trace": httpx_trace(tried)})

Local outlets (a file, stdout) call `message.begin()` right before writing.
Keys sent to platforms are `message.platform_key` (install id + post id).

Retries and rate-limit waits: `retry.py`; httpx clients: `httpx_gate.py`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import requests
import requests.adapters
import urllib3
import urllib3.connection
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.exceptions import SSLError as TLSError

from switchboard.channels.base import (
    Channel,
    ChannelError,
    GateClosed,
    LastError,
    Message,
    with_link,
)
from switchboard.clock import Clock, system_clock, to_datetime

if TYPE_CHECKING:
    from switchboard.config import ChannelConfig

T = TypeVar("T")

# Threads per channel: a publish and a few retractions of one account at once.
THREADS_PER_CHANNEL = 4
# A worker thread waits this long for the event loop to answer the gate; a
# loop that cannot answer (stopping, stalled) means no send.
GATE_ANSWER_WITHIN = 30.0


class Attempt:
    """One try at reaching the platform, asking the gate at its true start."""

    def __init__(self, may_start: Callable[[], bool] | None) -> None:
        self.may_start = may_start
        self.started = False  # True once the gate allowed it: bytes may have left

    def begin(self) -> None:
        """Called on the event loop at the true start; raises GateClosed if it may not."""
        if self.may_start is not None and not self.may_start():
            raise GateClosed()
        self.started = True

    def failed(self, error: ChannelError) -> ChannelError:
        """`error`, marked `not_sent` if the attempt never reached its start."""
        if not self.started:
            error.not_sent = True
        return error

    @contextmanager
    def connecting(self) -> Iterator[None]:
        """aiohttp requests made inside ask the gate once their connection is ready."""
        token = _CONNECTING.set(self)
        try:
            yield
        finally:
            _CONNECTING.reset(token)


_CONNECTING: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "switchboard_attempt", default=None)


class ChannelThreads:
    """One channel's own bounded thread pool, for its blocking client and DNS lookups.

    Never asyncio's default pool: there a hung account's calls would queue
    every other account's sends behind them.
    """

    def __init__(self, channel_id: str, size: int = THREADS_PER_CHANNEL) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=size, thread_name_prefix=f"channel-{channel_id}")

    async def run(self, attempt: Attempt, call: Callable[..., T], *args: Any,
                  **kwargs: Any) -> T:
        """`call(*args, **kwargs)` in a worker thread, after the gate said yes there."""
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[T]] = []

        def begin() -> None:
            # The caller gave up (a drain timed out, say): nothing may start now.
            if waiting and waiting[0].cancelled():
                raise GateClosed()
            attempt.begin()

        def in_thread() -> T:
            _on_loop(loop, begin)
            # Asked again by a gated connection, once it is open (see gate_requests).
            _WORKER.ask = functools.partial(_on_loop, loop, begin)
            try:
                return call(*args, **kwargs)
            finally:
                _WORKER.ask = None

        future = loop.run_in_executor(self.pool, in_thread)
        waiting.append(future)
        return await future

    def close(self) -> None:
        # Threads stuck in a hung call end with their client's timeout.
        self.pool.shutdown(wait=False, cancel_futures=True)


def _on_loop(loop: asyncio.AbstractEventLoop, work: Callable[[], None]) -> None:
    """Run `work` on the event loop and wait for it, from a worker thread."""
    done: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run() -> None:
        if not done.set_running_or_notify_cancel():
            return
        try:
            work()
        except BaseException as exc:  # handed to the waiting thread
            done.set_exception(exc)
        else:
            done.set_result(None)

    try:
        loop.call_soon_threadsafe(run)
    except RuntimeError as exc:  # the loop is closed: the daemon is stopping
        raise GateClosed() from exc
    try:
        done.result(GATE_ANSWER_WITHIN)
    except concurrent.futures.TimeoutError:
        if done.cancel():
            raise GateClosed() from None
        done.result()  # it started just now: its answer stands


# What a worker thread's gated connection asks before writing, for one call.
_WORKER = threading.local()


def gate_requests(session: requests.Session) -> requests.Session:
    """`session`, its http(s) connections asking the gate once open, before writing.

    Only calls made through `ChannelThreads.run` ask; others pass as they are.
    """
    adapter = _GatedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _GatedAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _GATED_POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> urllib3.PoolManager:
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **kwargs)
        if type(manager) is urllib3.ProxyManager:  # SOCKS managers bring their own
            manager.pool_classes_by_scheme = _GATED_POOLS
        return manager


def _ask_once_connected(connection: urllib3.connection.HTTPConnection) -> None:
    ask: Callable[[], None] | None = getattr(_WORKER, "ask", None)
    if ask is None:
        return
    _WORKER.ask = None  # once per call: its first request is the attempt's start
    if connection.sock is None:
        connection.connect()  # the lookup and the handshake are waits, not the start
    ask()


class _GatedHTTPConnection(urllib3.connection.HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _ask_once_connected(self)
        super().request(*args, **kwargs)


class _GatedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _ask_once_connected(self)
        super().request(*args, **kwargs)


class _GatedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _GatedHTTPConnection


class _GatedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _GatedHTTPSConnection


_GATED_POOLS: dict[str, type[urllib3.HTTPConnectionPool]] = {
    "http": _GatedHTTPPool, "https": _GatedHTTPSPool}


def never_reached(exc: BaseException | None) -> bool:
    """For requests-based clients: `exc` came before the request was written
    (connection refused, DNS failure, TLS handshake, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        cause = exc.args[0]
        # A failure after the request was written comes as a ProtocolError.
        return isinstance(cause, MaxRetryError) and isinstance(
            cause.reason, NewConnectionError | TLSError)
    return False


class HttpChannel(Channel):
    """A channel that speaks to its platform over its own gated aiohttp session:
    host names resolved in its own threads (never the shared pool), the gate
    asked once each connection is ready."""

    def __init__(self, config: ChannelConfig, *, clock: Clock = system_clock) -> None:
        super().__init__(config, clock=clock)
        self._threads = ChannelThreads(config.id)
        self._session: aiohttp.ClientSession | None = None

    def session_headers(self) -> dict[str, str]:
        """Headers sent with every request of the session (credentials, say)."""
        return {}

    async def start(self) -> None:
        self._session = gated_session(self._threads, self.config.timeout,
                                      self.session_headers())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._threads.close()


def gated_session(threads: ChannelThreads, timeout: float,
                  headers: Mapping[str, str] | None = None) -> aiohttp.ClientSession:
    """An aiohttp session whose requests ask the gate once connected (see `Attempt`),
    resolving host names in the channel's own threads."""
    connector = _GatedConnector(resolver=_ChannelResolver(threads.pool))
    return aiohttp.ClientSession(connector=connector, headers=dict(headers or {}),
                                 timeout=aiohttp.ClientTimeout(total=timeout))


class _GatedConnector(aiohttp.TCPConnector):
    async def connect(self, req: ClientRequest, traces: list[Trace],
                      timeout: aiohttp.ClientTimeout) -> Connection:
        connection = await super().connect(req, traces, timeout)
        attempt = _CONNECTING.get()
        if attempt is not None:
            try:
                attempt.begin()
            except BaseException:
                connection.release()  # nothing was written on it: keep it for later
                raise
        return connection


class _ChannelResolver(AbstractResolver):
    """getaddrinfo in the channel's pool (aiohttp's default uses the loop's shared one)."""

    def __init__(self, pool: concurrent.futures.Executor) -> None:
        self._pool = pool

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        lookup = functools.partial(socket.getaddrinfo, host, port, family=family,
                                   type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
        infos = await asyncio.get_running_loop().run_in_executor(self._pool, lookup)
        return [ResolveResult(hostname=host, host=str(address[0]), port=int(address[1]),
                              family=af, proto=proto,
                              flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
                for af, _, proto, _, address in infos
                if af in (socket.AF_INET, socket.AF_INET6)]

    async def close(self) -> None:
        pass


async def reporting(channel: Channel, work: Awaitable[T]) -> T:
    """Await `work`, keeping `channel.last_error` for `switchboard channels`."""
    try:
        result = await work
    except ChannelError as exc:
        channel.last_error = LastError(at=to_datetime(channel.clock()), message=exc.message,
                                       permanent=exc.permanent)
        raise
    channel.last_error = None
    return result


def compose(message: Message) -> str:
    """The text as published: the link appended unless the text already carries it."""
    return with_link(message.text, message.link)
