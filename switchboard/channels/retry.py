"""Retries and rate-limit waits of the network channels.

One `Retrier` per channel, that is per account: after a 429 every later call
of the same operation waits for the platform's reset instead of asking again,
and a reset further away than `rate_limit_max_wait` fails fast as a transient
error so the dispatcher is never parked for hours on one account.

Options read from `ChannelConfig.options` (all optional):
  max_retries          retries after the first attempt (default 3)
  retry_base           first backoff delay in seconds, doubled per retry (default 1.0)
  retry_max            cap on one backoff delay in seconds (default 30)
  rate_limit_wait      wait after a 429 that names no reset time (default 60)
  rate_limit_max_wait  longest wait for a reset before failing (default 900)
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from switchboard.channels.base import ChannelError, GateClosed
from switchboard.clock import Clock

T = TypeVar("T")


OPTION_NAMES = ("max_retries", "retry_base", "retry_max", "rate_limit_wait",
                "rate_limit_max_wait")


class RateLimited(ChannelError):
    """A 429: transient, and no call of this kind may go out before `reset_at`."""

    def __init__(self, message: str, reset_at: float | None) -> None:
        super().__init__(message, permanent=False, reason="rate_limited")
        self.reset_at = reset_at  # Unix time; None when the platform named none


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    retry_base: float = 1.0
    retry_max: float = 30.0
    rate_limit_wait: float = 60.0
    rate_limit_max_wait: float = 900.0
    # False for a receiver that ignores idempotency keys: after an attempt that
    # may have reached it, a retry could publish twice, so there is none.
    retry_maybe_sent: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any],
                     retry_maybe_sent: bool = True) -> RetryPolicy:
        d = cls()
        return cls(
            max_retries=max(0, int(options.get("max_retries", d.max_retries))),
            retry_base=float(options.get("retry_base", d.retry_base)),
            retry_max=float(options.get("retry_max", d.retry_max)),
            rate_limit_wait=float(options.get("rate_limit_wait", d.rate_limit_wait)),
            rate_limit_max_wait=float(options.get("rate_limit_max_wait", d.rate_limit_max_wait)),
            retry_maybe_sent=retry_maybe_sent,
        )

    def backoff(self, failures: int, rand: float) -> float:
        """Exponential with jitter in [50%, 100%] so retries of many posts do not align."""
        ceiling = min(self.retry_max, self.retry_base * 2.0 ** (failures - 1))
        return ceiling * (0.5 + rand / 2)


class Retrier:
    """Runs one operation with bounded retries, honouring the account's rate limits.

    `clock` (the channel's) decides how long a reset is away; `sleep` only waits.
    """

    def __init__(self, policy: RetryPolicy, clock: Clock, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rand: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._now, self._sleep, self._rand = clock, sleep, rand
        self._blocked_until: dict[str, float] = {}

    def blocked_until(self, operation: str) -> float | None:
        until = self._blocked_until.get(operation)
        return until if until is not None and until > self._now() else None

    async def run(self, operation: str, attempt: Callable[[], Awaitable[T]],
                  may_start: Callable[[], bool] | None = None) -> T:
        failures = 0
        maybe_sent = False  # an attempt failed in a way that may have reached the platform
        while True:
            waited = await self._wait_for_reset(operation)
            # Every attempt after a wait asks the gate again: an incident declared
            # meanwhile stops the send. If an earlier attempt may have reached the
            # platform, the post is left for review rather than sent again.
            if (failures or waited) and may_start is not None and not may_start():
                if maybe_sent:
                    raise _closed_after_maybe_sent()
                raise GateClosed()
            try:
                return await attempt()
            except RateLimited as exc:
                reset = exc.reset_at or self._now() + self.policy.rate_limit_wait
                self._blocked_until[operation] = max(reset, self._now())
                error: ChannelError = exc
                delay = 0.0  # the wait for the reset happens at the top of the loop
            except GateClosed as exc:
                if maybe_sent:
                    raise _closed_after_maybe_sent() from exc
                raise
            except ChannelError as exc:
                if exc.permanent:
                    exc.maybe_sent = exc.maybe_sent or maybe_sent
                    raise
                if not exc.not_sent:
                    maybe_sent = True
                    if not self.policy.retry_maybe_sent:
                        raise ChannelError(
                            f"{exc.message}; not retried: the receiver ignores idempotency "
                            "keys and may have the post", reason=exc.reason,
                            maybe_sent=True) from exc
                error = exc
                delay = self.policy.backoff(failures + 1, self._rand())
            failures += 1
            if failures > self.policy.max_retries:
                raise ChannelError(f"{error.message} (gave up after {failures} attempts)",
                                   permanent=False, reason=error.reason,
                                   maybe_sent=maybe_sent) from error
            if delay > 0:
                await self._sleep(delay)

    async def _wait_for_reset(self, operation: str) -> bool:
        """Sleep out the account's rate limit; True if there was one to wait for."""
        until = self._blocked_until.get(operation)
        if until is None:
            return False
        remaining = until - self._now()
        if remaining > self.policy.rate_limit_max_wait:
            at = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
            raise ChannelError(f"rate limited until {at}; not waiting more than "
                               f"{self.policy.rate_limit_max_wait:g}s",
                               permanent=False, reason="rate_limited")
        # Re-checked after each sleep: the sleep's own timer and the clock the
        # reset is given in may disagree by a few milliseconds.
        while remaining > 0:
            await self._sleep(remaining)
            remaining = until - self._now()
        if self._blocked_until.get(operation) == until:
            del self._blocked_until[operation]
        return True


def _closed_after_maybe_sent() -> ChannelError:
    return ChannelError("an incident took the channel before a retry; an earlier attempt "
                        "may have reached the platform", reason="gate_closed", maybe_sent=True)


def retry_after(value: str | None, now: float) -> float | None:
    """A `Retry-After` header as Unix time: it is either seconds (from `now`) or an
    HTTP date."""
    if not value:
        return None
    try:
        return now + max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
