"""One harness per channel kind, so a single contract suite runs over all of them.

A harness builds the channel against its platform (a fake server on loopback,
or a file / stdout for the local kinds) and answers what the platform shows.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest

from switchboard.channels import build_channel
from switchboard.channels.base import Channel, Message, Receipt
from switchboard.config import ChannelConfig
from tests.fakes.fake_bluesky import FakeBluesky
from tests.fakes.fake_facebook import FakeFacebook
from tests.fakes.fake_mastodon import FakeMastodon
from tests.fakes.fake_teams import FakeTeams, card_text
from tests.fakes.fake_telegram import FakeTelegram
from tests.fakes.fake_threads import FakeThreads
from tests.fakes.fake_webhook import FakeWebhook
from tests.fakes.fake_x import FakeX
from tests.fakes.server import FakeServer, Request

T = TypeVar("T")

NETWORK_KINDS = ("x", "mastodon", "webhook", "bluesky", "facebook", "threads", "telegram",
                 "teams")
# Platforms that cannot recognise a repeated request: what may have reached them
# is never sent again.
ONE_SHOT_KINDS = ("telegram", "teams")
REPEATABLE_KINDS = tuple(k for k in NETWORK_KINDS if k not in ONE_SHOT_KINDS)
# Kinds that ask the gate at the true start of each request they write, the
# first one included: every network kind.
GATED_PER_REQUEST_KINDS = NETWORK_KINDS
# outbox and console are written alongside this suite; they join it once they exist.
LOCAL_KINDS = tuple(k for k in ("outbox", "console")
                    if importlib.util.find_spec(f"switchboard.channels.{k}") is not None)

# The client timeout of ordinary requests: far above anything a request to a fake
# on loopback takes, even on a loaded machine, so none is ever retried for being slow
# and request counts stay exact.
TIMEOUT = 30.0
# The client timeout of a test whose fake holds a request (`Hold`) until the client
# gives up on it: short to keep such tests quick, yet well above an ordinary request,
# since the retry or read-back that follows runs under it too.
HANG_TIMEOUT = 1.0
RETRY_BASE = 0.02   # first backoff delay
MAX_RETRIES = 3
NO_RESET_WAIT = 0.3  # wait after a 429 without a reset time


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def message(post_id: str = "101", text: str = "Spring offer: 20% off all fares",
            kind: str = "marketing", link: str | None = None) -> Message:
    return Message(post_id=post_id, channel="test", kind=kind, text=text, link=link,
                   sent_at=datetime.now(UTC))


@dataclass
class Harness:
    kind: str
    config: ChannelConfig
    fake: FakeServer | None = None
    capsys: pytest.CaptureFixture[str] | None = None
    _stdout: str = ""

    @property
    def network(self) -> bool:
        return self.fake is not None

    @property
    def gives_ids(self) -> bool:
        """The platform names the post, so the receipt must carry that id."""
        return self.kind in ("x", "mastodon", "outbox", "bluesky", "facebook", "threads",
                             "telegram")

    @property
    def repeats_safely(self) -> bool:
        """A retry of a request that may have reached the platform cannot post twice."""
        return self.kind not in ONE_SHOT_KINDS

    @property
    def announces_resets(self) -> bool:
        """The platform names a reset time to the second (Facebook gives minutes,
        Threads none)."""
        return self.kind not in ("facebook", "threads")

    def cutting_hangs_short(self) -> Self:
        """This harness with the short client timeout, for a test whose fake holds
        a request until the client gives up on it."""
        self.config = replace(self.config, timeout=HANG_TIMEOUT)
        return self

    def channel(self, **options: Any) -> Channel:
        config = self.config
        if options:
            config = ChannelConfig(id=config.id, kind=config.kind, audience=config.audience,
                                   timeout=config.timeout, options={**config.options, **options},
                                   secrets=config.secrets)
        return build_channel(config)

    @asynccontextmanager
    async def opened(self, **options: Any) -> AsyncIterator[Channel]:
        channel = self.channel(**options)
        await channel.start()
        try:
            yield channel
        finally:
            await channel.close()

    async def publish(self, msg: Message, **options: Any) -> Receipt:
        async with self.opened(**options) as channel:
            return await channel.publish(msg)

    @property
    def requests(self) -> list[Request]:
        """The posting calls (the ones scripts apply to), not logins or quota reads."""
        fake = self.fake
        assert fake is not None
        return [r for r in fake.requests if fake.scripted(r.method, r.path)]

    def count(self, text: str) -> int:
        """How many times `text` was published (retracted copies included)."""
        if isinstance(self.fake, FakeX):
            return sum(t.text == text for t in self.fake.tweets)
        if isinstance(self.fake, FakeMastodon):
            return sum(s.text == text for s in self.fake.statuses)
        if isinstance(self.fake, FakeWebhook):
            return sum(m.get("text") == text and m.get("event") == "post"
                       for m in self.fake.messages)
        if isinstance(self.fake, FakeBluesky | FakeFacebook | FakeThreads | FakeTelegram):
            return sum(p.text == text for p in self._platform_posts())
        if isinstance(self.fake, FakeTeams):
            return self.fake.texts.count(text)
        if self.kind == "outbox":
            return sum(r.get("text") == text for r in self._outbox())
        return sum(line.endswith(f": {text}") for line in self._console())

    def _platform_posts(self) -> list[Any]:
        fake = self.fake
        if isinstance(fake, FakeBluesky):
            return list(fake.records)
        if isinstance(fake, FakeTelegram):
            return list(fake.messages)
        assert isinstance(fake, FakeFacebook | FakeThreads)
        return list(fake.posts)

    def retracted(self, post_id: str, receipt: Receipt) -> bool:
        if isinstance(self.fake, FakeX):
            return any(t.id == receipt.remote_id and t.deleted for t in self.fake.tweets)
        if isinstance(self.fake, FakeMastodon):
            return any(s.id == receipt.remote_id and s.deleted for s in self.fake.statuses)
        if isinstance(self.fake, FakeWebhook):
            return any(m.get("event") == "retract" and m.get("post_id") == post_id
                       for m in self.fake.messages)
        if isinstance(self.fake, FakeBluesky):
            return any(r.uri == receipt.remote_id and r.deleted for r in self.fake.records)
        if isinstance(self.fake, FakeTelegram):
            return any(str(m.message_id) == receipt.remote_id and m.deleted
                       for m in self.fake.messages)
        if isinstance(self.fake, FakeFacebook | FakeThreads):
            return any(p.id == receipt.remote_id and p.deleted for p in self.fake.posts)
        if isinstance(self.fake, FakeTeams):
            return any(card_text(c).startswith(f"Withdrawn: the message for post {post_id} ")
                       for c in self.fake.cards)
        if self.kind == "outbox":
            # The outbox writes post ids as integers, like the API.
            return any(str(r.get("retract")) == post_id for r in self._outbox())
        return any(f"retracted post {post_id}" in line for line in self._console())

    def _outbox(self) -> list[dict[str, Any]]:
        path = Path(self.config.options["path"])
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def _console(self) -> list[str]:
        assert self.capsys is not None
        self._stdout += self.capsys.readouterr().out
        return self._stdout.splitlines()


def network_harness(kind: str) -> Harness:
    """A started fake and a channel config pointing at it; stop `harness.fake` after."""
    common: dict[str, Any] = {"max_retries": MAX_RETRIES, "retry_base": RETRY_BASE,
                              "rate_limit_wait": NO_RESET_WAIT}
    if kind == "x":
        x = FakeX().start()
        return Harness(kind, ChannelConfig(
            id="x-test", kind="x", timeout=TIMEOUT,
            options={"api_url": x.url, **common}, secrets=x.credentials), fake=x)
    if kind == "mastodon":
        m = FakeMastodon().start()
        return Harness(kind, ChannelConfig(
            id="mastodon-test", kind="mastodon", timeout=TIMEOUT,
            options={"api_base_url": m.url, **common},
            secrets={"access_token": m.access_token}), fake=m)
    if kind == "webhook":
        w = FakeWebhook().start()
        return Harness(kind, ChannelConfig(
            id="webhook-test", kind="webhook", audience="internal", timeout=TIMEOUT,
            options={"headers": {"X-Team": "ops"}, **common}, secrets={"url": w.url}), fake=w)
    return _new_kind_harness(kind, common)


def _new_kind_harness(kind: str, common: dict[str, Any]) -> Harness:
    if kind == "bluesky":
        b = FakeBluesky().start()
        return Harness(kind, ChannelConfig(
            id="bluesky-test", kind="bluesky", timeout=TIMEOUT,
            options={"service": b.url, "identifier": b.handle, **common},
            secrets={"app_password": b.app_password}), fake=b)
    if kind == "facebook":
        f = FakeFacebook().start()
        return Harness(kind, ChannelConfig(
            id="facebook-test", kind="facebook", timeout=TIMEOUT,
            options={"api_url": f.url, "page_id": f.page_id, **common},
            secrets={"page_token": f.page_token}), fake=f)
    if kind == "threads":
        t = FakeThreads().start()
        return Harness(kind, ChannelConfig(
            id="threads-test", kind="threads", timeout=TIMEOUT,
            options={"api_url": t.url, "user_id": t.user_id, **common},
            secrets={"access_token": t.access_token}), fake=t)
    if kind == "telegram":
        g = FakeTelegram().start()
        return Harness(kind, ChannelConfig(
            id="telegram-test", kind="telegram", timeout=TIMEOUT,
            options={"api_url": g.url, "chat_id": g.chat_id, **common},
            secrets={"bot_token": g.bot_token}), fake=g)
    if kind == "teams":
        m = FakeTeams().start()
        return Harness(kind, ChannelConfig(
            id="teams-test", kind="teams", audience="internal", timeout=TIMEOUT,
            options=common, secrets={"url": m.url}), fake=m)
    raise ValueError(kind)


def local_harness(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Harness:
    if kind == "outbox":
        return Harness(kind, ChannelConfig(id="outbox", kind="outbox",
                                           options={"path": tmp_path / "outbox.jsonl"}))
    if kind == "console":
        return Harness(kind, ChannelConfig(id="console", kind="console"), capsys=capsys)
    raise ValueError(kind)
