"""Webhook specifics: aiohttp against the fake Slack-compatible receiver."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from switchboard.channels.base import ChannelError
from switchboard.config import ChannelConfig
from tests.channels.harness import MAX_RETRIES, Harness, message, network_harness, run
from tests.fakes.fake_webhook import FakeWebhook
from tests.fakes.server import Fail


def fake(h: Harness) -> FakeWebhook:
    assert isinstance(h.fake, FakeWebhook)
    return h.fake


def test_the_body_is_slack_compatible_and_names_the_post(webhook: Harness) -> None:
    run(webhook.publish(message(post_id="7", kind="operational", text="Delays on line 2",
                                link="https://status.example.org")))
    (request,) = webhook.requests
    assert (request.header("Content-Type") or "").startswith("application/json")
    assert request.header("Idempotency-Key") == "7"
    assert request.header("X-Team") == "ops", "configured headers are sent"
    body = request.json()
    assert body["text"] == "Delays on line 2 https://status.example.org"
    assert body["post_id"] == "7"
    assert body["kind"] == "operational"
    assert body["event"] == "post"
    assert body["channel"] == "test"


def test_retract_posts_a_withdrawal_notice(webhook: Harness) -> None:
    async def scenario() -> None:
        async with webhook.opened() as channel:
            await channel.publish(message(post_id="9"))
            await channel.retract("9", None, datetime(2026, 1, 2, 3, 4, tzinfo=UTC))

    run(scenario())
    notice = fake(webhook).messages[-1]
    assert notice["event"] == "retract" and notice["post_id"] == "9"
    assert "Withdrawn" in notice["text"]


def test_a_missing_hook_is_a_permanent_failure_with_the_receivers_words(
        webhook: Harness) -> None:
    fake(webhook).script(Fail(404))
    with pytest.raises(ChannelError) as caught:
        run(webhook.publish(message()))
    assert caught.value.permanent
    assert "404" in caught.value.message and "no_service" in caught.value.message


def test_an_unreachable_receiver_is_a_transient_failure() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    harness = network_harness("webhook")
    assert harness.fake is not None
    harness.fake.stop()
    config = harness.config
    harness.config = ChannelConfig(id=config.id, kind="webhook", timeout=config.timeout,
                                   options=config.options,
                                   secrets={"url": f"http://127.0.0.1:{port}/hook"})
    with pytest.raises(ChannelError) as caught:
        run(harness.publish(message()))
    assert not caught.value.permanent
    assert caught.value.reason == "network"
    assert f"after {MAX_RETRIES + 1} attempts" in caught.value.message


def test_publishing_before_start_is_a_programming_error(webhook: Harness) -> None:
    channel = webhook.channel()
    with pytest.raises(RuntimeError, match="before start"):
        run(channel.publish(message()))
