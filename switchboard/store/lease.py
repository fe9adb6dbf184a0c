"""The leader lease in the store: which of the daemons sharing one database
claims and sends (design §7.3), and the fence every claim checks.

One row, written with the database's clock (the daemons' clocks may differ):
`holder` (a random id per process start), `epoch` (one more per takeover),
`expires_at`, `renewed_at`, and `holds_seen` (the database time up to which
the leader has applied the channel holds to its gate, which a declaration at
a standby waits for). A claim given a `Fence` checks, inside its own
transaction, that the fence is still the lease: a leader that froze and woke
after another took over claims nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.store.core import StoreCore, StoreUnavailable

_LEASE_COLUMNS = "holder, epoch, expires_at, renewed_at, holds_seen"


@dataclass(frozen=True)
class Fence:
    """The lease as one leader took it: its holder id and epoch."""

    holder: str
    epoch: int


@dataclass(frozen=True)
class Lease:
    """The lease row as read, with the database's time of the reading."""

    holder: str | None
    epoch: int
    expires_at: float
    renewed_at: float
    holds_seen: float
    now: float

    @property
    def live(self) -> bool:
        return self.holder is not None and self.expires_at > self.now

    def held_by(self, holder: str) -> bool:
        return self.live and self.holder == holder


class Fenced(StoreUnavailable):
    """A claim by a daemon whose lease is no longer the current one: nothing claimed."""

    def __init__(self, fence: Fence) -> None:
        super().__init__("fenced", f"this daemon's leader lease (epoch {fence.epoch}) is no "
                                   "longer current: another daemon leads; nothing was claimed")


class LeaseRecords(StoreCore):
    """The lease row's reads and writes; `_check_fence` for the claims."""

    # Appended to the claims' read of the lease: a takeover (FOR UPDATE) waits
    # until every claim that read the old lease has committed. KEY SHARE, not
    # SHARE: the holder's renewals and `see_holds` (plain UPDATEs) must never wait
    # behind its own stream of claims, or be starved by it.
    _FOR_SHARE = ""

    def _db_clock(self) -> float:
        """The database's time now, in Unix seconds (SQLite: this process's)."""
        raise NotImplementedError

    def db_time(self) -> float:
        return self._db_clock()

    def _lease_row(self, lock: str) -> Lease:
        row = self._db.execute(f"SELECT {_LEASE_COLUMNS} FROM leader_lease "
                               f"WHERE name = 'leader'{lock}").fetchone()
        holder, epoch, expires_at, renewed_at, holds_seen = row
        return Lease(holder, int(epoch), float(expires_at), float(renewed_at),
                     float(holds_seen), self._db_clock())

    def lease(self) -> Lease:
        with self.transaction(durable=False):
            return self._lease_row("")

    def take_lease(self, holder: str, seconds: float) -> Lease:
        """Renew the lease if `holder` holds it, take it (epoch + 1) if nobody
        does or it lapsed, else leave it; the lease as it then stands."""
        with self.transaction() as db:
            # Read first without a lock: a live lease of another is left alone, and
            # a renewal is an UPDATE of our own row. Only a takeover locks the row
            # (FOR UPDATE), which waits for the claims that read the old lease; no
            # claim streams then, since a leader fences itself before its lease lapses.
            lease = self._lease_row("")
            now = lease.now
            if lease.held_by(holder):
                cur = db.execute("UPDATE leader_lease SET expires_at = ?, renewed_at = ? "
                                 "WHERE name = 'leader' AND holder = ? AND epoch = ?",
                                 (now + seconds, now, holder, lease.epoch))
                if cur.rowcount == 1:
                    return Lease(holder, lease.epoch, now + seconds, now, lease.holds_seen,
                                 now)
            elif lease.live:
                return lease
            lease = self._lease_row(self._FOR_UPDATE)
            now = lease.now
            if lease.live and not lease.held_by(holder):
                return lease
            epoch = lease.epoch if lease.held_by(holder) else lease.epoch + 1
            db.execute("UPDATE leader_lease SET holder = ?, epoch = ?, expires_at = ?, "
                       "renewed_at = ? WHERE name = 'leader'",
                       (holder, epoch, now + seconds, now))
            return Lease(holder, epoch, now + seconds, now, lease.holds_seen, now)

    def release_lease(self, fence: Fence) -> bool:
        """Give the lease up at once (a graceful stop); False if it was not ours."""
        with self.transaction() as db:
            now = self._db_clock()
            cur = db.execute("UPDATE leader_lease SET holder = NULL, expires_at = ? "
                             "WHERE name = 'leader' AND holder = ? AND epoch = ?",
                             (now, fence.holder, fence.epoch))
            return cur.rowcount == 1

    def see_holds(self, fence: Fence, at: float, notice: tuple[str, str] | None = None) -> bool:
        """The leader has applied every hold committed before database time `at`;
        with `notice`, NOTIFY it (channel, payload) in the same transaction."""
        with self.transaction(durable=False) as db:
            cur = db.execute("UPDATE leader_lease SET holds_seen = ? WHERE name = 'leader' "
                             "AND holder = ? AND epoch = ? AND holds_seen < ?",
                             (at, fence.holder, fence.epoch, at))
            if cur.rowcount == 1 and notice is not None:
                self.notify(*notice)
            return cur.rowcount == 1

    def notify(self, channel: str, payload: str) -> float:
        """Tell the other daemons on this database (SQLite: there are none); the
        database's time of the notice."""
        return self._db_clock()

    def notify_if_leading(self, fence: Fence, channel: str, payload: str) -> bool:
        """NOTIFY only while `fence` is the live lease (on PostgreSQL checked in the
        notice's own statement): a deposed leader's notice is never sent. False if
        it was not the lease."""
        lease = self.lease()
        if not lease.held_by(fence.holder) or lease.epoch != fence.epoch:
            return False
        self.notify(channel, payload)
        return True

    def _check_fence(self, fence: Fence | None) -> None:
        """Inside a claim's transaction: raise Fenced unless `fence` is the live lease."""
        if fence is None:
            return
        lease = self._lease_row(self._FOR_SHARE)
        if not lease.held_by(fence.holder) or lease.epoch != fence.epoch:
            raise Fenced(fence)
