"""The one shape every feed kind's parser has (see the package docstring)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from switchboard.feeds.signal import FeedError, Signal

if TYPE_CHECKING:
    from switchboard.feeds.settings import FeedConfig


class FeedParser(ABC):
    """Turns one delivery or poll body of a feed into signals.

    `parse` raises only `FeedError`; for poll kinds it returns the feed's
    current set (firing and resolved items), which the poller diffs.
    """

    kind: ClassVar[str]
    push: ClassVar[bool] = False
    # Sent as the poll's Accept header; some servers pick the format by it.
    accept: ClassVar[str] = "*/*"

    def __init__(self, config: FeedConfig) -> None:
        self.config = config

    def authenticate(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise `FeedError("unauthorized", ..., 401)` unless the delivery is genuine.

        Poll kinds take no deliveries, so a POST routed to one is refused
        rather than accepted unchecked.
        """
        raise FeedError("unauthorized", f"feed {self.config.id!r} ({self.kind}) is polled "
                                        "and accepts no deliveries", 401)

    @abstractmethod
    def parse(self, body: bytes, headers: Mapping[str, str],
              now: datetime | None = None) -> list[Signal]:
        """Signals in the body; `now` (the daemon's clock) judges expiry and fills
        missing times, and defaults to the wall clock."""


def current_time(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)
