"""Channels read the time only from the clock they are built with.

Each test builds its channel on a clock set years away from the wall clock
(and standing still unless the test moves it), so a wall-clock read anywhere
in a channel shows up as a wrong date, a wait that should not be, or one
that never ends.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from switchboard.app import start_channels
from switchboard.channels import build_channel
from switchboard.channels.base import Channel, ChannelError, Message, Start
from switchboard.channels.bluesky import record_key
from switchboard.clock import rfc3339, to_datetime
from switchboard.config import ChannelConfig
from tests.channels.harness import Harness
from tests.fakes.fake_bluesky import FakeBluesky, Limits
from tests.fakes.fake_facebook import FakeFacebook
from tests.fakes.fake_threads import FakeThreads
from tests.fakes.server import Fail, Normal, Reply

CHANNELS_SOURCE = Path(__file__).resolve().parents[2] / "switchboard" / "channels"
# 2031-03-04T05:06:07Z: years from any wall clock these tests run on.
FAKE_NOW = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()


class FakeClock:
    """Unix seconds that move only when a test moves them."""

    def __init__(self, now: float = FAKE_NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def stamp(ts: float) -> str:
    return to_datetime(ts).isoformat(timespec="seconds")


def message(text: str = "Spring offer: 20% off all fares", post_id: str = "101",
            sent_at: float = FAKE_NOW, **fields: Any) -> Message:
    return Message(post_id=post_id, channel="test", kind="marketing", text=text, link=None,
                   sent_at=to_datetime(sent_at), **fields)


def channel_on(harness: Harness, clock: FakeClock, **options: Any) -> Channel:
    config = harness.config
    config = ChannelConfig(id=config.id, kind=config.kind, audience=config.audience,
                           timeout=config.timeout, options={**config.options, **options},
                           secrets=config.secrets)
    return build_channel(config, clock)


async def publish_all(channel: Channel, *messages: Message) -> list[object]:
    """Each message published in turn on one started channel: a receipt or the error."""
    outcomes: list[object] = []
    await channel.start()
    try:
        for msg in messages:
            try:
                outcomes.append(await channel.publish(msg))
            except ChannelError as exc:
                outcomes.append(exc)
    finally:
        await channel.close()
    return outcomes


TOO_MANY_FOR_1000_S = {
    "webhook": Reply(429, "rate_limited", {"Retry-After": "1000"}),
    "teams": Reply(429, {"error": {"code": "WorkflowTriggerIsThrottled",
                                   "message": "The workflow trigger is throttled."}},
                   {"Retry-After": "1000"}),
    "telegram": Reply(429, {"ok": False, "error_code": 429,
                            "description": "Too Many Requests: retry after 1000",
                            "parameters": {"retry_after": 1000}}),
}


@pytest.mark.parametrize("kind", sorted(TOO_MANY_FOR_1000_S))
def test_a_429_that_names_its_wait_in_seconds_counts_it_from_the_channels_clock(
        kind: str, request: pytest.FixtureRequest) -> None:
    harness: Harness = request.getfixturevalue(kind)
    assert harness.fake is not None
    harness.fake.script(TOO_MANY_FOR_1000_S[kind])
    [outcome] = asyncio.run(publish_all(channel_on(harness, FakeClock()), message()))
    # 1000 s is over the 900 s the channel waits at most: it says until when.
    assert isinstance(outcome, ChannelError)
    assert f"rate limited until {stamp(FAKE_NOW + 1000)}" in outcome.message
    assert len(harness.requests) == 1


def test_a_reset_the_channels_clock_has_already_passed_is_not_waited_for(
        webhook: Harness) -> None:
    assert webhook.fake is not None
    passed = format_datetime(to_datetime(FAKE_NOW - 60), usegmt=True)
    webhook.fake.script(Reply(429, "rate_limited", {"Retry-After": passed}), Normal())
    [outcome] = asyncio.run(publish_all(channel_on(webhook, FakeClock()), message()))
    # By the wall clock that date is years ahead: the send would fail at once.
    assert not isinstance(outcome, ChannelError), outcome
    assert webhook.count("Spring offer: 20% off all fares") == 1


def test_the_last_error_is_dated_by_the_channels_clock(remote: Harness) -> None:
    assert remote.fake is not None
    remote.fake.script(*[Fail(400)] * 5)
    channel = channel_on(remote, FakeClock())
    [outcome] = asyncio.run(publish_all(channel, message()))
    assert isinstance(outcome, ChannelError)
    assert channel.last_error is not None
    assert channel.last_error.at == to_datetime(FAKE_NOW)
    described = channel.describe()["last_error"]
    assert isinstance(described, dict)
    assert described["at"] == to_datetime(FAKE_NOW).isoformat()


def test_facebook_spaces_its_calls_by_the_channels_clock_and_moving_it_frees_the_page(
        facebook: Harness) -> None:
    fake = facebook.fake
    assert isinstance(fake, FakeFacebook)
    fake.usage = 100  # at the allowance: the next call waits rate_limit_wait
    clock = FakeClock()
    channel = channel_on(facebook, clock, rate_limit_wait=1000)

    async def story() -> list[object]:
        await channel.start()
        try:
            outcomes: list[object] = [await channel.publish(message("First"))]
            try:
                await channel.publish(message("Second"))
            except ChannelError as exc:
                outcomes.append(exc)
            clock.now += 1000  # the pause is over by the channel's clock
            outcomes.append(await channel.publish(message("Third")))
            return outcomes
        finally:
            await channel.close()

    _, held, _ = asyncio.run(story())
    assert isinstance(held, ChannelError)
    assert f"rate limited until {stamp(FAKE_NOW + 1000)}" in held.message
    assert fake.texts == ["First", "Third"]


def test_threads_holds_a_used_up_allowance_for_an_hour_of_the_channels_clock(
        threads: Harness) -> None:
    fake = threads.fake
    assert isinstance(fake, FakeThreads)
    fake.quota_usage = fake.quota_total
    [outcome] = asyncio.run(publish_all(channel_on(threads, FakeClock()), message()))
    assert isinstance(outcome, ChannelError)
    assert f"rate limited until {stamp(FAKE_NOW + 3600)}" in outcome.message
    assert fake.posts == []


def test_bluesky_a_used_up_window_holds_posts_until_its_reset_by_the_channels_clock(
        bluesky: Harness) -> None:
    fake = bluesky.fake
    assert isinstance(fake, FakeBluesky)
    # One request left for the login, one for the first post; then none until the reset.
    fake.window = Limits(limit=3000, remaining=2, reset_at=FAKE_NOW + 600)
    clock = FakeClock()
    channel = channel_on(bluesky, clock, rate_limit_max_wait=60)

    async def story() -> list[object]:
        await channel.start()
        try:
            outcomes: list[object] = [await channel.publish(message("First", "1"))]
            try:
                await channel.publish(message("Second", "2"))
            except ChannelError as exc:
                outcomes.append(exc)
            clock.now = FAKE_NOW + 600  # the window has reset by the channel's clock
            fake.window = Limits(limit=3000, remaining=3000, reset_at=FAKE_NOW + 900)
            outcomes.append(await channel.publish(message("Third", "3")))
            return outcomes
        finally:
            await channel.close()

    _, held, _ = asyncio.run(story())
    assert isinstance(held, ChannelError)
    assert f"rate limited until {stamp(FAKE_NOW + 600)}" in held.message
    assert fake.texts == ["First", "Third"]


def test_a_bluesky_record_is_dated_when_the_post_was_handed_over_not_by_any_clock(
        bluesky: Harness) -> None:
    fake = bluesky.fake
    assert isinstance(fake, FakeBluesky)
    handed = datetime(2029, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    msg = message(sent_at=handed.timestamp(), install_id="inst")
    asyncio.run(publish_all(channel_on(bluesky, FakeClock()), msg))
    [record] = fake.records
    assert record.value["createdAt"] == "2029-05-06T07:08:09.123Z"
    assert record.rkey == record_key("inst", "101", msg.sent_at)


def outbox_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_daemons_clock_reaches_every_channel_it_starts(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "outbox.jsonl"
    configs = [ChannelConfig("outbox", "outbox", options={"path": path}),
               ChannelConfig("ops", "console")]

    async def send() -> dict[str, Channel]:
        channels = await start_channels(configs, clock)
        # A gate that allows without saying when: the send is dated by the clock.
        await channels["outbox"].publish(message(sent_at=0, may_start=lambda: True))
        for channel in channels.values():
            await channel.close()
        return channels

    channels = asyncio.run(send())
    assert all(channel.clock is clock for channel in channels.values())
    assert [line["sent_at"] for line in outbox_lines(path)] == [rfc3339(FAKE_NOW)]


def test_a_local_outlet_dates_a_send_by_the_moment_the_gate_said_yes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    path = tmp_path / "outbox.jsonl"
    outbox = build_channel(ChannelConfig("outbox", "outbox", options={"path": path}), clock)
    console = build_channel(ChannelConfig("ops", "console"), clock)
    gate_time = FakeClock(FAKE_NOW + 42)

    async def send() -> None:
        await outbox.start()
        await outbox.publish(message(sent_at=0, may_start=Start(lambda _: True, gate_time)))
        await console.publish(message(sent_at=0, may_start=lambda: True))
        await outbox.close()

    asyncio.run(send())
    assert [line["sent_at"] for line in outbox_lines(path)] == [rfc3339(FAKE_NOW + 42)]
    assert f"[ops] {stamp(FAKE_NOW)} marketing:" in capsys.readouterr().out


WALL_CLOCK_READS = re.compile(
    r"\btime\.time\(|\bdatetime\.(now|utcnow|today)\(|\bdate\.today\(|\bfrom time import")


def test_no_channel_reads_the_wall_clock() -> None:
    found = [f"{path.name}:{n}: {line.strip()}"
             for path in sorted(CHANNELS_SOURCE.glob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if WALL_CLOCK_READS.search(line)]
    assert found == [], "channels must read the time from self.clock:\n" + "\n".join(found)
