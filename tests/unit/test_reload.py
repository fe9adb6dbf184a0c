"""SIGHUP on a daemon built in process: a reload that cannot be prepared changes
nothing, a poll feed whose settings stayed keeps polling as it was, and the
config file is read off the event loop."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from switchboard import channels as channels_module
from switchboard import reload as reload_module
from switchboard import watch as watch_module
from switchboard.app import Daemon
from switchboard.channels import Channel
from switchboard.config import FeedConfig
from switchboard.feeds import FeedParser
from switchboard.settings import Settings, load_settings
from tests.daemon import DaemonProcess, base_config, free_port
from tests.feeds.feedserver import body, serving

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TOKEN_ENV = ("SB_TEST_ADMIN", "SB_TEST_OPS", "SB_TEST_MARKETING", "SB_TEST_VIEWER")


def status_page() -> bytes:
    """A status page with one open incident, of an impact no rule declares on."""
    document = json.loads((FIXTURES / "statuspage-incidents.json").read_text())
    incident = copy.deepcopy(document["incidents"][0])
    incident.update(status="investigating", impact="minor", resolved_at=None)
    return json.dumps({"page": document["page"], "incidents": [incident]}).encode()


def poll_feed(feed_id: str, url: str, every: str = "1h") -> dict[str, Any]:
    # Polled once at start, then not for an hour: any later request is a re-fetch.
    return {"id": feed_id, "kind": "statuspage", "url": url, "every": every, "timeout": 2,
            "rules": [{"match": {"impact": ["critical"]}, "runbook": "service-outage"}]}


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TOKEN_ENV:
        monkeypatch.setenv(name, f"{name.lower()}-token-0123456789")


def write_config(tmp: Path, feeds: list[dict[str, Any]]) -> DaemonProcess:
    """The config and runbooks on disk (the process itself is never started)."""
    return DaemonProcess(tmp, base_config(tmp, free_port(), feeds=feeds))


@asynccontextmanager
async def running(setup: DaemonProcess) -> AsyncIterator[Daemon]:
    daemon = Daemon(load_settings(setup.config_path))
    try:
        await daemon.build()
        yield daemon
    finally:
        await daemon.teardown()


async def first_poll_done(daemon: Daemon, *feed_ids: str) -> None:
    for _ in range(500):
        if all(daemon.feeds.history[f].last_success is not None for f in feed_ids):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"feeds {feed_ids} were never polled")


def edited(setup: DaemonProcess, change: Callable[[dict[str, Any]], None]) -> None:
    config = copy.deepcopy(setup.config)
    change(config)
    setup.write_config(config)


def with_extra_channel(config: dict[str, Any], path: Path) -> None:
    config["channels"].append({"id": "extra", "kind": "outbox", "path": str(path)})


class Live:
    """What a refused reload must leave exactly as it was, object for object."""

    def __init__(self, daemon: Daemon) -> None:
        self.settings: Settings = daemon.settings
        self.tokens = daemon.tokens
        self.max_lateness = daemon.publisher.max_lateness
        self.channels: dict[str, Channel] = daemon.publisher.channels()
        self.feeds: dict[str, FeedConfig] = dict(daemon.feeds.feeds)
        self.pollers = dict(daemon.feeds.pollers)

    def unchanged_in(self, daemon: Daemon) -> bool:
        return (daemon.settings is self.settings and daemon.tokens is self.tokens
                and daemon.publisher.max_lateness == self.max_lateness
                and daemon.publisher.channels() == self.channels
                and daemon.feeds.feeds == self.feeds and daemon.feeds.pollers == self.pollers
                and [c["id"] for c in daemon.channel_list()] == list(self.channels))


def still_polling(daemon: Daemon) -> bool:
    return all(not task.done() for task in daemon.feeds._tasks.values())


def reload_metric(daemon: Daemon) -> float | None:
    return daemon.metrics.registry.get_sample_value("switchboard_config_last_reload_successful")


def record_closed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the channels closed from now on."""
    closed: list[str] = []
    build = channels_module.build_channel

    def recording(config: Any, clock: Any) -> Channel:
        channel = build(config, clock)
        close = channel.close

        async def recorded_close() -> None:
            closed.append(channel.id)
            await close()

        channel.close = recorded_close  # type: ignore[method-assign]
        return channel

    monkeypatch.setattr(channels_module, "build_channel", recording)
    return closed


def test_a_reload_whose_feed_cannot_be_built_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_parser_for = watch_module.parser_for

    def parser_for(config: FeedConfig) -> FeedParser:
        if config.id == "broken":
            raise ValueError("feed 'broken': its field mapping cannot be compiled")
        return real_parser_for(config)

    monkeypatch.setattr(watch_module, "parser_for", parser_for)

    async def run() -> None:
        async with serving(body(status_page())) as steady, \
                serving(body(status_page())) as other:
            setup = write_config(tmp_path, [poll_feed("steady", steady.url)])
            async with running(setup) as daemon:
                await first_poll_done(daemon, "steady")
                before = Live(daemon)

                def change(config: dict[str, Any]) -> None:
                    with_extra_channel(config, tmp_path / "extra.jsonl")
                    config["max_lateness"] = "20m"
                    config["feeds"].append(poll_feed("broken", other.url))

                edited(setup, change)
                assert await daemon.reload() is False
                assert before.unchanged_in(daemon) and still_polling(daemon)
                assert reload_metric(daemon) == 0.0
                assert daemon.last_reload is not None and daemon.last_reload["ok"] is False
                assert "cannot be compiled" in daemon.last_reload["problems"][0]
                await asyncio.sleep(0.05)
                assert (len(steady.requests), len(other.requests)) == (1, 0)

    asyncio.run(run())


