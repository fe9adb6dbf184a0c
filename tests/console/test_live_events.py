"""The event stream tells a page of every change since the page was rendered,
including one made before the page's stream connected."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
import requests

from switchboard.console.live import Pulse
from tests.console.conftest import session
from tests.daemon import DaemonProcess

pytestmark = pytest.mark.integration


def events(client: requests.Session, url: str) -> Iterator[str]:
    """The names of the events a stream sends, as they come."""
    with client.get(url, stream=True, timeout=30) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines(decode_unicode=True):
            if line.startswith("event:"):
                yield line.removeprefix("event:").strip()


def rendered_version(client: requests.Session, daemon: DaemonProcess) -> int:
    found = re.search(r'sse-connect="/api/v1/events\?since=(\d+)"',
                      client.get(daemon.url + "/", timeout=30).text)
    assert found is not None, "the page names no version to connect with"
    return int(found.group(1))


def declare(daemon: DaemonProcess) -> None:
    daemon.ok("POST", "/api/v1/incidents", {"runbook": "rail-disruption", "title": "Points",
                                            "channels": ["outbox"], "reason": "drill"},
              role="ops")


def test_a_change_before_the_page_connects_is_pushed_as_soon_as_it_does(
        daemon: DaemonProcess) -> None:
    mia = session(daemon, "mia")
    since = rendered_version(mia, daemon)
    # Another page's stream, open while the change is made, shows when it is noticed.
    other = events(mia, daemon.url + "/api/v1/events")
    assert next(other) == "hello"
    declare(daemon)
    assert next(other) == "change"
    # Only now does the first page connect: it is told at once, not at the next change.
    late = events(mia, daemon.url + f"/api/v1/events?since={since}")
    assert [next(late), next(late)] == ["hello", "change"]


def test_a_stream_without_a_version_waits_for_the_next_change(daemon: DaemonProcess) -> None:
    mia = session(daemon, "mia")
    stream = events(mia, daemon.url + "/api/v1/events")
    assert next(stream) == "hello"
    declare(daemon)
    assert next(stream) == "change"


@pytest.mark.parametrize("since", ["x", "\u00b2", "-1", "9" * 40])
def test_a_version_that_is_not_one_is_taken_as_none(daemon: DaemonProcess, since: str) -> None:
    stream = events(session(daemon, "mia"), daemon.url + f"/api/v1/events?since={since}")
    assert next(stream) == "hello"


def test_pages_arriving_together_at_the_first_view_start_one_watcher() -> None:
    marks = 0

    async def listing(everything: bool) -> list[Any]:
        nonlocal marks
        marks += 1
        await asyncio.sleep(0)  # the other starts arrive while this one reads
        return []

    async def change_marks() -> tuple[int, int]:
        return (0, 0)

    services = SimpleNamespace(
        clock=lambda: 0.0, incidents=SimpleNamespace(listing=listing),
        gate=SimpleNamespace(channels_under_control=lambda now: []),
        store=SimpleNamespace(change_marks=change_marks))

    async def scenario() -> None:
        pulse = Pulse(cast(Any, services))
        versions = await asyncio.gather(*(pulse.current() for _ in range(5)))
        assert versions == [0] * 5 and marks >= 1
        tasks = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Pulse.watch"]
        assert len(tasks) == 1
        await pulse.stop(cast(Any, None))

    asyncio.run(scenario())
