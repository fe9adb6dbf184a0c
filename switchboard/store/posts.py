"""Posts in the store: creation, idempotency keys, claims, every change of state."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from switchboard.model import NewPost, Post, SendOutcome
from switchboard.poststates import PostState, check_initial, check_move, check_outcome
from switchboard.store.core import (
    _PENDING,
    _POST_COLUMNS,
    INTERRUPTED_SEND,
    REQUEST_KEY_DAYS,
    Claim,
    RequestKey,
)
from switchboard.store.keys import RequestKeys
from switchboard.store.lease import Fence, LeaseRecords


class PostRecords(RequestKeys, LeaseRecords):
    """Posts: creation, idempotency keys, the claims and every change of state."""

    def recover(self, now: float) -> dict[str, int]:
        """Start-up repair: a crash leaves `queued` (never sent: back to scheduled)
        and `sending` (outcome unknown: never re-sent automatically).

        An immediate send still `queued` is not sent late behind its caller's
        back (the caller saw an error and may have sent it again): it fails,
        and a repeat of the request with its Idempotency-Key sends it."""
        with self.transaction():
            immediate = [r[0] for r in self._db.execute(
                "SELECT p.id FROM posts p JOIN immediate_sends s ON s.post_id = p.id "
                "WHERE p.state = 'queued'")]
            not_sent = self._transition(immediate, PostState.FAILED, (PostState.QUEUED,), now,
                                        "daemon", "restart before the immediate send started",
                                        error=INTERRUPTED_SEND)
            requeued = self._move(PostState.QUEUED, PostState.SCHEDULED, now, "daemon",
                                  "restart before send")
            unknown = self._move(PostState.SENDING, PostState.UNKNOWN, now, "daemon",
                                 "interrupted mid-send by a crash; check the platform")
            self._db.execute("DELETE FROM request_keys WHERE created_at < ?",
                             (now - REQUEST_KEY_DAYS * 86400,))
        return {"requeued": requeued, "unknown": unknown, "not_sent": len(not_sent)}

    def _move(self, old: PostState, new: PostState, now: float, actor: str, reason: str) -> int:
        ids = [r[0] for r in self._db.execute("SELECT id FROM posts WHERE state = ?", (old,))]
        self._transition(ids, new, (old,), now, actor, reason)
        return len(ids)

    # -- posts -------------------------------------------------------------

    def add_posts(self, posts: Sequence[NewPost], actor: str, now: float,
                  request: RequestKey | None = None, immediate: bool = False) -> list[int]:
        """Store new posts; with `request`, its key in the same transaction, so a
        repeat finds them (`immediate`: an API send, see `recover`)."""
        with self.transaction() as db:
            ids = self._insert_posts(posts, actor, now)
            if immediate:
                db.executemany("INSERT INTO immediate_sends (post_id) VALUES (?)",
                               [(i,) for i in ids])
            if request is not None:
                self._keep(request, "send" if immediate else "posts", ids, 201, now)
        return ids

    def _insert_posts(self, posts: Sequence[NewPost], actor: str, now: float) -> list[int]:
        db = self._db
        for post in posts:
            check_initial(post.state)
        ids = self._new_post_ids(len(posts))
        db.executemany(
            "INSERT INTO posts (id, channel, kind, text, link, state, due_at, expires_at, "
            "incident_id, created_by, created_at, updated_at, origin) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(i, p.channel, p.kind, p.text, p.link, p.state, p.due_at, p.expires_at,
              p.incident_id, actor, now, now, p.origin) for i, p in zip(ids, posts, strict=True)])
        db.executemany(
            "INSERT INTO post_events (post_id, at, from_state, to_state, actor, reason) "
            "VALUES (?, ?, NULL, ?, ?, 'created')",
            [(i, now, p.state, actor) for i, p in zip(ids, posts, strict=True)])
        self._delta.update(p.state for p in posts)
        return ids

    def import_posts(self, rows: Sequence[tuple[str, NewPost]], actor: str,
                     now: float) -> tuple[list[int], list[int]]:
        """A calendar import, all rows or none. Each row carries its key: a row whose
        key is already stored (an earlier import of the same file) is not stored
        again. Returns (ids created, ids that already existed)."""
        with self.transaction() as db:
            self._lock_imports()
            existing: list[int] = []
            new: dict[str, NewPost] = {}
            for key, post in rows:
                found = db.execute("SELECT post_id FROM post_keys WHERE key = ?",
                                   (key,)).fetchone()
                if found is not None:
                    existing.append(int(found[0]))
                elif key not in new:
                    new[key] = post
            ids = self._insert_posts(list(new.values()), actor, now)
            db.executemany("INSERT INTO post_keys (key, post_id) VALUES (?, ?)",
                           list(zip(new, ids, strict=True)))
        return ids, existing

    def is_immediate(self, post_id: int) -> bool:
        return self._db.execute("SELECT 1 FROM immediate_sends WHERE post_id = ?",
                                (post_id,)).fetchone() is not None

    def post(self, post_id: int) -> Post | None:
        row = self._db.execute(f"SELECT {_POST_COLUMNS} FROM posts WHERE id = ?",
                               (post_id,)).fetchone()
        return Post(*row) if row else None

    def posts(self, ids: Iterable[int]) -> list[Post]:
        id_list = list(ids)
        out: list[Post] = []
        for i in range(0, len(id_list), 500):
            chunk = id_list[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out += [Post(*r) for r in self._db.execute(
                f"SELECT {_POST_COLUMNS} FROM posts WHERE id IN ({marks}) ORDER BY id", chunk)]
        return out

    def list_posts(self, states: Sequence[str] = (), channel: str | None = None,
                   incident_id: int | None = None, limit: int = 1000,
                   due_from: float | None = None, due_to: float | None = None) -> list[Post]:
        where: list[str] = []
        args: list[Any] = []
        _due_window(where, args, due_from, due_to)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += list(states)
        if channel:
            where.append("channel = ?")
            args.append(channel)
        if incident_id is not None:
            where.append("incident_id = ?")
            args.append(incident_id)
        sql = f"SELECT {_POST_COLUMNS} FROM posts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY due_at, id LIMIT ?"
        return [Post(*r) for r in self._db.execute(sql, [*args, limit])]

    def post_history(self, post_id: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT at, from_state, to_state, actor, reason FROM post_events WHERE post_id = ? "
            "ORDER BY id", (post_id,))
        return [dict(zip(("at", "from", "to", "actor", "reason"), r, strict=True)) for r in rows]

    def update_post_fields(self, post_id: int, changes: dict[str, Any], expect: Sequence[str],
                           now: float, actor: str, reason: str,
                           to_state: str | None = None) -> bool:
        """Change a pending post's columns (text, channel, due_at, expires_at) in one
        transaction, if it is still in one of `expect`; a `queued` post goes back to
        `scheduled` (or to `to_state`, if given) so that the dispatcher claims it
        again with the new values."""
        allowed = {"text", "channel", "due_at", "expires_at"}
        if set(changes) - allowed:
            raise ValueError(f"not editable: {sorted(set(changes) - allowed)}")
        with self.transaction() as db:
            row = db.execute(f"SELECT state FROM posts WHERE id = ? "
                             f"AND state IN ({','.join('?' * len(expect))}){self._FOR_UPDATE}",
                             [post_id, *expect]).fetchone()
            if row is None:
                return False
            old = str(row[0])
            new = to_state or ("scheduled" if old == "queued" else old)
            sets = "".join(f", {k} = ?" for k in changes)
            db.execute(f"UPDATE posts SET state = ?, updated_at = ?{sets} WHERE id = ?",
                       [new, now, *changes.values(), post_id])
            db.execute("INSERT INTO post_events (post_id, at, from_state, to_state, actor, "
                       "reason) VALUES (?, ?, ?, ?, ?, ?)", (post_id, now, old, new, actor,
                                                             reason))
            self._delta[old] -= 1
            self._delta[new] += 1
        return True

    def next_due(self) -> float | None:
        row = self._db.execute(
            f"SELECT MIN(due_at) FROM posts {_PENDING} WHERE state = 'scheduled'").fetchone()
        return None if row[0] is None else float(row[0])

    def count_by_state(self) -> dict[str, int]:
        return {state: n for state, n in self._counts.items() if n}

    def mark_missed(self, before: float, now: float) -> list[int]:
        """Scheduled posts due before `before` are missed: old posts never go out in a burst."""
        ids = [r[0] for r in self._db.execute(
            f"SELECT id FROM posts {_PENDING} WHERE state = 'scheduled' AND due_at < ?",
            (before,))]
        if ids:
            with self.transaction():
                self._transition(ids, PostState.MISSED, (PostState.SCHEDULED,), now, "dispatcher",
                                 "due longer ago than max_lateness")
        return ids

    def claim_due(self, now: float, limit: int, fence: Fence | None = None) -> list[Post]:
        return self.claim_due_held(now, limit, fence)[0]

    def claim_due_held(self, now: float, limit: int, fence: Fence | None = None,
                       ) -> tuple[list[Post], list[tuple[int, str]]]:
        """Move due posts from `scheduled` to `queued` so that no later tick takes them
        again; those on a channel the store holds are suppressed instead (returned
        second, as (post id, channel)). With `fence`, only while it is the leader
        lease (else Fenced, nothing claimed)."""
        rows = [Post(*r) for r in self._db.execute(
            f"SELECT {_POST_COLUMNS} FROM posts {_PENDING} WHERE state = 'scheduled' "
            "AND due_at <= ? "
            "ORDER BY due_at, id LIMIT ?", (now, limit))]
        if not rows:
            return [], []
        # No fsync: a lost `queued` is `scheduled` again, which start-up makes
        # of every `queued` post anyway; the `sending` that follows is synced.
        with self.transaction(durable=False):
            self._check_fence(fence)
            free, held = self._suppress_held([(p.id, p.channel, p.kind) for p in rows],
                                          (PostState.SCHEDULED,), now)
            # Only what this transaction moved: another daemon may have claimed
            # some of the rows read above in the meantime.
            claimed = set(self._transition(free, PostState.QUEUED, (PostState.SCHEDULED,), now,
                                           "dispatcher", "due"))
        out = [p for p in rows if p.id in claimed]
        for p in out:
            p.state = PostState.QUEUED
        return out, held

    def claim_sending(self, ids: Sequence[int], now: float, fence: Fence | None = None) -> Claim:
        """`queued -> sending`, deciding on the channel holds in the same transaction:
        whichever process wrote a hold, no post of a held kind starts on its channel.
        With `fence`, only while it is the leader lease (else Fenced)."""
        if not ids:
            return Claim([], [])
        with self.transaction():
            self._check_fence(fence)
            rows = self._db.execute(
                f"SELECT id, channel, kind FROM posts WHERE id IN ({','.join('?' * len(ids))}) "
                "AND +state = 'queued'", list(ids)).fetchall()
            free, held = self._suppress_held(rows, (PostState.QUEUED,), now)
            sending = self._transition(free, PostState.SENDING, (PostState.QUEUED,), now,
                                       "dispatcher", "gate open")
        return Claim(sending, held)

    def _suppress_held(self, posts: Sequence[tuple[int, str, str]], expect: Sequence[PostState],
                       now: float) -> tuple[list[int], list[tuple[int, str]]]:
        """Inside a transaction: suppress the posts whose channel and kind a hold
        covers (the earliest incident names it, as the gate does); the rest are free."""
        holds = self._active_holds(now)
        free: list[int] = []
        by_incident: dict[int, list[tuple[int, str]]] = {}
        for post_id, channel, kind in posts:
            holder = next((i for i, kinds in holds.get(channel, []) if kind in kinds), None)
            if holder is None:
                free.append(post_id)
            else:
                by_incident.setdefault(holder, []).append((post_id, channel))
        held: list[tuple[int, str]] = []
        for incident_id, items in by_incident.items():
            channel_of = dict(items)
            moved = self._transition(list(channel_of), PostState.SUPPRESSED, expect, now, "gate",
                                     f"INC-{incident_id} holds the channel",
                                     incident_id=incident_id)
            if moved:
                self._log(incident_id, now, "posts_suppressed", "gate", {"posts": moved})
            held += [(i, channel_of[i]) for i in moved]
        return free, held

    def _active_holds(self, now: float) -> dict[str, list[tuple[int, set[str]]]]:
        holds: dict[str, list[tuple[int, set[str]]]] = {}
        parsed: dict[str | None, set[str]] = {}
        self._lock_holds()
        for channel, incident_id, suppress in self._db.execute(
                "SELECT c.channel, c.incident_id, i.suppress FROM channel_control c "
                "LEFT JOIN incidents i ON i.id = c.incident_id "
                "WHERE c.until IS NULL OR c.until > ? ORDER BY c.incident_id", (now,)):
            # Parsed once per incident, not once per channel (10,000 for one incident).
            kinds = parsed.get(suppress)
            if kinds is None:
                kinds = parsed[suppress] = (set(json.loads(suppress)) if suppress
                                            else {"marketing"})
            holds.setdefault(channel, []).append((int(incident_id), kinds))
        return holds

    def transition(self, /, ids: Sequence[int], to_state: PostState, expect: Sequence[PostState],
                   now: float, actor: str, reason: str | None = None, **fields: Any) -> list[int]:
        """Move posts that are in one of `expect` to `to_state`; returns the ids moved.
        A move the state machine does not allow raises IllegalMove (nothing changes)."""
        with self.transaction():
            return self._transition(ids, to_state, expect, now, actor, reason, **fields)

    def _transition(self, ids: Sequence[int], to_state: PostState, expect: Sequence[PostState],
                    now: float, actor: str, reason: str | None = None,
                    **fields: Any) -> list[int]:
        # Checked before anything is read: an illegal request fails even when no
        # post is in an `expect` state at the moment.
        to_state = check_move(expect, to_state)
        if not ids:
            return []
        sets = "".join(f", {k} = ?" for k in fields)
        moved: list[tuple[int, str]] = []
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            # `+state`: look the ids up by primary key; an index on state would walk
            # every post in that state (a million scheduled ones, say) per chunk.
            # Locked in id order: a concurrent mover waits, then finds the new state.
            found = self._db.execute(
                f"SELECT id, state FROM posts WHERE id IN ({','.join('?' * len(chunk))}) "
                f"AND +state IN ({','.join('?' * len(expect))}) ORDER BY id{self._FOR_UPDATE}",
                [*chunk, *expect]).fetchall()
            if not found:
                continue
            self._db.execute(
                f"UPDATE posts SET state = ?, updated_at = ?{sets} "
                f"WHERE id IN ({','.join('?' * len(found))})",
                [to_state, now, *fields.values(), *(f[0] for f in found)])
            moved += found
        for _, old in moved:
            self._delta[old] -= 1
        self._delta[to_state] += len(moved)
        self._db.executemany(
            "INSERT INTO post_events (post_id, at, from_state, to_state, actor, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(post_id, now, old, to_state, actor, reason) for post_id, old in moved])
        return [post_id for post_id, _ in moved]

    def reschedule_held(self, moves: Sequence[tuple[int, float]], expired: Sequence[int],
                        now: float, actor: str, reason: str,
                        expired_reason: str) -> tuple[list[int], list[int]]:
        """A held-post train in one transaction (one fsync, not one per post): each
        suppressed post of `moves` back to `scheduled` at its own time, those of
        `expired` expired. Returns (rescheduled, expired) ids."""
        with self.transaction():
            gone = self._transition(expired, PostState.EXPIRED, (PostState.SUPPRESSED,), now, actor,
                                    expired_reason)
            due = dict(moves)
            moved: list[int] = []
            ids = list(due)
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                moved += [r[0] for r in self._db.execute(
                    f"SELECT id FROM posts WHERE id IN ({','.join('?' * len(chunk))}) "
                    f"AND +state = 'suppressed' ORDER BY id{self._FOR_UPDATE}", chunk)]
            self._db.executemany(
                "UPDATE posts SET state = 'scheduled', updated_at = ?, due_at = ? WHERE id = ?",
                [(now, due[post_id], post_id) for post_id in moved])
            self._db.executemany(
                "INSERT INTO post_events (post_id, at, from_state, to_state, actor, reason) "
                "VALUES (?, ?, 'suppressed', 'scheduled', ?, ?)",
                [(post_id, now, actor, reason) for post_id in moved])
            self._delta[PostState.SUPPRESSED] -= len(moved)
            self._delta[PostState.SCHEDULED] += len(moved)
        return moved, gone

    def record_sends(self, outcomes: Sequence[SendOutcome], now: float) -> None:
        """The platform's answers for a run of sends, in one transaction."""
        if not outcomes:
            return
        for outcome in outcomes:
            check_outcome(outcome.state)
        with self.transaction(durable=False) as db:
            db.executemany(
                "UPDATE posts SET state = ?, remote_id = ?, published_at = ?, error = ?, "
                "updated_at = ? WHERE id = ? AND state = 'sending'",
                [(o.state, o.remote_id, o.published_at, o.error, now, o.post_id)
                 for o in outcomes])
            self._delta[PostState.SENDING] -= len(outcomes)
            self._delta.update(o.state for o in outcomes)
            db.executemany(
                "INSERT INTO post_events (post_id, at, from_state, to_state, actor, reason) "
                "VALUES (?, ?, 'sending', ?, 'dispatcher', ?)",
                [(o.post_id, now, o.state, o.reason) for o in outcomes])

    def published_since(self, channels: Sequence[str], since: float,
                        kinds: Sequence[str]) -> list[Post]:
        marks, kmarks = ",".join("?" * len(channels)), ",".join("?" * len(kinds))
        return [Post(*r) for r in self._db.execute(
            f"SELECT {_POST_COLUMNS} FROM posts WHERE state = 'published' "
            f"AND channel IN ({marks}) AND kind IN ({kmarks}) AND published_at >= ? "
            "ORDER BY published_at", [*channels, *kinds, since])]


def _due_window(where: list[str], args: list[Any], due_from: float | None,
                due_to: float | None) -> None:
    """`due_from <= due_at < due_to`, either end open."""
    if due_from is not None:
        where.append("due_at >= ?")
        args.append(due_from)
    if due_to is not None:
        where.append("due_at < ?")
        args.append(due_to)
