"""All durable state, behind one class per backend (SQLite by default).

Every other module talks to `Store` (port.py), never to SQL: the async
interface the rest of switchboard awaits, whose backend's calls run on the
store's own threads, never on the event loop. The parts: `core` (what the
backends share: the SQL connection's shape, transactions, failures, the
state_dir lock), `migrations` (the schema, for both backends), `posts`,
`keys`, `listings`, `incidents`, `people` and `channels` (the queries of each
noun, written once), `sqlite` (SQLite's core and the assembled `SqliteStore`)
and `postgres` (`PostgresStore`, for daemons that share one PostgreSQL
database).
"""

from switchboard.store.core import (
    BUSY_TIMEOUT_MS,
    DECLARATION_WAIT_MS,
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
from switchboard.store.lease import Fence, Fenced, Lease
from switchboard.store.migrations import MIGRATIONS
from switchboard.store.port import Store
from switchboard.store.sqlite import SqliteStore

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DECLARATION_WAIT_MS",
    "FEED_EVENT_RETENTION",
    "INTERRUPTED_SEND",
    "LOCK_NAME",
    "MIGRATIONS",
    "POST_STATES",
    "REQUEST_KEY_DAYS",
    "Claim",
    "Fence",
    "Fenced",
    "KeyTaken",
    "KeyedRequest",
    "Lease",
    "RequestKey",
    "SqliteStore",
    "StateLock",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "fingerprint",
    "row_key",
]
