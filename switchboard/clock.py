"""Time in one place: Unix seconds for storage, aware datetimes for people.

The clock is injected (`Clock`) so tests and the simulator can move time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]

system_clock: Clock = time.time


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def rfc3339(ts: float | None) -> str | None:
    """UTC with microseconds, e.g. `2026-11-22T15:00:00.123456+00:00`."""
    return None if ts is None else to_datetime(ts).isoformat(timespec="microseconds")