def test_a_reload_whose_channel_cannot_start_changes_nothing_and_closes_what_it_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = record_closed(monkeypatch)
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")

    async def run() -> None:
        async with serving(body(status_page())) as steady, \
                serving(body(status_page())) as fresh:
            setup = write_config(tmp_path, [poll_feed("steady", steady.url)])
            async with running(setup) as daemon:
                await first_poll_done(daemon, "steady")
                before = Live(daemon)

                def change(config: dict[str, Any]) -> None:
                    with_extra_channel(config, tmp_path / "extra.jsonl")
                    config["channels"].append({"id": "unwritable", "kind": "outbox",
                                               "path": str(not_a_directory / "out.jsonl")})
                    config["feeds"].append(poll_feed("fresh", fresh.url))

                edited(setup, change)
                assert await daemon.reload() is False
                assert before.unchanged_in(daemon) and still_polling(daemon)
                assert closed == ["extra"]  # started for the reload, closed when it failed
                assert reload_metric(daemon) == 0.0
                assert daemon.last_reload is not None
                assert "cannot open outbox" in daemon.last_reload["problems"][0]
                await asyncio.sleep(0.05)
                assert (len(steady.requests), len(fresh.requests)) == (1, 0)

    asyncio.run(run())


def test_a_reload_with_a_broken_runbook_changes_nothing_and_names_the_file(
        tmp_path: Path) -> None:
    async def run() -> None:
        async with serving(body(status_page())) as steady:
            setup = write_config(tmp_path, [poll_feed("steady", steady.url)])
            async with running(setup) as daemon:
                await first_poll_done(daemon, "steady")
                before = Live(daemon)
                edited(setup, lambda config: with_extra_channel(config,
                                                                tmp_path / "extra.jsonl"))
                runbook = tmp_path / "runbooks" / "service-outage.yaml"
                runbook.write_text(runbook.read_text().replace("steps:", "stepz:", 1))
                assert await daemon.reload() is False
                assert before.unchanged_in(daemon) and still_polling(daemon)
                assert daemon.last_reload is not None
                assert any(str(runbook) in p for p in daemon.last_reload["problems"])
                assert reload_metric(daemon) == 0.0

    asyncio.run(run())


def test_an_unchanged_poll_feed_keeps_its_snapshot_across_a_reload_of_other_parts(
        tmp_path: Path) -> None:
    async def run() -> None:
        async with serving(body(status_page())) as steady, \
                serving(body(status_page())) as moving, \
                serving(body(status_page())) as leaving:
            setup = write_config(tmp_path, [poll_feed("steady", steady.url),
                                            poll_feed("moving", moving.url),
                                            poll_feed("leaving", leaving.url)])
            async with running(setup) as daemon:
                await first_poll_done(daemon, "steady", "moving", "leaving")
                steady_poller = daemon.feeds.pollers["steady"]
                snapshot = steady_poller._snapshot
                moved, left = daemon.feeds.pollers["moving"], daemon.feeds._tasks["leaving"]

                def change(config: dict[str, Any]) -> None:
                    with_extra_channel(config, tmp_path / "extra.jsonl")
                    config["max_lateness"] = "20m"
                    config["feeds"] = [poll_feed("steady", steady.url),
                                       poll_feed("moving", moving.url, every="2h")]

                edited(setup, change)
                assert await daemon.reload() is True
                await moving.wait_for_requests(2)  # changed: a new poller, a new first poll
                await asyncio.sleep(0.05)
                assert daemon.feeds.pollers["steady"] is steady_poller
                assert steady_poller._snapshot is snapshot
                assert len(steady.requests) == 1  # not fetched again
                assert daemon.feeds.history["steady"].signals["firing"] == 1  # not re-emitted
                assert daemon.feeds.pollers["moving"] is not moved
                assert left.done() and sorted(daemon.feeds.pollers) == ["moving", "steady"]
                assert len(leaving.requests) == 1
                assert "extra" in daemon.publisher.workers
                assert daemon.publisher.max_lateness == 1200.0
                assert reload_metric(daemon) == 1.0

    asyncio.run(run())


def test_the_config_is_read_off_the_loop_while_the_loop_keeps_serving(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readers: list[int] = []
    loop_answered = threading.Event()

    def load_while_the_loop_runs(path: Path, create_tokens: bool = True) -> Settings:
        readers.append(threading.get_ident())
        # Only a loop that is not busy reading the file can fire the timer set below.
        assert loop_answered.wait(5), "the loop stood still while the config was read"
        return load_settings(path, create_tokens)

    monkeypatch.setattr(reload_module, "load_settings", load_while_the_loop_runs)

    async def run() -> int:
        setup = write_config(tmp_path, [])
        async with running(setup) as daemon:
            asyncio.get_running_loop().call_later(0.01, loop_answered.set)
            assert await daemon.reload() is True
            return threading.get_ident()

    loop_thread = asyncio.run(run())
    assert readers and loop_thread not in readers
