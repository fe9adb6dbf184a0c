"""The listings of posts and incidents, read on a connection of their own."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from switchboard.model import Incident, Post
from switchboard.store.core import _INCIDENT_COLUMNS, _POST_COLUMNS, POST_STATES, _incident
from switchboard.store.posts import PostRecords


class Listings(PostRecords):
    """Pages of posts and incidents, built on the reader connection."""

    # -- listings (callable from any thread: they read on a connection of their own)

    def page_posts(self, states: Sequence[str] = (), channel: str | None = None,
                   after: tuple[float, int] | None = None, limit: int = 100) -> list[Post]:
        """Up to `limit` posts in (due_at, id) order after the key `after`.

        Keyset paging: one index range per state, merged, so the page at the
        millionth post costs what the first one does (no sort, no offset).
        """
        where = "state = ?" + (" AND channel = ?" if channel else "")
        where += " AND (due_at, id) > (?, ?)" if after else ""
        index = "posts_channel_listing" if channel else "posts_listing"
        sql = (f"SELECT {_POST_COLUMNS} FROM posts INDEXED BY {index} WHERE {where} "
               "ORDER BY due_at, id LIMIT ?")
        runs: list[list[Post]] = []
        with self._reading() as db:
            for state in dict.fromkeys(states or POST_STATES):
                args: list[Any] = [state, *([channel] if channel else []),
                                   *(after or ()), limit]
                runs.append([Post(*r) for r in db.execute(sql, args)])
        merged = heapq.merge(*runs, key=lambda p: (p.due_at, p.id))
        return [post for _, post in zip(range(limit), merged, strict=False)]

    def count_posts(self, states: Sequence[str] = (), channel: str | None = None) -> int:
        chosen = list(dict.fromkeys(states or POST_STATES))
        if not channel:
            return sum(self._counts.get(state, 0) for state in chosen)
        with self._reading() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM posts INDEXED BY posts_channel_listing WHERE channel = ? "
                f"AND state IN ({','.join('?' * len(chosen))})", [channel, *chosen]).fetchone()
        return int(row[0])

    def page_incidents(self, include_resolved: bool = False, before: int | None = None,
                       limit: int = 100) -> tuple[list[Incident], int]:
        """Up to `limit` incidents, newest first, older than id `before`; and how many
        there are in all."""
        # By default the active ones and those in cooldown (held posts not yet dealt with).
        where = [] if include_resolved else [
            "(state = 'active' OR (state = 'resolved' AND held_done = 0))"]
        count_sql = "SELECT COUNT(*) FROM incidents" + (f" WHERE {where[0]}" if where else "")
        if before is not None:
            where.append("id < ?")
        sql = f"SELECT {_INCIDENT_COLUMNS} FROM incidents"
        sql += (" WHERE " + " AND ".join(where)) if where else ""
        with self._reading() as db:
            rows = db.execute(sql + " ORDER BY id DESC LIMIT ?",
                              [*([before] if before is not None else []), limit]).fetchall()
            total = int(db.execute(count_sql).fetchone()[0])
        return [_incident(r) for r in rows], total
