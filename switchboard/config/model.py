"""What a loaded configuration is: the settings the running code trusts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from switchboard.feeds.settings import FeedConfig

ROLES = ("viewer", "marketing", "ops", "admin")
AUDIENCES = ("public", "internal")


CHANNEL_KINDS = ("outbox", "console", "webhook", "x", "mastodon", "bluesky", "facebook", "threads",
                 "telegram", "teams")
FEED_KINDS = ("alertmanager", "pagerduty", "json", "cap", "atom", "rss", "statuspage", "gtfs-rt",
              "siri-sx")


PUSH_FEEDS = ("alertmanager", "pagerduty", "json")
POLL_FEEDS = ("cap", "atom", "rss", "statuspage", "gtfs-rt", "siri-sx")


# A post later than max_lateness is recorded `missed` instead of sent: under a
# second, every post would be (the dispatcher's own wake-up takes milliseconds).
MIN_LATENESS = timedelta(seconds=1)
APPROVAL = ("required", "none")


@dataclass(frozen=True)
class AccessToken:
    name: str
    role: str
    sha256: str  # tokens are kept only as hashes, compared in constant time


# The longest text each kind takes when the config sets no max_length: a
# platform's own limit for social accounts (the outbox stands in for a
# short-form one). Internal outlets mirror no platform: an ops chat or log
# channel gets a chat-sized limit, never a public account's 280.
# Bluesky counts graphemes, Telegram UTF-16 units (after entity parsing); a
# Facebook Page post takes 63,206 characters; a Teams card stays well inside
# Teams' ~28 KB message size.
_PLATFORM_MAX_LENGTH = {"x": 280, "mastodon": 500, "bluesky": 300, "threads": 500,
                        "facebook": 63_206, "telegram": 4096, "teams": 20_000}
PUBLIC_MAX_LENGTH = {"outbox": 280, "console": 10_000, "webhook": 40_000,
                     **_PLATFORM_MAX_LENGTH}


INTERNAL_MAX_LENGTH = {"outbox": 10_000, "console": 10_000, "webhook": 40_000,
                       **_PLATFORM_MAX_LENGTH}


@dataclass(frozen=True)
class ChannelConfig:
    id: str
    kind: str
    audience: str = "public"
    max_length: int | None = None
    timeout: float = 10.0
    options: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    approval: bool = False  # marketing posts wait for an approver (`approval: required`)

    @property
    def text_limit(self) -> int:
        """The longest text this channel takes: its max_length, else its kind's."""
        if self.max_length is not None:
            return self.max_length
        table = INTERNAL_MAX_LENGTH if self.audience == "internal" else PUBLIC_MAX_LENGTH
        return table[self.kind]


@dataclass(frozen=True)
class Team:
    """A team owns channels; its members' marketing rights stop at them."""

    id: str
    channels: tuple[str, ...]
    approval: bool = False


STORE_BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class StoreConfig:
    """Where the state lives: SQLite in state_dir (the default: `make run` needs no
    database) or a PostgreSQL database shared by a leader and its standbys."""

    backend: str = "sqlite"
    # The libpq connection string, read from dsn_env or dsn_file: it may hold a
    # password, so it is never shown.
    dsn: str | None = field(default=None, repr=False)

    @property
    def shared(self) -> bool:
        return self.backend == "postgresql"


@dataclass(frozen=True)
class Config:
    path: Path
    listen_host: str
    listen_port: int
    state_dir: Path
    timezone: ZoneInfo
    runbooks_dir: Path
    max_lateness: timedelta
    access: tuple[AccessToken, ...]
    channels: tuple[ChannelConfig, ...]
    feeds: tuple[FeedConfig, ...]
    metrics_token_sha256: str | None = None
    max_body_bytes: int = 1024 * 1024
    teams: tuple[Team, ...] = ()
    admin_password_file: Path | None = None
    store: StoreConfig = StoreConfig()

    def team_of(self, channel_id: str) -> Team | None:
        return next((t for t in self.teams if channel_id in t.channels), None)

    def needs_approval(self, channel_id: str) -> bool:
        """Marketing posts on this channel wait for an approver (its team's or its own
        `approval: required`)."""
        team = self.team_of(channel_id)
        channel = self.channel(channel_id)
        return bool((team and team.approval) or (channel and channel.approval))

    def channel(self, channel_id: str) -> ChannelConfig | None:
        return next((c for c in self.channels if c.id == channel_id), None)

    def feed(self, feed_id: str) -> FeedConfig | None:
        return next((f for f in self.feeds if f.id == feed_id), None)

    @property
    def database(self) -> Path:
        return self.state_dir / "switchboard.db"


def unknown_channel_message(cid: str, known: set[str]) -> str:
    return f"no channel named {cid!r} (channels: {', '.join(sorted(known)) or 'none'})"
