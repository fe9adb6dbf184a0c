"""The leader lease on PostgreSQL (design §7.3): its reads, renewals and
takeovers on the server's clock, the notices between daemons, and the
leader's reading of the holds for a standby's caller. Each call a standby's
caller waits on is one statement, one round trip.
"""

from __future__ import annotations

import psycopg
import structlog

from switchboard.store.channels import ChannelRecords
from switchboard.store.core import StoreUnavailable
from switchboard.store.lease import Fence, Lease

log = structlog.get_logger("store")


class PostgresLeadership(ChannelRecords):
    """What the PostgreSQL store does differently for the lease and the notices."""

    def notify(self, channel: str, payload: str) -> float:
        """NOTIFY the daemons LISTENing on `channel` (delivered once this commits)."""
        row = self._db.execute("SELECT extract(epoch FROM clock_timestamp()) "
                               "FROM pg_notify(?, ?)", (channel, payload)).fetchone()
        return float(row[0])

    def take_lease(self, holder: str, seconds: float) -> Lease:
        try:
            return super().take_lease(holder, seconds)
        except StoreUnavailable as exc:
            if exc.reason != "busy" or not self._end_stale_lockers():
                raise
        return super().take_lease(holder, seconds)

    def _end_stale_lockers(self) -> list[int]:
        """A takeover waits for the transactions that locked the lease row (the
        claims of the leader that read it). One the server never ends, because it
        is not idle but stuck (its daemon frozen while the server writes it an
        answer, say), would keep every standby out for as long as it is frozen:
        once the lease has lapsed, end those that began before it lapsed. Their
        daemon fenced itself before then; nothing of theirs commits."""
        with self.transaction(durable=False) as db:
            lease = self._lease_row("")
            if lease.live:
                return []
            pids = [int(r[0]) for r in db.execute(
                "SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.relation = 'leader_lease'::regclass AND l.granted "
                # pg_locks is the cluster's: a copy of this database (CREATE DATABASE
                # ... TEMPLATE) has a table of the same oid.
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.mode IN ('RowShareLock', 'RowExclusiveLock') "
                "AND l.pid <> pg_backend_pid() AND a.xact_start < to_timestamp(?)",
                (lease.expires_at,))]
            for pid in pids:
                try:
                    db.execute("SELECT pg_terminate_backend(?)", (pid,))
                except psycopg.errors.InsufficientPrivilege:
                    # Another role's session: only its own role (or pg_signal_backend)
                    # may end it. The takeover waits for the server, or the wake.
                    log.error("stale_lease_locker_not_ended", pid=pid,
                              hint="run both daemons as one role, or grant it "
                                   "pg_signal_backend")
                    return []
        if pids:
            log.warning("stale_lease_lockers_ended", pids=pids, epoch=lease.epoch,
                        holder=lease.holder)
        return pids

    # The lease's reads and the leader's confirmation, each one statement in one
    # round trip (a standby's caller waits on both).

    def lease(self) -> Lease:
        row = self._db.execute(
            "SELECT holder, epoch, expires_at, renewed_at, holds_seen, "
            "extract(epoch FROM clock_timestamp()) FROM leader_lease "
            "WHERE name = 'leader'").fetchone()
        holder, epoch, expires_at, renewed_at, holds_seen, now = row
        return Lease(holder, int(epoch), float(expires_at), float(renewed_at),
                     float(holds_seen), float(now))

    def see_holds(self, fence: Fence, at: float, notice: tuple[str, str] | None = None) -> bool:
        if notice is None:
            return super().see_holds(fence, at)
        # Committed by itself, so no lock_timeout guards it: NOWAIT instead. The row
        # is locked against it only by a takeover (or a frozen renewal), when
        # confirming is moot; the next reading confirms, or the new leader's.
        return self._db.execute(
            "WITH mine AS (SELECT name FROM leader_lease WHERE name = 'leader' AND holder = ? "
            "AND epoch = ? AND holds_seen < ? FOR NO KEY UPDATE NOWAIT), "
            "seen AS (UPDATE leader_lease l SET holds_seen = ? FROM mine "
            "WHERE l.name = mine.name RETURNING 1) SELECT pg_notify(?, ?) FROM seen",
            (fence.holder, fence.epoch, at, at, *notice)).fetchone() is not None

    def notify_if_leading(self, fence: Fence, channel: str, payload: str) -> bool:
        return self._db.execute(
            "SELECT pg_notify(?, ?) FROM leader_lease WHERE name = 'leader' AND holder = ? "
            "AND epoch = ? AND expires_at > extract(epoch FROM clock_timestamp())",
            (channel, payload, fence.holder, fence.epoch)).fetchone() is not None

    def holds_by_incident(self) -> tuple[float, dict[int, float | None]]:
        # One round trip: the statement's start comes before its snapshot, so every
        # hold committed before it is read.
        rows = self._db.execute(
            "SELECT extract(epoch FROM statement_timestamp()), h.incident_id, h.until "
            "FROM (SELECT 1) AS one LEFT JOIN (SELECT incident_id, MAX(until) AS until "
            "FROM channel_control GROUP BY incident_id) AS h ON true").fetchall()
        return float(rows[0][0]), {int(i): u for _, i, u in rows if i is not None}

    def _db_clock(self) -> float:
        # The server's clock, the one every daemon's lease is measured by.
        row = self._db.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
        return float(row[0])
