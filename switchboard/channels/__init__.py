"""Channel kinds by name; each kind is one small module over `base.Channel`."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable

from switchboard.channels.base import Channel, ChannelError, Message, Receipt
from switchboard.clock import Clock, system_clock
from switchboard.config import ChannelConfig

# kind -> "module:Class"; imported lazily so a daemon without X channels never
# imports tweepy (nor one without Bluesky channels the atproto SDK).
KINDS = {
    "outbox": "switchboard.channels.outbox:OutboxChannel",
    "console": "switchboard.channels.console:ConsoleChannel",
    "webhook": "switchboard.channels.webhook:WebhookChannel",
    "x": "switchboard.channels.x:XChannel",
    "mastodon": "switchboard.channels.mastodon:MastodonChannel",
    "bluesky": "switchboard.channels.bluesky:BlueskyChannel",
    "facebook": "switchboard.channels.facebook:FacebookChannel",
    "threads": "switchboard.channels.threads:ThreadsChannel",
    "telegram": "switchboard.channels.telegram:TelegramChannel",
    "teams": "switchboard.channels.teams:TeamsChannel",
}


def channel_class(kind: str) -> type[Channel]:
    module, _, name = KINDS[kind].partition(":")
    cls: type[Channel] = getattr(importlib.import_module(module), name)
    return cls


def build_channel(config: ChannelConfig, clock: Clock = system_clock) -> Channel:
    """The channel for `config`, reading the time only from `clock`."""
    return channel_class(config.kind)(config, clock=clock)


async def start_channels(configs: Iterable[ChannelConfig],
                         clock: Clock = system_clock) -> dict[str, Channel]:
    """Build and start each channel; if one cannot start, those started are closed."""
    channels: dict[str, Channel] = {}
    try:
        for channel_config in configs:
            channel = build_channel(channel_config, clock)
            await channel.start()
            channels[channel.id] = channel
    except BaseException:
        await close_channels(channels)
        raise
    return channels


async def close_channels(channels: dict[str, Channel]) -> None:
    for channel in channels.values():
        with contextlib.suppress(Exception):
            await channel.close()


__all__ = ["Channel", "ChannelError", "Message", "Receipt", "build_channel", "channel_class",
           "close_channels", "start_channels"]
