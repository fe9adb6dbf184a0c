"""PostgreSQL's dialect of the noun parts' SQL: `?` placeholders and SQLite's
few spellings translated (`translate`), booleans kept as 0/1, and many-row
INSERTs as one statement over arrays (`Inserts`).
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

# The SQLite-only spellings the noun parts use, and PostgreSQL's for them.
_REWRITES = (
    # A JSON array's elements as rows (one declaration holds thousands of channels).
    (re.compile(r"json_each\(\?\)"), "json_array_elements_text(?::json)"),
    # Index hints: PostgreSQL's planner has statistics and needs none.
    (re.compile(r"\s*INDEXED BY \w+"), ""),
    # `+column` keeps SQLite off an index; PostgreSQL has no unary plus on text.
    (re.compile(r"(?<![\w)])\+(?=[A-Za-z_])"), ""),
    (re.compile(r"%"), "%%"),
    (re.compile(r"\?"), "%s"),
)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """The noun parts' SQL (SQLite's dialect, `?` placeholders) as PostgreSQL's."""
    for pattern, replacement in _REWRITES:
        sql = pattern.sub(replacement, sql)
    return sql


class _Rows:
    """A statement's rows, fetched at once: the connection goes back to the pool."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return list(self._rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


def _params(values: Sequence[Any]) -> list[Any]:
    # SQLite keeps booleans as 0/1 in INTEGER columns; so do we.
    return [int(v) if isinstance(v, bool) else v for v in values]


class PostgresConnection:
    """One psycopg connection, spoken to in the noun parts' dialect."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]], inserts: Inserts) -> None:
        self.conn, self.inserts = conn, inserts

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Rows:
        cur = self.conn.execute(translate(sql).encode(), _params(parameters))
        return _Rows(cur.fetchall() if cur.description else [], cur.rowcount)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> _Rows:
        batch = [_params(p) for p in parameters]
        if not batch:
            return _Rows([], 0)
        plan = self.inserts.plan(sql)
        if plan is not None:
            return _Rows([], self.conn.execute(plan.sql.encode(), plan.arrays(batch)).rowcount)
        # psycopg pipelines the rest (the UPDATEs of a run of sends or of a held-post
        # train, whose transactions lock only posts). Never a claim's: a daemon frozen
        # (SIGSTOP) inside a pipeline has not sent its Sync, so the server does not
        # count it idle in its transaction and never ends it, and the claim's locks
        # on the lease and the holds would keep every standby from taking over.
        with self.conn.cursor() as cur:
            cur.executemany(translate(sql).encode(), batch)
            return _Rows([], cur.rowcount)


# How a column's values are given to an array of its type (an array holds one
# type; `operator.index` refuses a float for an integer column, never rounds it).
_CASTS: dict[str, Callable[[Any], Any]] = {
    "bigint": operator.index, "integer": operator.index, "smallint": operator.index,
    "double precision": float, "real": float, "text": str}
_INSERT = re.compile(r"\s*INSERT INTO (\w+) \(([^()]*)\)\s*VALUES\s*\(([^()]*)\)\s*",
                     re.DOTALL)
_LITERAL = re.compile(r"NULL|'[^'%]*'|-?\d+(\.\d+)?")


@dataclass(frozen=True)
class Unnest:
    """A many-row INSERT as ONE statement over an array per parameter: short, so
    psycopg parses it once and the server plans it once however many rows (a
    bulk schedule's 5,000 posts); and one statement, never a pipeline."""

    sql: str
    casts: tuple[Callable[[Any], Any], ...]  # one per `?` of the row, in order

    def arrays(self, batch: list[list[Any]]) -> list[list[Any]]:
        return [[None if row[k] is None else cast(row[k]) for row in batch]
                for k, cast in enumerate(self.casts)]


class Inserts:
    """The noun parts' many-row INSERTs as `Unnest` plans, from the columns' types."""

    def __init__(self, types: dict[tuple[str, str], str]) -> None:
        self._types = types
        self._plans: dict[str, Unnest | None] = {}

    def plan(self, sql: str) -> Unnest | None:
        if sql not in self._plans:
            self._plans[sql] = self._make(sql)
        return self._plans[sql]

    def _make(self, sql: str) -> Unnest | None:
        """None for any other statement (ON CONFLICT, RETURNING, an expression)."""
        match = _INSERT.fullmatch(sql)
        if match is None:
            return None
        table = match.group(1)
        columns = [c.strip() for c in match.group(2).split(",")]
        items = [i.strip() for i in match.group(3).split(",")]
        if len(columns) != len(items):
            return None
        selected: list[str] = []
        arrays: list[str] = []
        casts: list[Callable[[Any], Any]] = []
        for column, item in zip(columns, items, strict=True):
            if item != "?":
                if not _LITERAL.fullmatch(item):
                    return None
                selected.append(item)
                continue
            kind = self._types.get((table, column), "")
            if kind not in _CASTS:
                return None
            selected.append(f"u.v{len(casts)}")
            # Sent in binary: a text array has each element quoted and escaped
            # in Python (24 ms for 5,000 short texts; 5 ms in binary).
            arrays.append(f"%b::{kind}[]")
            casts.append(_CASTS[kind])
        names = ", ".join(f"v{k}" for k in range(len(casts)))
        return Unnest(f"INSERT INTO {table} ({', '.join(columns)}) SELECT "
                      f"{', '.join(selected)} FROM unnest({', '.join(arrays)}) AS u({names})",
                      tuple(casts))
