"""What the network channels share: the gate at the true start, retries, rate-limit waits.

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

One `Retrier` per channel, that is per account: after a 429 every later call
of the same operation waits for the platform's reset instead of asking again,
and a reset further away than `rate_limit_max_wait` fails fast as a transient
error so the dispatcher is never parked for hours on one account.

Options read from `ChannelConfig.options` (all optional):
  max_retries          retries after the first attempt (default 3)
  retry_base           first backoff delay in seconds, doubled per retry (default 1.0)
  retry_max            cap on one backoff delay in seconds (default 30)
  rate_limit_wait      wait after a 429 that names no reset time (default 60)
  rate_limit_max_wait  longest wait for a reset before failing (default 900)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import ipaddress
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import httpcore
import httpx
import requests
import requests.adapters
import urllib3
import urllib3.connection
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from httpx._utils import get_environment_proxies
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

    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
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


def httpx_trace(attempt: Attempt) -> Callable[[str, Mapping[str, Any]],
                                                Coroutine[Any, Any, None]]:
    """The `trace` extension of an httpx request that asks the gate at its true start:
    httpcore calls it once the connection is ready (new or reused, TLS done), right
    before it writes the request headers. A proxy's CONNECT is a wait, not the start."""

    async def trace(event: str, info: Mapping[str, Any]) -> None:
        if not event.endswith(".send_request_headers.started"):
            return
        request = info.get("request")
        if getattr(request, "method", None) == b"CONNECT":
            return
        attempt.begin()

    return trace


def gated_transports(threads: ChannelThreads, **kwargs: Any) -> dict[str, Any]:
    """The `transport` and `mounts` arguments of an httpx client whose connections,
    direct or through the proxies the environment names, resolve host names in the
    channel's own threads. (Given a transport, httpx would ignore HTTPS_PROXY and
    NO_PROXY: they are mounted here as httpx would mount them.)"""
    mounts = {pattern: None if proxy is None else gated_transport(threads, proxy=proxy, **kwargs)
              for pattern, proxy in get_environment_proxies().items()}
    return {"transport": gated_transport(threads, **kwargs), "mounts": mounts}


def gated_transport(threads: ChannelThreads, **kwargs: Any) -> httpx.AsyncHTTPTransport:
    """An httpx transport resolving host names in the channel's own threads (httpx
    would use the loop's shared pool, where a hung account's lookups queue others)."""
    transport = httpx.AsyncHTTPTransport(**kwargs)
    # httpcore takes its network backend only when the pool is built; httpx builds
    # the pool itself, so the backend is swapped in before any connection exists.
    transport._pool._network_backend = _ChannelNetwork(threads.pool)
    return transport


class _ChannelNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, given addresses looked up in the channel's pool."""

    def __init__(self, pool: concurrent.futures.Executor) -> None:
        self._pool = pool
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        failure: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in await self._addresses(host, port, timeout):
            try:
                return await self._backend.connect_tcp(address, port, timeout, local_address,
                                                       socket_options)
            except httpcore.ConnectError as exc:  # the next address may answer
                failure = exc
        raise failure

    async def _addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [host]  # a literal needs no lookup
        lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._pool, lookup), timeout)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"looking up {host} took too long") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot look up {host}: {exc}") from exc
        found = [str(address[0]) for af, _, _, _, address in infos
                 if af in (socket.AF_INET, socket.AF_INET6)]
        return list(dict.fromkeys(found))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        return await self._backend.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


OPTION_NAMES = ("max_retries", "retry_base", "retry_max", "rate_limit_wait",
                "rate_limit_max_wait")


class RateLimited(ChannelError):
    """A 429: transient, and no call of this kind may go out before `reset_at`."""

    def __init__(self, message: str, reset_at: float | None) -> None:
        super().__init__(message, permanent=False, reason="rate_limited")
        self.reset_at = reset_at  # Unix time; None when the platform named none


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    retry_base: float = 1.0
    retry_max: float = 30.0
    rate_limit_wait: float = 60.0
    rate_limit_max_wait: float = 900.0
    # False for a receiver that ignores idempotency keys: after an attempt that
    # may have reached it, a retry could publish twice, so there is none.
    retry_maybe_sent: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any],
                     retry_maybe_sent: bool = True) -> RetryPolicy:
        d = cls()
        return cls(
            max_retries=max(0, int(options.get("max_retries", d.max_retries))),
            retry_base=float(options.get("retry_base", d.retry_base)),
            retry_max=float(options.get("retry_max", d.retry_max)),
            rate_limit_wait=float(options.get("rate_limit_wait", d.rate_limit_wait)),
            rate_limit_max_wait=float(options.get("rate_limit_max_wait", d.rate_limit_max_wait)),
            retry_maybe_sent=retry_maybe_sent,
        )

    def backoff(self, failures: int, rand: float) -> float:
        """Exponential with jitter in [50%, 100%] so retries of many posts do not align."""
        ceiling = min(self.retry_max, self.retry_base * 2.0 ** (failures - 1))
        return ceiling * (0.5 + rand / 2)


