"""The daemon's configuration file (design §4.3), validated completely at load.

Loading either returns a `Config` the running code can trust or raises
`InvalidFile` with every problem found, each naming file, line, column and key.
Secrets are resolved here from `*_env` / `*_file` so a missing one is a load
error, not a failure at the first publish.

The parts: `model` (what a loaded config is), `reader` (the file's top level),
`channels` and `feeds` (their sections), `sections` (what they share).
"""

from switchboard.config.model import (
    APPROVAL,
    AUDIENCES,
    CHANNEL_KINDS,
    FEED_KINDS,
    INTERNAL_MAX_LENGTH,
    MIN_LATENESS,
    POLL_FEEDS,
    PUBLIC_MAX_LENGTH,
    PUSH_FEEDS,
    ROLES,
    STORE_BACKENDS,
    AccessToken,
    ChannelConfig,
    Config,
    StoreConfig,
    Team,
    unknown_channel_message,
)
from switchboard.config.reader import check_runbook_references, load, read
from switchboard.feeds.settings import FeedConfig, Matcher, Rule
from switchboard.feeds.severity import SEVERITIES
from switchboard.yamldoc import InvalidFile

__all__ = ["APPROVAL", "AUDIENCES", "CHANNEL_KINDS", "FEED_KINDS", "INTERNAL_MAX_LENGTH",
           "MIN_LATENESS", "POLL_FEEDS", "PUBLIC_MAX_LENGTH", "PUSH_FEEDS", "ROLES",
           "SEVERITIES", "STORE_BACKENDS", "AccessToken", "ChannelConfig", "Config", "FeedConfig",
           "InvalidFile",
           "Matcher", "Rule", "StoreConfig", "Team", "check_runbook_references", "load", "read",
           "unknown_channel_message"]
