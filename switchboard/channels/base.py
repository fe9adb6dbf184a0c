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
    """

    def __init__(self, message: str, *, permanent: bool = False, reason: str = "error",
                 maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.reason = reason
        self.maybe_sent = maybe_sent


class GateClosed(ChannelError):
    """The gate closed while the post waited (a rate-limit reset, a backoff) and no
    attempt had reached the platform yet: the post is suppressed, not sent."""

    def __init__(self) -> None:
        super().__init__("an incident took the channel before the send started",
                         permanent=True, reason="gate_closed")


@dataclass(frozen=True)
class Message:
    """One post on its way out, after the gate said yes."""

    post_id: str
    channel: str
    kind: str
    text: str
    link: str | None
    sent_at: datetime
    # Asked again before an attempt that follows a wait: a send must not start
    # after a declaration, even one made while the post waited for a reset.
    may_start: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


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

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
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
