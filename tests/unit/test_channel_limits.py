"""Text limits per channel kind and audience: what check validates is what the channel enforces."""

from __future__ import annotations

import pytest

from switchboard.channels import build_channel
from switchboard.config import ChannelConfig
from switchboard.runbooks import channel_infos


@pytest.mark.parametrize(("kind", "audience", "limit"), [
    ("outbox", "public", 280),       # stands in for a short-form social account
    ("outbox", "internal", 10_000),  # an ops log: no public platform's limit
    ("console", "internal", 10_000),
    ("webhook", "internal", 40_000),
])
def test_an_internal_channel_does_not_inherit_a_public_platform_limit(
        kind: str, audience: str, limit: int) -> None:
    options = {"path": "/dev/null"} if kind == "outbox" else {}
    config = ChannelConfig("c", kind, audience=audience, options=options)
    assert channel_infos([config])["c"].max_length == limit
    assert build_channel(config).max_length == limit


def test_a_configured_max_length_wins_over_the_kind_default() -> None:
    config = ChannelConfig("c", "outbox", audience="internal", max_length=500,
                           options={"path": "/dev/null"})
    assert channel_infos([config])["c"].max_length == 500
    assert build_channel(config).max_length == 500
