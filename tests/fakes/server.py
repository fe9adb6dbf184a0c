"""A scriptable HTTP server on loopback that the platform fakes are built on.

Each fake is a real HTTP server (stdlib, own thread, port 0), so the real
clients (tweepy, Mastodon.py, aiohttp) talk to it over a socket exactly as
they would to the platform, and a daemon started as a process can use it too.

Every request is recorded (`.requests`) with its arrival time. By default a
request gets the platform's normal behaviour (`route`); a test can queue
steps with `.script(...)` that the next requests get instead, one step each:

    Normal()                          the platform's normal behaviour
    Reply(status, body, headers)      a canned answer; nothing is applied
    Fail(status, message, apply)      the platform's error shape for `status`; with
                                      apply=True the request took effect anyway (a
                                      gateway error after the backend acted)
    RateLimit(reset_at)               a 429 announcing a reset (Unix time) or none
    Hang(seconds, then, apply)        stall before answering ("answer") or
                                      closing the connection ("drop"); with
                                      apply=True the request takes effect first,
                                      the worst case for duplicates
    Hold(then, apply, cap)            like Hang, but stall until the test calls
                                      `.release()` (or the fake stops, or `cap`
                                      seconds pass, so a failing test cannot hang)
    Reset(apply)                      close the connection with a TCP reset

A Hang ends on its own clock; a test that needs a request to be still stalled
while it does something else (starts a process, edits a post) uses Hold, so
how long that something takes on a loaded machine cannot end the stall early.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # Unix time the request arrived
    step: str  # what the fake did with it: "normal", "reply 500", "hang", ...

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def fields(self) -> dict[str, Any]:
        """The body's fields whether it came as JSON or as a form."""
        ctype = self.header("Content-Type") or ""
        if "json" in ctype:
            data = self.json()
            return data if isinstance(data, dict) else {}
        return dict(self.form())


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None  # JSON-serialisable, or str/bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Normal:
    pass


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fail:
    status: int
    message: str | None = None
    apply: bool = False  # True: the request took effect, then the error came back


@dataclass(frozen=True)
class RateLimit:
    reset_at: float | None = None


@dataclass(frozen=True)
class Hang:
    seconds: float = 2.0
    then: Literal["answer", "drop"] = "answer"
    apply: bool = True


@dataclass(frozen=True)
class Hold:
    then: Literal["answer", "drop"] = "answer"
    apply: bool = True
    cap: float = 60.0  # a safety net only: tests release (or stop the fake) long before


@dataclass(frozen=True)
class Reset:
    apply: bool = False


Step = Normal | Reply | Fail | RateLimit | Hang | Hold | Reset


class FakeServer:
    """Base of the platform fakes: subclasses define `route`, `error`, `rate_limited`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._script: deque[Step] = deque()
        self._stopping = threading.Event()
        # Holds wait on this (it shares the fake's lock); `release()` bumps the
        # generation, ending every hold that began before it.
        self._released = threading.Condition(self._lock)
        self._release_generation = 0
        self._holding = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what a platform fake defines -------------------------------------

    def route(self, request: Request) -> Answer:
        """The platform's normal behaviour (called under the fake's lock)."""
        raise NotImplementedError

    def error(self, status: int, message: str | None = None) -> Answer:
        """The platform's error answer for `status`."""
        return Answer(status, {"error": message or f"error {status}"})

    def rate_limited(self, reset_at: float | None) -> Answer:
        return Answer(429, {"error": "Too many requests"})

    def scripted(self, method: str, path: str) -> bool:
        """Whether scripted steps apply to this request. A fake whose client makes
        side requests (a login, a quota read) scripts only the posting calls."""
        return True

    # -- life cycle ---------------------------------------------------------

    def start(self) -> Self:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        server.handle_error = _quiet_handle_error  # type: ignore[method-assign]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=type(self).__name__,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes hanging handlers
        with self._released:
            self._released.notify_all()  # and held ones
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("fake server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return self.base_url

    # -- scripting and records ---------------------------------------------

    def script(self, *steps: Step) -> None:
        with self._lock:
            self._script.extend(steps)

    def release(self) -> int:
        """End every Hold under way (each then answers or drops as scripted); the
        number that were still holding, so a test can check its stall lasted."""
        with self._released:
            self._release_generation += 1
            self._released.notify_all()
            return self._holding

    @property
    def holding(self) -> int:
        """How many requests a Hold is stalling right now."""
        with self._lock:
            return self._holding

    @property
    def pending_steps(self) -> int:
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- serving -----------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            scripted = self._script and self.scripted(handler.command, handler.path)
            step = self._script.popleft() if scripted else Normal()
            generation = self._release_generation
            if isinstance(step, Hold):
                # Counted from the moment it is recorded, so a test that saw the
                # request and releases at once finds it holding.
                self._holding += 1
            request = Request(method=handler.command, path=handler.path,
                              headers=dict(handler.headers.items()), body=body,
                              at=time.time(), step=_describe(step))
            self._requests.append(request)
        try:
            answer = self._answer(step, request)
            if isinstance(step, Hold):
                self._hold(step, generation)
        finally:
            if isinstance(step, Hold):
                with self._lock:
                    self._holding -= 1
        if isinstance(step, Hang | Hold):
            if isinstance(step, Hang):
                self._stopping.wait(step.seconds)
            if step.then == "drop":
                answer = None
            elif answer is None:
                answer = self.error(504, "gateway timeout")
        if answer is None:
            _reset(handler)
        else:
            _send(handler, answer)

    def _hold(self, step: Hold, generation: int) -> None:
        deadline = time.monotonic() + step.cap
        with self._released:
            while self._release_generation == generation and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._released.wait(left)

    def _answer(self, step: Step, request: Request) -> Answer | None:
        if isinstance(step, Reply):
            return Answer(step.status, step.body, dict(step.headers))
        if isinstance(step, Fail):
            if step.apply:
                with self._lock:
                    self.route(request)
            return self.error(step.status, step.message)
        if isinstance(step, RateLimit):
            return self.rate_limited(step.reset_at)
        if isinstance(step, Normal) or step.apply:
            with self._lock:
                answer = self.route(request)
            return None if isinstance(step, Reset) else answer
        return None


def _describe(step: Step) -> str:
    if isinstance(step, Reply | Fail):
        return f"{type(step).__name__.lower()} {step.status}"
    return type(step).__name__.lower()


def _send(handler: BaseHTTPRequestHandler, answer: Answer) -> None:
    body = answer.body
    headers = dict(answer.headers)
    if body is None:
        data = b""
    elif isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    else:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
    try:
        handler.send_response(answer.status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:
        pass  # the client gave up (timed out) before the answer came


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Close with RST rather than FIN: the client sees 'connection reset by peer'."""
    handler.close_connection = True
    sock = handler.connection
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def _quiet_handle_error(request: Any, client_address: Any) -> None:
    """Clients that time out and hang up are part of the tests; no tracebacks."""


def _handler_for(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake._serve(self)

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