class Retrier:
    """Runs one operation with bounded retries, honouring the account's rate limits."""

    def __init__(self, policy: RetryPolicy, *, now: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rand: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._now, self._sleep, self._rand = now, sleep, rand
        self._blocked_until: dict[str, float] = {}

    def blocked_until(self, operation: str) -> float | None:
        until = self._blocked_until.get(operation)
        return until if until is not None and until > self._now() else None

    async def run(self, operation: str, attempt: Callable[[], Awaitable[T]],
                  may_start: Callable[[], bool] | None = None) -> T:
        failures = 0
        maybe_sent = False  # an attempt failed in a way that may have reached the platform
        while True:
            waited = await self._wait_for_reset(operation)
            # Every attempt after a wait asks the gate again: an incident declared
            # meanwhile stops the send. If an earlier attempt may have reached the
            # platform, the post is left for review rather than sent again.
            if (failures or waited) and may_start is not None and not may_start():
                if maybe_sent:
                    raise _closed_after_maybe_sent()
                raise GateClosed()
            try:
                return await attempt()
            except RateLimited as exc:
                reset = exc.reset_at or self._now() + self.policy.rate_limit_wait
                self._blocked_until[operation] = max(reset, self._now())
                error: ChannelError = exc
                delay = 0.0  # the wait for the reset happens at the top of the loop
            except GateClosed as exc:
                if maybe_sent:
                    raise _closed_after_maybe_sent() from exc
                raise
            except ChannelError as exc:
                if exc.permanent:
                    exc.maybe_sent = exc.maybe_sent or maybe_sent
                    raise
                if not exc.not_sent:
                    maybe_sent = True
                    if not self.policy.retry_maybe_sent:
                        raise ChannelError(
                            f"{exc.message}; not retried: the receiver ignores idempotency "
                            "keys and may have the post", reason=exc.reason,
                            maybe_sent=True) from exc
                error = exc
                delay = self.policy.backoff(failures + 1, self._rand())
            failures += 1
            if failures > self.policy.max_retries:
                raise ChannelError(f"{error.message} (gave up after {failures} attempts)",
                                   permanent=False, reason=error.reason,
                                   maybe_sent=maybe_sent) from error
            if delay > 0:
                await self._sleep(delay)

    async def _wait_for_reset(self, operation: str) -> bool:
        """Sleep out the account's rate limit; True if there was one to wait for."""
        until = self._blocked_until.get(operation)
        if until is None:
            return False
        remaining = until - self._now()
        if remaining > self.policy.rate_limit_max_wait:
            at = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
            raise ChannelError(f"rate limited until {at}; not waiting more than "
                               f"{self.policy.rate_limit_max_wait:g}s",
                               permanent=False, reason="rate_limited")
        # Re-checked after each sleep: the loop clock and the wall clock the
        # reset is given in may disagree by a few milliseconds.
        while remaining > 0:
            await self._sleep(remaining)
            remaining = until - self._now()
        if self._blocked_until.get(operation) == until:
            del self._blocked_until[operation]
        return True


def _closed_after_maybe_sent() -> ChannelError:
    return ChannelError("an incident took the channel before a retry; an earlier attempt "
                        "may have reached the platform", reason="gate_closed", maybe_sent=True)


async def reporting(channel: Channel, work: Awaitable[T]) -> T:
    """Await `work`, keeping `channel.last_error` for `switchboard channels`."""
    try:
        result = await work
    except ChannelError as exc:
        channel.last_error = LastError(at=datetime.now(UTC), message=exc.message,
                                       permanent=exc.permanent)
        raise
    channel.last_error = None
    return result


def compose(message: Message) -> str:
    """The text as published: the link appended unless the text already carries it."""
    return with_link(message.text, message.link)
