"""People, their tokens and team roles, and the audit of writes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from switchboard.model import AuditEntry, Person
from switchboard.store.incidents import IncidentRecords

_PERSON_COLUMNS = "name, role, disabled, password_hash, created_at, updated_at"


class PeopleRecords(IncidentRecords):
    """People, personal tokens, team roles and the audit of writes."""

    # -- people, teams and audit --------------------------------------------

    def add_person(self, name: str, role: str, teams: Mapping[str, Iterable[str]],
                   now: float) -> bool:
        """A new person; False if the name is taken."""
        with self.transaction() as db:
            cur = db.execute("INSERT INTO people (name, role, created_at, updated_at) "
                             "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", (name, role, now, now))
            if cur.rowcount == 0:
                return False
            self._set_team_roles(name, teams)
        return True

    def _set_team_roles(self, name: str, teams: Mapping[str, Iterable[str]]) -> None:
        self._db.execute("DELETE FROM team_roles WHERE person = ?", (name,))
        self._db.executemany("INSERT INTO team_roles (person, team, role) "
                             "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                             [(name, team, role) for team, roles in teams.items()
                              for role in roles])

    def update_person(self, name: str, now: float, *, role: str | None = None,
                      disabled: bool | None = None, password_hash: str | None = None,
                      teams: Mapping[str, Iterable[str]] | None = None) -> bool:
        """Change what is given; False if there is no such person."""
        fields: dict[str, Any] = {"updated_at": now}
        if role is not None:
            fields["role"] = role
        if disabled is not None:
            fields["disabled"] = int(disabled)
        if password_hash is not None:
            fields["password_hash"] = password_hash
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as db:
            cur = db.execute(f"UPDATE people SET {sets} WHERE name = ?",
                             [*fields.values(), name])
            if cur.rowcount == 0:
                return False
            if teams is not None:
                self._set_team_roles(name, teams)
        return True

    def person(self, name: str) -> Person | None:
        row = self._db.execute(f"SELECT {_PERSON_COLUMNS} FROM people WHERE name = ?",
                               (name,)).fetchone()
        return self._person(row) if row else None

    def people(self) -> list[Person]:
        return [self._person(r) for r in self._db.execute(
            f"SELECT {_PERSON_COLUMNS} FROM people ORDER BY name")]

    def people_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM people").fetchone()[0])

    def _person(self, row: Sequence[Any]) -> Person:
        teams: dict[str, list[str]] = {}
        for team, role in self._db.execute(
                "SELECT team, role FROM team_roles WHERE person = ? ORDER BY team, role",
                (row[0],)):
            teams.setdefault(team, []).append(role)
        return Person(row[0], row[1], bool(row[2]), row[3], row[4], row[5],
                      {t: tuple(r) for t, r in teams.items()})

    def add_person_token(self, name: str, sha256: str, now: float) -> int:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO person_tokens (person, sha256, created_at) "
                             "VALUES (?, ?, ?) RETURNING id", (name, sha256, now))
            return int(cur.fetchone()[0])

    def revoke_person_tokens(self, name: str, now: float) -> int:
        with self.transaction() as db:
            cur = db.execute("UPDATE person_tokens SET revoked_at = ? WHERE person = ? "
                             "AND revoked_at IS NULL", (now, name))
            return cur.rowcount

    def person_token(self, sha256: str) -> tuple[int, str, str] | None:
        """(token id, person, stored digest) of a live token with this digest."""
        row = self._db.execute("SELECT id, person, sha256 FROM person_tokens "
                               "WHERE sha256 = ? AND revoked_at IS NULL", (sha256,)).fetchone()
        return (int(row[0]), str(row[1]), str(row[2])) if row else None

    def person_tokens(self, name: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT id, created_at, revoked_at FROM person_tokens "
                                "WHERE person = ? ORDER BY id", (name,))
        return [{"id": i, "created_at": c, "revoked_at": r} for i, c, r in rows]

    def record_audit(self, entry: AuditEntry) -> None:
        self._write_one("INSERT INTO audit (at, person, credential, action, target, teams, "
                        "status) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (entry.at, entry.person, entry.credential, entry.action, entry.target,
                         json.dumps(list(entry.teams)), entry.status))

    def audit(self, *, person: str | None = None, teams: Sequence[str] | None = None,
              since: float | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Audit entries, oldest first; `teams` keeps the entries touching any of them."""
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if person is not None:
            where.append("person = ?")
            args.append(person)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if teams is not None:
            # `teams` holds a JSON list of ids; ids are [a-z0-9_.-], so the quoted
            # id cannot match across two entries.
            where.append("(" + " OR ".join("teams LIKE ?" for _ in teams) + ")" if teams
                         else "0 = 1")
            args += [f'%"{t}"%' for t in teams]
        rows = self._db.execute(
            "SELECT at, person, credential, action, target, teams, status FROM audit "
            f"WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", [*args, limit])
        return [AuditEntry(at, p, c, a, t, tuple(json.loads(ts)), s)
                for at, p, c, a, t, ts, s in rows]

    # -- console sessions ---------------------------------------------------

    def add_console_session(self, digest: str, person: str, csrf: str, now: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO console_sessions (digest, person, csrf, created_at, "
                       "seen_at) VALUES (?, ?, ?, ?, ?)", (digest, person, csrf, now, now))

    def console_session(self, digest: str) -> tuple[str, str, float] | None:
        """(person, CSRF token, last seen) of the session with this token digest."""
        row = self._db.execute("SELECT person, csrf, seen_at FROM console_sessions "
                               "WHERE digest = ?", (digest,)).fetchone()
        return (str(row[0]), str(row[1]), float(row[2])) if row else None

    def touch_console_session(self, digest: str, now: float) -> None:
        with self.transaction(durable=False) as db:
            db.execute("UPDATE console_sessions SET seen_at = ? WHERE digest = ?",
                       (now, digest))

    def end_console_session(self, digest: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM console_sessions WHERE digest = ?", (digest,))

    def end_idle_console_sessions(self, seen_before: float) -> int:
        with self.transaction() as db:
            return db.execute("DELETE FROM console_sessions WHERE seen_at < ?",
                              (seen_before,)).rowcount

    def change_marks(self) -> tuple[int, int]:
        """The newest timeline entry and post event: the console's pages are stale
        once either moves."""
        row = self._db.execute("SELECT (SELECT MAX(id) FROM timeline), "
                               "(SELECT MAX(id) FROM post_events)").fetchone()
        return int(row[0] or 0), int(row[1] or 0)
