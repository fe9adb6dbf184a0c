"""The gate is asked at the true start of a send, in the channel's own threads.

A send may not start after a declaration was acknowledged (design 7.1), so
every kind asks `Message.may_start` at the moment its bytes leave, and no
kind waits in asyncio's shared thread pool, where another account's hung
calls would hold it back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from switchboard.channels.base import GateClosed, Message, Start
from switchboard.channels.remote import Attempt, ChannelThreads
from switchboard.config import ChannelConfig
from tests.channels.harness import NETWORK_KINDS, Harness, network_harness, run


def gated(may_start: Callable[[], bool], post_id: str = "301",
          text: str = "Weekend offer: kids travel free") -> Message:
    return Message(post_id=post_id, channel="test", kind="marketing", text=text, link=None,
                   sent_at=datetime.now(UTC), may_start=may_start)


def test_a_gate_closed_at_the_start_of_the_send_publishes_nothing(any_kind: Harness) -> None:
    asked: list[int] = []

    def closed() -> bool:
        asked.append(1)
        return False

    msg = gated(closed)
    with pytest.raises(GateClosed):
        run(any_kind.publish(msg))
    assert asked, "the channel never asked the gate at the start of its send"
    assert any_kind.count(msg.text) == 0
    if any_kind.network:
        assert any_kind.requests == [], "nothing may reach the platform"


def test_the_moment_the_gate_said_yes_is_the_moment_of_the_send(any_kind: Harness) -> None:
    ticks = iter(range(1_800_000_000, 1_800_000_100))
    start = Start(lambda now: True, lambda: float(next(ticks)))
    run(any_kind.publish(gated(start)))
    assert start.at is not None, "the channel never asked the gate at the start of its send"
    if any_kind.kind == "outbox":
        (line,) = Path(any_kind.config.options["path"]).read_text().splitlines()
        assert json.loads(line)["sent_at"] == datetime.fromtimestamp(
            start.at, UTC).isoformat(timespec="microseconds")


class RefusingPool(concurrent.futures.ThreadPoolExecutor):
    """Stands in for asyncio's shared pool: any use of it is recorded and refused."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.used: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.used.append(getattr(fn, "__name__", repr(fn)))
        raise RuntimeError("the shared thread pool was used")


def pointed_at(harness: Harness, base_url: str) -> Harness:
    """`harness`, its channel configured to reach its platform at `base_url`."""
    assert harness.fake is not None
    old = harness.fake.base_url

    def moved(values: dict[str, Any]) -> dict[str, Any]:
        return {k: v.replace(old, base_url) if isinstance(v, str) else v
                for k, v in values.items()}

    harness.config = replace(harness.config, options=moved(dict(harness.config.options)),
                             secrets=moved(dict(harness.config.secrets)))
    return harness


def by_host_name(harness: Harness) -> Harness:
    """`harness` reaching its fake as `localhost`, so that each send needs a DNS lookup."""
    assert harness.fake is not None
    return pointed_at(harness, harness.fake.base_url.replace("127.0.0.1", "localhost"))


def test_no_network_channel_waits_in_the_shared_thread_pool(remote: Harness) -> None:
    by_host_name(remote)
    shared = RefusingPool()

    async def scenario() -> None:
        asyncio.get_running_loop().set_default_executor(shared)
        async with remote.opened() as channel:
            await channel.publish(gated(lambda: True))

    run(scenario())
    assert shared.used == []
    assert len(remote.requests) == 1


def test_a_send_waiting_for_a_thread_asks_the_gate_once_it_has_one() -> None:
    threads = ChannelThreads("test", size=1)
    release = threading.Event()
    gate_open = [True]
    called: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        busy = loop.run_in_executor(threads.pool, release.wait, 5.0)  # the only thread
        send = asyncio.ensure_future(threads.run(Attempt(lambda: gate_open[0]),
                                                 called.append, "sent"))
        await asyncio.sleep(0.05)
        gate_open[0] = False  # declared while the send waits for the thread
        release.set()
        await busy
        with pytest.raises(GateClosed):
            await send

    try:
        asyncio.run(scenario())
    finally:
        threads.close()
    assert called == [], "the call started after the gate had closed"


def test_the_gate_is_asked_on_the_event_loop_not_in_the_worker_thread() -> None:
    threads = ChannelThreads("test", size=1)
    seen: list[bool] = []

    async def scenario() -> str:
        loop_thread = threading.current_thread()

        def may_start() -> bool:
            seen.append(threading.current_thread() is loop_thread)
            return True

        return await threads.run(Attempt(may_start), lambda: threading.current_thread().name)

    try:
        worker = asyncio.run(scenario())
    finally:
        threads.close()
    assert seen == [True], "the gate lives on the loop; a thread must not read it directly"
    assert worker.startswith("channel-test")


