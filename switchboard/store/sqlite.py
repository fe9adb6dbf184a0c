"""The SQLite store, assembled from its parts (one per noun it keeps)."""

from __future__ import annotations

from switchboard.store.core import SqliteCore
from switchboard.store.people import PeopleRecords


class Store(SqliteCore, PeopleRecords):
    """All durable state of one daemon in one SQLite file (WAL, synchronous=FULL).

    Each part adds the queries of one noun over the connection of `SqliteCore`:
    posts (`PostRecords`), listings, incidents, people."""
