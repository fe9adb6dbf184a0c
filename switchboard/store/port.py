"""The Store port: every store operation, awaitable; no SQL ever runs on the loop.

A backend is a synchronous class (`SqliteStore`; a shared-database backend
has the same methods). This facade runs each call of it on the store's own
threads and the event loop awaits the answer, so a slow fsync, a write lock
held by another process or a database that takes milliseconds never stalls
the loop: the API, the health checks and the channel workers go on.

- writes, and the reads that must see them at once, run on the writer
  threads: on SQLite ONE, in the order they were asked (a claim and a
  declaration never interleave); on PostgreSQL several side by side, ordered
  by the server's row locks as two daemons' writes are. Either way a caller
  who awaited a write reads it back.
- listings (pages over a million posts) run on a reader thread with their
  own connection, so a long page never holds up a declaration.

The zero-leak argument does not rest on the loop any more: a declaration is
acknowledged only after its holds are committed, the claim `queued ->
sending` checks the holds inside its own transaction, and the in-memory gate
(asked again at the true start of each send) is updated before the answer.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from switchboard.store.channels import ChannelRecords
from switchboard.store.core import StoreUnavailable
from switchboard.store.sqlite import SqliteStore

P = ParamSpec("P")
R = TypeVar("R")
Call = Callable[Concatenate["Store", P], Coroutine[Any, Any, R]]


def _on(pool: str, method: Callable[Concatenate[SqliteStore, P], R]) -> Call[P, R]:
    name = method.__name__

    async def call(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        executor = {"writer": self._writer, "reader": self._reader, "lease": self._lease}[pool]
        # Looked up on the backend itself: each backend has its own lifecycle
        # (open, close, health) besides the queries they share.
        bound = functools.partial(getattr(self.backend, name), *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(executor, bound)

    functools.update_wrapper(call, method)
    return call


def written(method: Callable[Concatenate[SqliteStore, P], R]) -> Call[P, R]:
    """A call run on the writer thread (writes, and reads of what was just written)."""
    return _on("writer", method)


def leased(method: Callable[Concatenate[SqliteStore, P], R]) -> Call[P, R]:
    """A call on the lease's own thread: a renewal never waits behind a long write."""
    return _on("lease", method)


def listed(method: Callable[Concatenate[SqliteStore, P], R]) -> Call[P, R]:
    """A call run on the reader thread (listings, on their own connection)."""
    return _on("reader", method)