def test_a_hung_call_on_one_channel_leaves_another_channels_threads_free() -> None:
    hung, healthy = ChannelThreads("hung", size=2), ChannelThreads("healthy", size=2)
    release = threading.Event()

    async def scenario() -> float:
        stuck = [asyncio.ensure_future(hung.run(Attempt(None), release.wait, 5.0))
                 for _ in range(4)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await healthy.run(Attempt(lambda: True), time.sleep, 0)
        took = time.monotonic() - started
        release.set()
        await asyncio.gather(*stuck)
        return took

    try:
        took = asyncio.run(scenario())
    finally:
        hung.close()
        healthy.close()
    assert took < 0.5


@pytest.mark.parametrize("proxied", [False, True], ids=["direct", "through-a-proxy"])
@pytest.mark.parametrize("kind", ["x", "mastodon"])
def test_a_blocking_client_asks_the_gate_again_once_connected_and_before_writing(
        kind: str, proxied: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:  # a platform that never accepts: we accept for it
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        if proxied:  # the listener is the proxy; the platform's address is never dialled
            monkeypatch.setenv("HTTP_PROXY", url)
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            url = "http://192.0.2.1"
        options = {"api_url": url} if kind == "x" else {"api_base_url": url}
        secrets = ({"consumer_key": "k", "consumer_secret": "s", "access_token": "t",
                    "access_token_secret": "u"} if kind == "x" else {"access_token": "t"})
        harness = Harness(kind, ChannelConfig(id=kind, kind=kind, timeout=2.0,
                                              options={**options, "max_retries": 0},
                                              secrets=secrets))
        accepted: list[socket.socket] = []
        connected_when_asked: list[bool] = []

        def may_start() -> bool:
            with contextlib.suppress(BlockingIOError):  # connected yet?
                accepted.append(listener.accept()[0])
            connected_when_asked.append(bool(accepted))
            return len(connected_when_asked) == 1  # the declaration comes in between

        with pytest.raises(GateClosed):
            run(harness.publish(gated(may_start)))
        assert connected_when_asked == [False, True], (
            "the binding answer must come once the connection is open")
        (peer,) = accepted
        with peer:
            peer.settimeout(2.0)
            assert peer.recv(1024) == b"", "bytes of the request left after the gate closed"


def test_a_send_waiting_for_its_dns_lookup_asks_the_gate_after_it(remote: Harness) -> None:
    by_host_name(remote)
    release = threading.Event()
    gate_open = [True]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with remote.opened() as channel:
            pool = channel._threads.pool  # type: ignore[attr-defined]
            # Every thread of the channel busy: its lookup (or its call) has to wait.
            busy = [loop.run_in_executor(pool, release.wait, 5.0)
                    for _ in range(pool._max_workers)]
            send = asyncio.ensure_future(channel.publish(gated(lambda: gate_open[0])))
            await asyncio.sleep(0.1)
            gate_open[0] = False  # declared while the send waits for its lookup
            release.set()
            await asyncio.gather(*busy)
            with pytest.raises(GateClosed):
                await send

    run(scenario())
    assert remote.requests == [], "the request went out after the gate had closed"


@pytest.fixture
def silent_platform() -> Iterator[socket.socket]:
    """A platform address that takes connections and never reads: we accept for it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        yield listener


# The kinds whose client is asynchronous (aiohttp, and httpx under the atproto SDK):
# their only answer comes from the connection, once it is ready.
ASYNC_CLIENT_KINDS = tuple(k for k in NETWORK_KINDS if k not in ("x", "mastodon"))


@pytest.mark.parametrize("kind", ASYNC_CLIENT_KINDS)
def test_an_async_client_asks_the_gate_once_connected_and_before_writing(
        kind: str, silent_platform: socket.socket) -> None:
    harness = pointed_at(network_harness(kind),
                         f"http://127.0.0.1:{silent_platform.getsockname()[1]}")
    assert harness.fake is not None
    harness.fake.stop()  # only its configuration is used
    assert_asked_once_connected(harness, silent_platform)


def test_bluesky_through_a_proxy_asks_the_gate_once_connected_to_the_proxy(
        silent_platform: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    # The listener is the proxy (named as operators name it); the PDS is never dialled.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{silent_platform.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    harness = pointed_at(network_harness("bluesky"), "http://192.0.2.1")
    assert harness.fake is not None
    harness.fake.stop()
    assert_asked_once_connected(harness, silent_platform)


def assert_asked_once_connected(harness: Harness, platform: socket.socket) -> None:
    accepted: list[socket.socket] = []
    connected_when_asked: list[bool] = []

    def may_start() -> bool:
        with contextlib.suppress(BlockingIOError):  # connected yet?
            accepted.append(platform.accept()[0])
        connected_when_asked.append(bool(accepted))
        return False  # the declaration came while the connection was being made

    with pytest.raises(GateClosed):
        run(harness.publish(gated(may_start), max_retries=0))
    assert connected_when_asked == [True], "the gate must be asked once the connection is open"
    (peer,) = accepted
    with peer:
        peer.settimeout(2.0)
        assert peer.recv(1024) == b"", "bytes of the request left after the gate closed"
