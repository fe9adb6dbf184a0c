"""The listings of posts and incidents, read on a connection of their own."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from switchboard.model import Incident, Post
from switchboard.store.core import _INCIDENT_COLUMNS, _POST_COLUMNS, POST_STATES, _incident
from switchboard.store.posts import PostRecords, _due_window


class Listings(PostRecords):
    """Pages of posts and incidents, built on the reader connection."""

    # -- listings (callable from any thread: they read on a connection of their own)

    def list_posts(self, states: Sequence[str] = (), channel: str | None = None,
                   incident_id: int | None = None, limit: int = 1000,
                   due_from: float | None = None, due_to: float | None = None) -> list[Post]:
        where: list[str] = []
        args: list[Any] = []
        _due_window(where, args, due_from, due_to)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += list(states)
        _channel_and_incident(where, args, channel, incident_id)
        sql = f"SELECT {_POST_COLUMNS} FROM posts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY due_at, id LIMIT ?"
        # On the listings' connection: a long list never holds up the writer.
        with self._reading() as db:
            return [Post(*r) for r in db.execute(sql, [*args, limit])]

    def page_posts(self, states: Sequence[str] = (), channel: str | None = None,
                   after: tuple[float, int] | None = None, limit: int = 100,
                   due_from: float | None = None, due_to: float | None = None,
                   incident_id: int | None = None) -> list[Post]:
        """Up to `limit` posts in (due_at, id) order after the key `after`.

        Keyset paging: one index range per state, merged, so the page at the
        millionth post costs what the first one does (no sort, no offset).
        A due-time window narrows each range; an incident's posts are few and
        found through its own index.
        """
        where = "state = ?" + (" AND channel = ?" if channel else "")
        where += " AND (due_at, id) > (?, ?)" if after else ""
        extra: list[str] = []
        extra_args: list[Any] = []
        _due_window(extra, extra_args, due_from, due_to)
        if incident_id is not None:
            extra.append("incident_id = ?")
            extra_args.append(incident_id)
        where += "".join(f" AND {term}" for term in extra)
        index = ("posts_incident" if incident_id is not None else
                 "posts_channel_listing" if channel else "posts_listing")
        sql = (f"SELECT {_POST_COLUMNS} FROM posts INDEXED BY {index} WHERE {where} "
               "ORDER BY due_at, id LIMIT ?")
        runs: list[list[Post]] = []
        with self._reading() as db:
            for state in dict.fromkeys(states or POST_STATES):
                args: list[Any] = [state, *([channel] if channel else []),
                                   *(after or ()), *extra_args, limit]
                runs.append([Post(*r) for r in db.execute(sql, args)])
        merged = heapq.merge(*runs, key=lambda p: (p.due_at, p.id))
        return [post for _, post in zip(range(limit), merged, strict=False)]

    def count_posts(self, states: Sequence[str] = (), channel: str | None = None,
                    due_from: float | None = None, due_to: float | None = None,
                    incident_id: int | None = None) -> int:
        chosen = list(dict.fromkeys(states or POST_STATES))
        narrowed = due_from is not None or due_to is not None or incident_id is not None
        if not channel and not narrowed:
            counts = self.count_by_state()
            return sum(counts.get(state, 0) for state in chosen)
        if narrowed:
            return self._count_narrowed(chosen, channel, due_from, due_to, incident_id)
        with self._reading() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM posts INDEXED BY posts_channel_listing WHERE channel = ? "
                f"AND state IN ({','.join('?' * len(chosen))})", [channel, *chosen]).fetchone()
        return int(row[0])

    def _count_narrowed(self, states: list[str], channel: str | None, due_from: float | None,
                        due_to: float | None, incident_id: int | None) -> int:
        where = [f"state IN ({','.join('?' * len(states))})"]
        args: list[Any] = list(states)
        _channel_and_incident(where, args, channel, incident_id)
        _due_window(where, args, due_from, due_to)
        with self._reading() as db:
            row = db.execute(f"SELECT COUNT(*) FROM posts WHERE {' AND '.join(where)}",
                             args).fetchone()
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


def _channel_and_incident(where: list[str], args: list[Any], channel: str | None,
                          incident_id: int | None) -> None:
    """A listing's or a count's narrowing to one channel and one incident, if given."""
    if channel:
        where.append("channel = ?")
        args.append(channel)
    if incident_id is not None:
        where.append("incident_id = ?")
        args.append(incident_id)