class Store:
    """The async store: one backend, a writer thread and a reader thread."""

    def __init__(self, backend: ChannelRecords) -> None:
        self.backend = backend
        self._writer = ThreadPoolExecutor(max_workers=backend.WRITERS,
                                          thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")
        # SQLite's one connection is the writer's alone; a pool gives the lease its own.
        self._lease = (self._writer if isinstance(backend, SqliteStore) else
                       ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-lease"))
        self._install_id: str | None = None

    @classmethod
    async def open(cls, path: Path) -> Store:
        """The SQLite store at `path`, opened (integrity check and migrations
        included) off the loop."""
        return await cls.over(await asyncio.to_thread(SqliteStore.open, path))

    @classmethod
    async def over(cls, backend: ChannelRecords) -> Store:
        """The port over a backend already open (PostgresStore, say)."""
        store = cls(backend)
        store._install_id = await store._read_install_id()
        return store

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self.backend.close)
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        self._lease.shutdown(wait=True)

    @property
    def failure(self) -> StoreUnavailable | None:
        """Set for good once the database file is no longer the one written."""
        return self.backend.failure

    def install_id(self) -> str:
        """This store's random id (made at its first open; see SqliteStore.install_id)."""
        assert self._install_id is not None, "the store is opened with Store.open"
        return self._install_id

    _read_install_id = written(SqliteStore.install_id)

    # -- lifecycle and health
    start_checkpoints = written(SqliteStore.start_checkpoints)
    check_file = written(SqliteStore.check_file)
    probe = written(SqliteStore.probe)
    integrity_ok = written(SqliteStore.integrity_ok)
    schema_version = written(SqliteStore.schema_version)
    recover = written(SqliteStore.recover)

    # -- posts
    add_posts = written(SqliteStore.add_posts)
    import_posts = written(SqliteStore.import_posts)
    keyed = written(SqliteStore.keyed)
    is_immediate = written(SqliteStore.is_immediate)
    post = written(SqliteStore.post)
    posts = written(SqliteStore.posts)
    post_history = written(SqliteStore.post_history)
    update_post_fields = written(SqliteStore.update_post_fields)
    next_due = written(SqliteStore.next_due)
    count_by_state = written(SqliteStore.count_by_state)
    mark_missed = written(SqliteStore.mark_missed)
    claim_due = written(SqliteStore.claim_due)
    claim_due_held = written(SqliteStore.claim_due_held)
    claim_sending = written(SqliteStore.claim_sending)
    transition = written(SqliteStore.transition)
    reschedule_held = written(SqliteStore.reschedule_held)
    record_sends = written(SqliteStore.record_sends)
    published_since = written(SqliteStore.published_since)

    # -- listings
    page_posts = listed(SqliteStore.page_posts)
    list_posts = listed(SqliteStore.list_posts)
    count_posts = listed(SqliteStore.count_posts)
    page_incidents = listed(SqliteStore.page_incidents)

    # -- incidents
    declare = written(SqliteStore.declare)
    declared = written(SqliteStore.declared)
    resolve = written(SqliteStore.resolve)
    void = written(SqliteStore.void)
    release_holds = written(SqliteStore.release_holds)
    move_held = written(SqliteStore.move_held)
    finish_cooldown = written(SqliteStore.finish_cooldown)
    holds = written(SqliteStore.holds)
    holds_by_incident = written(SqliteStore.holds_by_incident)
    holds_of = written(SqliteStore.holds_of)
    incident = written(SqliteStore.incident)
    incidents = written(SqliteStore.incidents)
    incidents_awaiting_release = written(SqliteStore.incidents_awaiting_release)
    set_incident_fields = written(SqliteStore.set_incident_fields)
    log = written(SqliteStore.log)
    note_updates = written(SqliteStore.note_updates)
    timeline = written(SqliteStore.timeline)
    suppress_posts = written(SqliteStore.suppress_posts)
    claim_step = written(SqliteStore.claim_step)
    finish_step = written(SqliteStore.finish_step)
    step_runs = written(SqliteStore.step_runs)
    event_seen = written(SqliteStore.event_seen)
    remember_event = written(SqliteStore.remember_event)
    last_resolved_at = written(SqliteStore.last_resolved_at)

    # -- people
    add_person = written(SqliteStore.add_person)
    update_person = written(SqliteStore.update_person)
    person = written(SqliteStore.person)
    people = written(SqliteStore.people)
    people_count = written(SqliteStore.people_count)
    add_person_token = written(SqliteStore.add_person_token)
    revoke_person_tokens = written(SqliteStore.revoke_person_tokens)
    person_token = written(SqliteStore.person_token)
    person_tokens = written(SqliteStore.person_tokens)
    record_audit = written(SqliteStore.record_audit)
    audit = written(SqliteStore.audit)
    add_console_session = written(SqliteStore.add_console_session)
    console_session = written(SqliteStore.console_session)
    touch_console_session = written(SqliteStore.touch_console_session)
    end_console_session = written(SqliteStore.end_console_session)
    end_idle_console_sessions = written(SqliteStore.end_idle_console_sessions)
    change_marks = written(SqliteStore.change_marks)

    # -- the leader lease
    db_time = leased(SqliteStore.db_time)
    lease = leased(SqliteStore.lease)
    take_lease = leased(SqliteStore.take_lease)
    release_lease = leased(SqliteStore.release_lease)
    see_holds = leased(SqliteStore.see_holds)
    notify = leased(SqliteStore.notify)
    notify_if_leading = leased(SqliteStore.notify_if_leading)

    # -- channels
    save_channel_errors = written(SqliteStore.save_channel_errors)
    channel_errors = written(SqliteStore.channel_errors)
