"""All durable state, behind one class (SQLite in WAL mode; see store/core.py).

Every other module talks to `Store`, never to SQL, so that a shared-database
backend can replace this one later. The parts: `core` (connection, lifecycle,
transactions, the state_dir lock), `migrations` (the schema), `posts`,
`listings`, `incidents` and `people` (the queries of each noun), `sqlite`
(the assembled synchronous backend, `SqliteStore`) and `port` (`Store`, the
async interface the rest of switchboard awaits: the backend's calls run on
the store's own threads, never on the event loop).
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
    KeyTaken,
    RequestKey,
    StateLock,
    StoreError,
    StoreUnavailable,
    fingerprint,
    row_key,
)
from switchboard.store.migrations import MIGRATIONS
from switchboard.store.port import Store
from switchboard.store.sqlite import SqliteStore

__all__ = [
    "BUSY_TIMEOUT_MS",
    "FEED_EVENT_RETENTION",
    "INTERRUPTED_SEND",
    "LOCK_NAME",
    "MIGRATIONS",
    "POST_STATES",
    "REQUEST_KEY_DAYS",
    "Claim",
    "KeyTaken",
    "KeyedRequest",
    "RequestKey",
    "SqliteStore",
    "StateLock",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "fingerprint",
    "row_key",
]
