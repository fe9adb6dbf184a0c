"""The SQLite store, assembled from its parts (one per noun it keeps)."""

from __future__ import annotations

from switchboard.store.channels import ChannelRecords


class SqliteStore(ChannelRecords):
    """All durable state of one daemon in one SQLite file (WAL, synchronous=FULL).

    Each part adds the queries of one noun over the connection of `StoreCore`:
    posts (`PostRecords`), listings, incidents, people, channels."""
