"""Due times for posts put back on the schedule together (released after an
incident or by review): spaced per channel, so no channel gets a burst."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from switchboard.model import Post


def spaced_times(start: float, count: int, spacing: timedelta) -> Sequence[float]:
    """Due times for re-queued posts: one channel never gets a burst."""
    step = spacing.total_seconds()
    return [start + i * step for i in range(count)]


def release_times(posts: Sequence[Post], start: float,
                  spacing: timedelta) -> dict[int, float]:
    """Due times for posts released together: the first of each channel at `start`,
    then one per `spacing` on that channel (channels do not wait for each other)."""
    by_channel: dict[str, list[Post]] = {}
    for post in sorted(posts, key=lambda p: (p.due_at, p.id)):
        by_channel.setdefault(post.channel, []).append(post)
    out: dict[int, float] = {}
    for channel_posts in by_channel.values():
        times = spaced_times(start, len(channel_posts), spacing)
        out.update({p.id: t for p, t in zip(channel_posts, times, strict=True)})
    return out
