"""Strangers holding sockets open never keep a declaration out (design §7.1).

The real daemon runs with a small file limit (inherited from this process,
lowered around its start) and a short head timeout; the attack is raw
sockets on 127.0.0.1 that send half a request and wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from aiohttp import web

from switchboard.listener import GuardedSite, Limits, app_runner, bind_listener
from tests.daemon import TOKENS, DaemonProcess, free_port

FILE_LIMIT = 1024
HEAD_TIMEOUT = 2.0
HALF_SENT = 1500  # more than the daemon's file limit
PARTIAL_HEAD = b"POST /api/v1/incidents HTTP/1.1\r\nHost: switchboard\r\nX-Slow: "


@contextmanager
def file_limit(soft: int) -> Iterator[None]:
    """Children started inside inherit `soft` as their RLIMIT_NOFILE."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


@contextmanager
def limited_daemon(tmp: Path) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(tmp, env={"SWITCHBOARD_HEADER_TIMEOUT": str(HEAD_TIMEOUT)})
    with file_limit(FILE_LIMIT):
        daemon.start(wait=False)
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.kill()


def half_sent(port: int, count: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(sock)
            sock.sendall(PARTIAL_HEAD)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""  # the socket is non-blocking
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def declare(daemon: DaemonProcess) -> requests.Response:
    return requests.post(daemon.url + "/api/v1/incidents", timeout=5,
                         json={"runbook": "service-outage", "title": "under attack"},
                         headers={"Authorization": f"Bearer {TOKENS['ops']}"})


def test_a_declaration_answers_while_strangers_hold_more_sockets_than_the_file_limit(
        tmp_path: Path) -> None:
    with limited_daemon(tmp_path) as daemon:
        socks = half_sent(daemon.port, HALF_SENT)
        try:
            started = time.monotonic()
            response = declare(daemon)
            assert response.status_code == 201, response.text
            assert time.monotonic() - started < 2.0
            assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 200
        finally:
            for sock in socks:
                sock.close()
        log = daemon.log()
        # The file limit was never reached: accept() never failed.
        assert "out of system resource" not in log and "listener_out_of_resources" not in log
        assert len(log.splitlines()) < 50, log[-3000:]


def test_half_sent_requests_are_closed_after_the_head_timeout(tmp_path: Path) -> None:
    with limited_daemon(tmp_path) as daemon:
        socks = half_sent(daemon.port, 100)  # under the cap: only the timeout closes them
        try:
            time.sleep(HEAD_TIMEOUT / 2)
            assert not any(closed_by_server(s) for s in socks)
            deadline = time.monotonic() + HEAD_TIMEOUT + 3
            while time.monotonic() < deadline and not all(closed_by_server(s) for s in socks):
                time.sleep(0.1)
            assert all(closed_by_server(s) for s in socks)
        finally:
            for sock in socks:
                sock.close()


def test_bytes_after_a_valid_request_never_reach_the_log(daemon: DaemonProcess) -> None:
    junk = b"GET /FORGED-LOG-LINE\x1b[31m" + b"Z" * 120_000 + b" HTTP/1.1\r\n\r\n"
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: switchboard\r\n\r\n" + junk)
            sock.settimeout(5)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert b" 400 Bad Request" in answer
    log = daemon.log()
    assert "FORGED-LOG-LINE" not in log and "ZZZZ" not in log and "\x1b" not in log
    assert max(len(line) for line in log.splitlines()) < 600, log[-2000:]
    assert log.count("http_bad_request") == 1  # the repeats are folded into one line


async def _serve_three() -> tuple[web.AppRunner, int]:
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app.router.add_get("/", hello)
    limits = Limits(header_timeout=30, body_timeout=30, max_connections=3)
    runner = app_runner(app, limits)
    await runner.setup()
    port = free_port()
    await GuardedSite(runner, bind_listener("127.0.0.1", port), limits).start()
    return runner, port


async def _exchange(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


def test_at_the_cap_a_waiting_connection_makes_room_and_busy_ones_are_kept() -> None:
    async def scenario() -> None:
        runner, port = await _serve_three()
        opened: list[asyncio.StreamWriter] = []

        async def connect(data: bytes) -> asyncio.StreamReader:
            reader, writer = await _exchange(port, data)
            opened.append(writer)
            return reader

        try:
            for _ in range(2):
                reader = await connect(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                assert (await reader.readuntil(b"hello")).startswith(b"HTTP/1.1 200")
            slow = await connect(b"GET / HTTP/1.1\r\nHost: a\r\n")
            await asyncio.sleep(0.1)
            # The fourth closes the half-sent one and is served itself.
            reader = await connect(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await reader.readuntil(b"hello")).startswith(b"HTTP/1.1 200")
            with contextlib.suppress(ConnectionError):
                assert await slow.read() == b""
            # Three kept-alive connections, none waiting: a fifth is refused with 503.
            answer = await (await connect(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")).read()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503")
            assert f"Content-Length: {len(body)}".encode() in head
            assert json.loads(body)["error"]["code"] == "busy"
        finally:
            for writer in opened:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            await runner.cleanup()

    asyncio.run(scenario())


def test_the_connection_cap_stays_below_the_file_limit_whatever_is_asked() -> None:
    assert Limits.from_env({}, file_limit=16384).max_connections == 13108
    assert Limits.from_env({}, file_limit=1024).max_connections == 540
    assert Limits.from_env({"SWITCHBOARD_MAX_CONNECTIONS": "500"},
                           file_limit=16384).max_connections == 500
    asked_too_many = {"SWITCHBOARD_MAX_CONNECTIONS": "100000"}
    assert Limits.from_env(asked_too_many, file_limit=2048).max_connections == 1564


def test_a_limit_that_is_not_a_positive_number_stops_the_start_with_a_message(
        tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, env={"SWITCHBOARD_HEADER_TIMEOUT": "ten"})
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(30) == 1
    assert "SWITCHBOARD_HEADER_TIMEOUT must be a positive number of seconds, not 'ten'" \
        in daemon.log()
    assert "Traceback" not in daemon.log()
