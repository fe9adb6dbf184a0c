"""What the API calls, handed over by the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchboard.auth import Tokens
    from switchboard.clock import Clock
    from switchboard.config import Config
    from switchboard.gate import Gate
    from switchboard.incidents import FeedSignals, Incidents
    from switchboard.listener import Limits
    from switchboard.metrics import Metrics
    from switchboard.people import People
    from switchboard.publisher import Publisher
    from switchboard.review import Review
    from switchboard.runbooks import Runbook
    from switchboard.store import Store
    from switchboard.throttle import Throttle
    from switchboard.watch import FeedWatch


@dataclass(frozen=True)
class Services:
    """What the API calls, handed over by the composition root: the API never
    holds the daemon. The parts a reload replaces (config, tokens, feed watch)
    and readiness are read through getters, so a request sees the current ones."""

    store: Store
    clock: Clock
    gate: Gate
    publisher: Publisher
    incidents: Incidents
    signals: FeedSignals
    people: People
    throttle: Throttle
    metrics: Metrics
    limits: Limits
    current_config: Callable[[], Config]
    current_tokens: Callable[[], Tokens]
    current_feeds: Callable[[], FeedWatch]
    is_ready: Callable[[], bool]
    is_alive: Callable[[], bool]  # the loop still runs its timers
    check_store: Callable[[], Awaitable[bool]]
    refresh_metrics: Callable[[], Awaitable[None]]
    status: Callable[[], Awaitable[dict[str, Any]]]
    channel_list: Callable[[], list[dict[str, Any]]]
    review: Review  # cancel / release / drop / edit posts
    current_runbooks: Callable[[], dict[str, Runbook]]
    # {"role": "leader"|"standby", "epoch": N}; SQLite's daemon always leads, epoch 1.
    leadership: Callable[[], dict[str, Any]] = lambda: {"role": "leader", "epoch": 1}

    @property
    def runbooks(self) -> dict[str, Runbook]:
        return self.current_runbooks()

    @property
    def config(self) -> Config:
        return self.current_config()

    @property
    def tokens(self) -> Tokens:
        return self.current_tokens()

    @property
    def feeds(self) -> FeedWatch:
        return self.current_feeds()

    @property
    def ready(self) -> bool:
        return self.is_ready()
