"""The HTTP listener's defences: a connection cap, a request-head deadline, quiet logs.

A declaration must get through while strangers hold sockets open. So:

- a connection that has not sent a whole request head within
  `header_timeout` is closed, and so is one idle between requests;
- open connections are capped below the process's file limit, leaving room
  for the store, the channels and the feeds; at the cap a new connection
  closes the oldest one still waiting for its head (a real client sends its
  head at once and is served), and only when none waits is the newcomer
  refused with a 503;
- the file limit is never reached through the listener, and should it be
  reached anyway, the loop's "accept() out of system resource" report is
  logged at most once per interval instead of a hundred times a tick;
- malformed requests are logged as one short, escaped line per interval:
  raw request bytes never reach the log.

The limits come from the environment (`SWITCHBOARD_HEADER_TIMEOUT`,
`SWITCHBOARD_BODY_TIMEOUT`, `SWITCHBOARD_MAX_CONNECTIONS`) so that a unit
drop-in or a test can change them without a config change.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger("listener")

# File descriptors kept for everything but client connections: the store
# (database, WAL and shared memory for each connection), channel and feed
# sessions, the loop's own (about 100 in all), and the connections accepted
# before the cap sees them: asyncio accepts up to the backlog in one loop
# tick, and a connection closed at the cap frees its descriptor only on the
# next, so up to three backlogs can be in flight.
_BACKLOG = 128
_RESERVED_MIN = 3 * _BACKLOG + 100
_BUSY = b'{"error": {"code": "busy", "message": "too many connections; try again"}}\n'
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(_BUSY), _BUSY))


class BadLimit(ValueError):
    """A limit in the environment that is not a positive number."""


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str], file_limit: int | None = None) -> Limits:
        soft = file_limit if file_limit is not None else _soft_file_limit()
        cap = default_cap(soft)
        given = _positive(env, "SWITCHBOARD_MAX_CONNECTIONS", float(cap))
        return cls(header_timeout=_positive(env, "SWITCHBOARD_HEADER_TIMEOUT", 10.0),
                   body_timeout=_positive(env, "SWITCHBOARD_BODY_TIMEOUT", 30.0),
                   # Never above the default: past it, accept() would fail.
                   max_connections=min(int(given), cap))


def default_cap(file_limit: int) -> int:
    reserve = max(_RESERVED_MIN, file_limit // 5)
    return max(16, file_limit - reserve)


def _soft_file_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else int(soft)


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise BadLimit(f"{name} must be a positive number of "
                       f"{'connections' if 'CONNECTIONS' in name else 'seconds'}, not {raw!r}")
    return value


class Throttled:
    """Logs an event at most once per `every` seconds, with how many were folded in."""

    def __init__(self, event: str, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, logger: Any = None) -> None:
        self.event, self.every, self.clock = event, every, clock
        self.log = logger if logger is not None else log
        self._last = -float("inf")
        self._folded = 0

    def __call__(self, **fields: Any) -> bool:
        now = self.clock()
        if now - self._last < self.every:
            self._folded += 1
            return False
        self.log.warning(self.event, suppressed_since_last=self._folded, **fields)
        self._last, self._folded = now, 0
        return True


def escaped(value: object, limit: int = 120) -> str:
    """A short, printable stand-in for whatever a client sent."""
    text = repr(value) if isinstance(value, bytes | bytearray) else str(value)
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _without_quotes(message: object) -> str:
    """aiohttp's reason for a bad request, without the request bytes it quotes."""
    first = str(message).split("\n", 1)[0]
    for quote in ("'", '"'):
        first = first.split(quote, 1)[0]
    return escaped(first.rstrip(": b"), 80)


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's connection logger, reduced to one escaped line per interval.

    aiohttp logs a bad request with its exception, whose text quotes the
    offending bytes (up to its line limit): a client could write into the log.
    """

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._bad = Throttled("http_bad_request")

    def exception(self, msg: object, *args: object, exc_info: Any = True,
                  **kwargs: Any) -> None:
        if not str(msg).startswith("Error handling request"):
            # A fault of the server's own ("Unhandled exception"): keep its traceback.
            self.logger.error(msg, *args, exc_info=exc_info, **kwargs)
            return
        exc = exc_info if isinstance(exc_info, BaseException) else None
        peer = args[0] if args else None
        self._bad(peer=escaped(peer, 60), error=type(exc).__name__ if exc else escaped(msg, 60),
                  detail=_without_quotes(getattr(exc, "message", exc) if exc else ""))

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.exception(msg, *args, exc_info=kwargs.get("exc_info"))

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        return None  # BadHttpMethod (TLS or junk on the port): not worth a line


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's handler inside, watched by the guard."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self.inner, self.guard = inner, guard
        self.transport: asyncio.Transport | None = None
        self.deadline = 0.0
        self.waiting_for_head = True
        self.live = False  # handed to aiohttp (not refused at the cap)
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.guard.admit(self):
            return
        self.live = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.live:
            return
        if self.waiting_for_head:
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self.waiting_for_head = False
                self.guard.head_complete(self)
            else:
                self._tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.live else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.gone(self)
        if self.live:
            self.live = False
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.live:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.live:
            self.inner.resume_writing()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            # abort: the file descriptor is what is short, free it now
            self.transport.abort()


class ConnectionGuard:
    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self.clock = limits, clock
        self.open: set[_Connection] = set()
        self.waiting: OrderedDict[_Connection, None] = OrderedDict()  # oldest first
        self.evicted = self.refused = self.timed_out = 0
        self._capped = Throttled("connections_capped")
        self._reaper: asyncio.TimerHandle | None = None

    def factory(self, server: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Connection(server(), self)

    def admit(self, conn: _Connection) -> bool:
        if len(self.open) >= self.limits.max_connections:
            if self.waiting:
                oldest = next(iter(self.waiting))
                self.evicted += 1
                oldest.close()
                self.gone(oldest)
            else:
                self.refused += 1
                self._note_cap()
                assert conn.transport is not None
                conn.transport.write(_REFUSAL)
                conn.transport.close()
                return False
            self._note_cap()
        self.open.add(conn)
        conn.deadline = self.clock() + self.limits.header_timeout
        self.waiting[conn] = None
        self._arm()
        return True

    def head_complete(self, conn: _Connection) -> None:
        self.waiting.pop(conn, None)

    def gone(self, conn: _Connection) -> None:
        self.open.discard(conn)
        self.waiting.pop(conn, None)

    def _note_cap(self) -> None:
        self._capped(open=len(self.open), max_connections=self.limits.max_connections,
                     evicted=self.evicted, refused=self.refused)

    def _arm(self) -> None:
        if self._reaper is None and self.waiting:
            first = next(iter(self.waiting))
            delay = max(0.0, first.deadline - self.clock()) + 0.05
            self._reaper = asyncio.get_running_loop().call_later(delay, self._reap)

    def _reap(self) -> None:
        """Close, oldest first, every connection past its head deadline."""
        self._reaper = None
        now = self.clock()
        while self.waiting:
            conn = next(iter(self.waiting))
            if conn.deadline > now:
                break
            self.timed_out += 1
            conn.close()
            self.gone(conn)
        self._arm()

    def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through a `ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, limits: Limits) -> None:
        super().__init__(runner, backlog=_BACKLOG)
        # Bound by `bind_listener` before start-up repair (a port in use stops
        # the start before the store is touched); served from here on.
        self.sock = sock
        self.guard = ConnectionGuard(limits)

    @property
    def name(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        quiet_accept_errors(loop)
        server = self._runner.server
        assert server is not None
        self._server = await loop.create_server(
            self.guard.factory(server), sock=self.sock, backlog=_BACKLOG)

    async def stop(self) -> None:
        self.guard.stop()
        await super().stop()


def bind_listener(host: str, port: int) -> socket.socket:
    """The API's socket, bound (and listening) before anything else runs: a port in
    use stops the start before the store is touched."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def app_runner(app: web.Application, limits: Limits) -> web.AppRunner:
    """The app's runner: idle keep-alive connections close after the head timeout."""
    return web.AppRunner(app, access_log=None, handle_signals=False,
                         keepalive_timeout=limits.header_timeout, logger=ServerLog())


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Fold the loop's repeated accept() failures into one line per interval."""
    previous = loop.get_exception_handler()
    throttled = Throttled("listener_out_of_resources")

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system"):
            throttled(error=escaped(context.get("exception"), 120))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
