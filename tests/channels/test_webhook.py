"""Webhook specifics: aiohttp against the fake Slack-compatible receiver."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from switchboard.channels.base import ChannelError
from switchboard.channels.webhook import WebhookChannel, honours_idempotency_keys
from switchboard.config import ChannelConfig
from tests.channels.harness import MAX_RETRIES, Harness, message, network_harness, run
from tests.fakes.fake_webhook import FakeWebhook
from tests.fakes.server import Fail, Hold
from tests.unit.test_config_check import GOOD, check


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


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_refused_connection_is_retried_then_failed_never_unknown(idempotent: bool) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    harness = network_harness("webhook")
    assert harness.fake is not None
    harness.fake.stop()
    config = harness.config
    harness.config = ChannelConfig(id=config.id, kind="webhook", timeout=config.timeout,
                                   options={**config.options, "idempotent": idempotent},
                                   secrets={"url": f"http://127.0.0.1:{port}/hook"})
    with pytest.raises(ChannelError) as caught:
        run(harness.publish(message()))
    assert not caught.value.permanent
    assert caught.value.reason == "network"
    assert f"after {MAX_RETRIES + 1} attempts" in caught.value.message
    assert not caught.value.maybe_sent, "the post never reached the receiver: failed, not unknown"


def ignoring_keys() -> Harness:
    """A receiver like Slack, which ignores Idempotency-Key."""
    harness = network_harness("webhook")
    assert harness.fake is not None
    harness.fake.stop()
    hook = FakeWebhook(idempotent=False).start()
    harness.fake = hook
    harness.config = replace(harness.config, secrets={"url": hook.url},
                             options={**harness.config.options, "idempotent": False})
    return harness


@pytest.mark.parametrize("failure", [Fail(502, apply=True), Hold(apply=True)],
                         ids=["502-after-taking-it", "timeout-after-taking-it"])
def test_a_receiver_that_ignores_keys_gets_no_retry_after_a_maybe_delivered_attempt(
        failure: Fail | Hold) -> None:
    harness = ignoring_keys()
    if isinstance(failure, Hold):
        harness.cutting_hangs_short()
    hook = fake(harness)
    try:
        hook.script(failure)
        with pytest.raises(ChannelError) as caught:
            run(harness.publish(message(post_id="41", text="Line 4 closed for the evening")))
        assert caught.value.maybe_sent, "the post is unknown: left for review, not failed"
        assert "not retried" in caught.value.message
        assert len(hook.requests) == 1
        assert hook.texts == ["Line 4 closed for the evening"]
    finally:
        hook.stop()


def test_a_receiver_that_ignores_keys_is_still_retried_after_a_rate_limit_or_a_refusal(
        ) -> None:
    harness = ignoring_keys()
    hook = fake(harness)
    try:
        hook.script(Fail(429))
        run(harness.publish(message(post_id="42", text="Replacement buses from 9pm")))
        assert len(hook.requests) == 2 and hook.texts == ["Replacement buses from 9pm"]
    finally:
        hook.stop()


def test_slack_urls_are_taken_to_ignore_idempotency_keys_unless_configured() -> None:
    slack = "https://hooks.slack.com/services/T0/B0/secret"
    assert not honours_idempotency_keys(slack, None)
    assert honours_idempotency_keys(slack, True)
    assert honours_idempotency_keys("https://chat.example.org/hooks/abc", None)
    assert not honours_idempotency_keys("https://chat.example.org/hooks/abc", False)
    channel = WebhookChannel(ChannelConfig(id="ops", kind="webhook", secrets={"url": slack}))
    assert not channel.idempotent


def test_the_idempotency_key_carries_the_install_id(webhook: Harness) -> None:
    run(webhook.publish(replace(message(post_id="7"), install_id="5f0c2a9e")))
    (request,) = webhook.requests
    assert request.header("Idempotency-Key") == "5f0c2a9e-7"


def test_idempotent_must_be_true_or_false_in_the_config(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  - {id: ops-chat, kind: console, audience: internal}\n",
        "  - {id: ops-chat, kind: console, audience: internal}\n"
        "  - {id: slack, kind: webhook, url_env: SB_HOOK, idempotent: 'no'}\n")
    code, out = check(tmp_path, text, {"SB_CHECK_TOKEN": "t", "SB_HOOK": "https://e.org/h"})
    assert code != 0
    assert "CONFIG:11:50: channels[2].idempotent: must be true or false, not a string" in out
    good = text.replace("idempotent: 'no'", "idempotent: false")
    code, out = check(tmp_path, good, {"SB_CHECK_TOKEN": "t", "SB_HOOK": "https://e.org/h"})
    assert code == 0, out


def test_publishing_before_start_is_a_programming_error(webhook: Harness) -> None:
    channel = webhook.channel()
    with pytest.raises(RuntimeError, match="before start"):
        run(channel.publish(message()))
