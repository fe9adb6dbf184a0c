"""What every channel is: an outlet that publishes a post and can delete it.

Channel errors say whether retrying can help (`permanent`), so the dispatcher
never retries bad credentials and never gives up on a passing 503.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from switchboard.clock import Clock, system_clock, to_datetime
from switchboard.textlength import length_rule

if TYPE_CHECKING:
    from switchboard.config import ChannelConfig


class ChannelError(Exception):
    """A publish or delete that did not happen.

    `permanent`: retrying cannot help (bad credentials, duplicate, too long).
    `reason`: a short metric label (`auth`, `rejected`, `duplicate`, `rate_limited`,
    `server_error`, `timeout`, `network`).
    `maybe_sent`: an attempt failed in a way that may have reached the platform
    (a lost answer, a gateway error): the post is `unknown`, not `failed`, so it
    is reviewed instead of being released and sent a second time.
    `not_sent`: this attempt certainly never reached the platform (connection
    refused, DNS or TLS failure before the request was written): retrying it
    cannot publish twice, and giving up leaves the post `failed`, not `unknown`.
    """

    def __init__(self, message: str, *, permanent: bool = False, reason: str = "error",
                 maybe_sent: bool = False, not_sent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.reason = reason
        self.maybe_sent = maybe_sent
        self.not_sent = not_sent


class GateClosed(ChannelError):
    """The gate closed while the post waited (a rate-limit reset, a backoff) and no
    attempt had reached the platform yet: the post is suppressed, not sent."""

    def __init__(self) -> None:
        super().__init__("an incident took the channel before the send started",
                         permanent=True, reason="gate_closed")


class Start:
    """The gate, asked at the true start of each attempt; it remembers when it said yes.

    The dispatcher passes one as `Message.may_start`. A channel calls it at the
    moment the bytes of an attempt leave (see `remote.Attempt`), never before a
    wait for a thread, a connection or a DNS lookup; `at` is then the moment the
    post was sent. Called on the event loop only, like the gate itself.
    """

    def __init__(self, allowed: Callable[[float], bool], clock: Callable[[], float]) -> None:
        self._allowed, self._clock = allowed, clock
        self.at: float | None = None  # Unix time of the last start the gate allowed

    def __call__(self) -> bool:
        now = self._clock()
        if not self._allowed(now):
            return False
        self.at = now
        return True


@dataclass(frozen=True)
class Message:
    """One post on its way out: the gate said yes once, and is asked again at the start."""

    post_id: str
    channel: str
    kind: str
    text: str
    link: str | None
    sent_at: datetime  # when the post was handed to the channel; see `begin`
    # Asked at the true start of every attempt: a send must not start after a
    # declaration, even one made while the post waited for a thread or a reset.
    may_start: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    # Random per store: keys sent to platforms must differ between two stores
    # (a restore, staging) that both have a post with this id.
    install_id: str = ""
    # When the post was created: a key that must stay the same for every send of
    # the post (a released `unknown` post sent again) is made from it, not `sent_at`.
    created_at: datetime | None = None

    @property
    def platform_key(self) -> str:
        """The idempotency key sent to platforms: unique across stores."""
        return f"{self.install_id}-{self.post_id}" if self.install_id else self.post_id

    def begin(self, clock: Clock) -> datetime:
        """For outlets that start at once (a file, stdout): ask the gate now.

        Returns the moment of the send: when the gate said yes, or `clock()` for a
        gate that does not say; raises `GateClosed` when the gate said no.
        """
        check = self.may_start
        if check is None:
            return self.sent_at
        if not check():
            raise GateClosed()
        at = check.at if isinstance(check, Start) else None
        return to_datetime(clock() if at is None else at)


@dataclass(frozen=True)
class Receipt:
    """What the platform said: its id for the post, used later to retract it."""

    remote_id: str | None
    # True when the platform reported the post already existed (a retry after
    # a timeout whose first attempt got through): published, not published twice.
    already_existed: bool = False


@dataclass
class LastError:
    at: datetime
    message: str
    permanent: bool


class Channel(ABC):
    kind: ClassVar[str]
    # Posts marked `sending` together before their sends. A platform call can
    # hang, and a crash then leaves every claimed post `unknown`, so network
    # channels claim one at a time; local outlets that cannot hang claim a few.
    claim_size: ClassVar[int] = 1

    def __init__(self, config: ChannelConfig, *, clock: Clock = system_clock) -> None:
        self.config = config
        # The only time a channel reads (rate-limit resets, pacing, error times),
        # so the daemon's clock drives it and a test can move it.
        self.clock = clock
        self.id = config.id
        self.audience = config.audience
        self.max_length = config.text_limit
        self.last_error: LastError | None = None

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open files or sessions; called once before the first publish."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what `start` opened; called once at shutdown."""

    @abstractmethod
    async def publish(self, message: Message) -> Receipt:
        """Publish now; raise ChannelError when the platform refused or failed."""

    @abstractmethod
    async def retract(self, post_id: str, remote_id: str | None, at: datetime) -> None:
        """Delete a published post; raise ChannelError when that failed."""

    @classmethod
    def length(cls, text: str) -> int:
        """The length of `text` as the platform counts it against `max_length`."""
        return length_rule(cls.kind)(text)

    def describe(self) -> dict[str, object]:
        err = self.last_error
        return {
            "id": self.id,
            "kind": self.kind,
            "audience": self.audience,
            "max_length": self.max_length,
            "last_error": None if err is None else {
                "at": err.at.isoformat(), "message": err.message, "permanent": err.permanent},
        }


def with_link(text: str, link: str | None) -> str:
    """The text as published: the link appended unless the text already carries it."""
    if link and link not in text:
        return f"{text} {link}"
    return text
