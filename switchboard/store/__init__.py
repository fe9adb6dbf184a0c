"""All durable state, behind one class per backend (SQLite by default).

Every other module talks to a store, never to SQL. The parts: `core` (what
the backends share: the SQL connection's shape, transactions, failures, the
state_dir lock), `migrations` (the schema, for both backends), `posts`,
`listings`, `incidents` and `people` (the queries of each noun, written once),
`sqlite` (SQLite's core and the assembled `Store`) and `postgres`
(`PostgresStore`, for daemons that share one PostgreSQL database).
"""

from switchboard.store.core import (
    BUSY_TIMEOUT_MS,
    FEED_EVENT_RETENTION,
    INTERRUPTED_SEND,
    LOCK_NAME,
    POST_STATES,
    REQUEST_KEY_DAYS,
    Claim,
    KeyedRequest,
    RequestKey,
    StateLock,
    StoreError,
    StoreUnavailable,
    fingerprint,
    row_key,
)
from switchboard.store.migrations import MIGRATIONS
from switchboard.store.sqlite import Store

__all__ = ["BUSY_TIMEOUT_MS", "FEED_EVENT_RETENTION", "INTERRUPTED_SEND", "LOCK_NAME",
           "MIGRATIONS", "POST_STATES", "REQUEST_KEY_DAYS", "Claim", "KeyedRequest",
           "RequestKey", "StateLock", "Store", "StoreError", "StoreUnavailable", "fingerprint",
           "row_key"]
