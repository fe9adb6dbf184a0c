"""What only the PostgreSQL backend has: its SQL translation, its migrations on a
shared database, and a server that goes away, comes back or turns read-only."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from switchboard.model import NewPost
from switchboard.store import (
    BUSY_TIMEOUT_MS,
    DECLARATION_WAIT_MS,
    MIGRATIONS,
    Fence,
    Fenced,
    SqliteStore,
    StoreError,
    StoreUnavailable,
)
from switchboard.store.pgdialect import Inserts, translate
from switchboard.store.postgres import PostgresStore
from tests.postgres import PostgresServer, free_port, own_postgres_server
from tests.store.conftest import wait_until_waiting_for_a_lock

__all__ = ["own_postgres_server"]


def test_the_sqlite_dialect_is_translated_for_postgresql() -> None:
    assert translate("SELECT id FROM posts INDEXED BY posts_pending WHERE +state = ? "
                     "AND text LIKE '%x' AND (due_at, id) > (?, ?) AND n + 1 > 0") == (
        "SELECT id FROM posts WHERE state = %s AND text LIKE '%%x' "
        "AND (due_at, id) > (%s, %s) AND n + 1 > 0")
    assert translate("SELECT value, ? FROM json_each(?)") == (
        "SELECT value, %s FROM json_array_elements_text(%s::json)")


def _sqlite_schema(path: Path) -> dict[str, list[str]]:
    SqliteStore.open(path).close()
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in tables}


def test_both_backends_migrate_to_the_same_tables_and_columns(tmp_path: Path,
                                                             postgres_dsn: str) -> None:
    store = PostgresStore.open(postgres_dsn)
    with store._reading() as db:
        rows = db.execute("SELECT table_name, column_name, data_type FROM "
                          "information_schema.columns WHERE table_schema = 'public' "
                          "AND table_name <> 'schema_version' "
                          "ORDER BY table_name, ordinal_position").fetchall()
    store.close()
    postgres: dict[str, list[str]] = {}
    for table, column, _ in rows:
        postgres.setdefault(table, []).append(column)
    assert postgres == _sqlite_schema(tmp_path / "s.db")
    types = {(t, c): kind for t, c, kind in rows}
    # SQLite's REAL is 8 bytes: so must the times be here.
    assert types["posts", "due_at"] == types["audit", "at"] == "double precision"
    assert types["posts", "id"] == types["incidents", "held_done"] == "bigint"


def test_two_daemons_opening_a_new_database_together_migrate_it_once(
        postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    try:
        dsn = postgres_server.dsn(name)
        opened: list[PostgresStore] = []
        errors: list[BaseException] = []
        start = threading.Barrier(3)

        def open_one() -> None:
            start.wait()
            try:
                opened.append(PostgresStore.open(dsn))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(opened) == 3
        assert {s.schema_version() for s in opened} == {len(MIGRATIONS)}
        assert len({s.install_id() for s in opened}) == 1
        with opened[0]._reading() as db:
            assert db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1
        for s in opened:
            s.close()
    finally:
        postgres_server.drop_database(name)


def test_a_database_from_a_newer_switchboard_is_refused(postgres_dsn: str) -> None:
    store = PostgresStore.open(postgres_dsn)
    with store.transaction() as db:
        db.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS) + 1,))
    store.close()
    with pytest.raises(StoreError, match="newer than this switchboard"):
        PostgresStore.open(postgres_dsn)


def test_a_server_nobody_listens_for_is_refused_at_start_naming_it() -> None:
    port = free_port()
    with pytest.raises(StoreError, match=f"cannot open store 127.0.0.1:{port}/sb"):
        PostgresStore.open(f"host=127.0.0.1 port={port} dbname=sb user=x connect_timeout=1",
                           timeout=0.5)


def test_a_connection_string_that_is_not_one_is_refused_clearly() -> None:
    with pytest.raises(StoreError, match="connection string is not valid"):
        PostgresStore.open("host=127.0.0.1 port")


@pytest.fixture
def own_store(own_postgres_server: PostgresServer) -> Iterator[PostgresStore]:
    name = own_postgres_server.create_database()
    store = PostgresStore.open(own_postgres_server.dsn(name), timeout=1.0)
    yield store
    store.close()
    own_postgres_server.drop_database(name)


def _post(store: PostgresStore, text: str) -> list[int]:
    return store.add_posts([NewPost("outbox", "marketing", text, 10.0)], "m", 1.0)


def test_writes_while_the_server_is_down_answer_unreachable_then_recover_by_themselves(
        own_postgres_server: PostgresServer, own_store: PostgresStore) -> None:
    _post(own_store, "before")
    own_postgres_server.stop("fast")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            _post(own_store, "while down")
        assert caught.value.reason == "unreachable"
        assert f"127.0.0.1:{own_postgres_server.port}" in caught.value.message
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            own_store.post(1)
    finally:
        own_postgres_server.start(same_port=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            _post(own_store, "after")
            break
        except StoreUnavailable as exc:
            assert exc.reason == "unreachable" and time.monotonic() < deadline
    assert [p.text for p in own_store.list_posts()] == ["before", "after"]


def _set_read_only(server: PostgresServer, on: bool) -> None:
    server.admin(f"ALTER SYSTEM SET default_transaction_read_only = {'on' if on else 'off'}")
    server.admin("SELECT pg_reload_conf()")


def test_a_read_only_server_answers_read_only_and_keeps_answering_reads(
        own_postgres_server: PostgresServer, own_store: PostgresStore) -> None:
    [post] = _post(own_store, "kept")
    _set_read_only(own_postgres_server, True)
    try:
        # The reload reaches the server's sessions a moment later.
        deadline = time.monotonic() + 5
        with pytest.raises(StoreUnavailable) as caught:
            while time.monotonic() < deadline:
                _post(own_store, "early")
                time.sleep(0.02)
        assert caught.value.reason == "read_only"
        assert "read-only" in caught.value.message
        assert own_store.post(post) is not None
    finally:
        _set_read_only(own_postgres_server, False)
    deadline = time.monotonic() + 5
    while True:
        try:
            _post(own_store, "after")
            break
        except StoreUnavailable as exc:
            assert exc.reason == "read_only" and time.monotonic() < deadline
            time.sleep(0.02)
    texts = [p.text for p in own_store.list_posts()]
    assert texts[0] == "kept" and texts[-1] == "after"


def test_connections_cut_by_the_server_are_replaced_without_an_error(
        own_store: PostgresStore, own_postgres_server: PostgresServer) -> None:
    _post(own_store, "one")
    with psycopg.connect(own_postgres_server.dsn(), autocommit=True) as admin:
        cut = admin.execute(b"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            b"WHERE backend_type = 'client backend' "
                            b"AND pid <> pg_backend_pid()").fetchall()
    assert cut
    _post(own_store, "two")
    assert [p.text for p in own_store.list_posts()] == ["one", "two"]


def test_the_postgresql_backend_answers_every_call_the_sqlite_one_does() -> None:
    import inspect

    for name in (n for n in dir(SqliteStore) if not n.startswith("_") and n != "open"):
        ours = getattr(PostgresStore, name, None)
        assert ours is not None, f"PostgresStore has no {name}"
        if name != "transaction" and callable(ours):
            assert inspect.signature(ours) == inspect.signature(getattr(SqliteStore, name)), name


def _lock_the_lease_and_hang(dsn: str) -> tuple[threading.Thread, list[BaseException], int]:
    """A claim of the leader stuck in its transaction without being idle in it (its
    daemon frozen while the server writes it an answer): the lease row locked as
    every claim locks it, then a statement that does not end. The server's
    idle-in-transaction timeout never ends such a session."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("BEGIN")
    conn.execute("SELECT holder FROM leader_lease WHERE name = 'leader' FOR KEY SHARE")
    pid = conn.info.backend_pid
    errors: list[BaseException] = []

    def hang() -> None:
        try:
            conn.execute("SELECT pg_sleep(60)")
        except psycopg.Error as exc:
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=hang, daemon=True)
    thread.start()
    return thread, errors, pid


def _lapse_the_lease(dsn: str) -> None:
    """The lease's end moved to the database's now: the database clock is the one
    a lease is measured by, and this is how a test makes it pass."""
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("UPDATE leader_lease SET expires_at = extract(epoch FROM clock_timestamp())")


def _backend_alive(dsn: str, pid: int) -> bool:
    with psycopg.connect(dsn, autocommit=True) as db:
        return db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                          (pid,)).fetchone() is not None


def test_a_standby_takes_a_lapsed_lease_whose_old_claim_is_stuck_holding_its_row(
        postgres_dsn: str) -> None:
    old, standby = PostgresStore.open(postgres_dsn), PostgresStore.open(postgres_dsn)
    try:
        assert old.take_lease("old", 30).held_by("old")
        thread, errors, pid = _lock_the_lease_and_hang(postgres_dsn)
        # While the lease is live its holder's transactions are left alone.
        assert standby.take_lease("standby", 30).held_by("old")
        assert _backend_alive(postgres_dsn, pid)
        _lapse_the_lease(postgres_dsn)
        taken = standby.take_lease("standby", 30)
        assert taken.held_by("standby") and taken.epoch == 2
        thread.join(timeout=10)
        assert not thread.is_alive() and errors, "the stuck claim's session was ended"
        assert not _backend_alive(postgres_dsn, pid)
        now = time.time()
        old.add_posts([NewPost("outbox", "marketing", "offer", now - 1)], "test", now)
        with pytest.raises(Fenced):  # and the old holder claims nothing
            old.claim_due_held(now, 10, Fence("old", 1))
    finally:
        old.close()
        standby.close()


def test_a_transaction_begun_after_the_lease_lapsed_is_never_ended_by_a_takeover(
        postgres_dsn: str) -> None:
    """A competing standby's takeover (begun after the lapse) waits its turn; only
    what the old leader began before its lease lapsed is stale."""
    one, two = PostgresStore.open(postgres_dsn), PostgresStore.open(postgres_dsn)
    try:
        one.take_lease("one", 30)
        _lapse_the_lease(postgres_dsn)
        thread, errors, pid = _lock_the_lease_and_hang(postgres_dsn)
        with pytest.raises(StoreUnavailable) as caught:
            two.take_lease("two", 30)
        assert caught.value.reason == "busy"
        assert _backend_alive(postgres_dsn, pid) and not errors
        with psycopg.connect(postgres_dsn, autocommit=True) as db:
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        thread.join(timeout=10)
        assert two.take_lease("two", 30).held_by("two")
    finally:
        one.close()
        two.close()


def test_a_many_row_insert_is_one_statement_over_arrays_and_anything_else_is_not() -> None:
    inserts = Inserts({("post_events", "post_id"): "bigint", ("post_events", "at"):
                       "double precision", ("post_events", "to_state"): "text",
                       ("post_events", "actor"): "text", ("t", "j"): "jsonb"})
    plan = inserts.plan("INSERT INTO post_events (post_id, at, from_state, to_state, actor, "
                        "reason) VALUES (?, ?, NULL, ?, ?, 'created')")
    assert plan is not None
    assert plan.sql == (
        "INSERT INTO post_events (post_id, at, from_state, to_state, actor, reason) SELECT "
        "u.v0, u.v1, NULL, u.v2, u.v3, 'created' FROM unnest(%b::bigint[], "
        "%b::double precision[], %b::text[], %b::text[]) AS u(v0, v1, v2, v3)")
    assert plan.arrays([[1, 2, "sent", "me"], [3, None, "held", "you"]]) == [
        [1, 3], [2.0, None], ["sent", "held"], ["me", "you"]]
    assert inserts.plan("INSERT INTO team_roles (person, team, role) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING") is None
    assert inserts.plan("INSERT INTO t (j) VALUES (?)") is None  # a type it does not cast
    assert inserts.plan("INSERT INTO post_events (post_id) VALUES (lower(?))") is None


def test_many_rows_are_inserted_in_one_statement_each_one_stored(
        postgres_dsn: str) -> None:
    store = PostgresStore.open(postgres_dsn)
    try:
        now = time.time()
        ids = store.add_posts([NewPost("outbox", "marketing", f"offer {i}", now + 60 + i)
                               for i in range(2_345)], "test", now)
        assert len(ids) == len(set(ids)) == 2_345
        with store._reading() as db:
            stored = db.execute("SELECT count(*), count(DISTINCT text) FROM posts").fetchone()
            events = db.execute("SELECT count(*) FROM post_events WHERE reason = 'created'"
                                ).fetchone()
        assert tuple(stored) == (2_345, 2_345) and events[0] == 2_345
        assert store.post(ids[-1]).text == "offer 2344"
    finally:
        store.close()


def test_confirming_the_holds_never_waits_on_a_locked_lease_row(postgres_dsn: str) -> None:
    """The leader's confirmation is committed by itself (no lock_timeout): against
    a takeover holding the row it answers busy at once instead of hanging."""
    store = PostgresStore.open(postgres_dsn)
    try:
        store.take_lease("a", 30)
        at = store.db_time()
        with psycopg.connect(postgres_dsn) as takeover:  # a transaction, left open
            takeover.execute("SELECT 1 FROM leader_lease FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                store.see_holds(Fence("a", 1), at, ("switchboard", f"seen {at!r}"))
            assert caught.value.reason == "busy" and time.monotonic() - started < 2
        assert store.see_holds(Fence("a", 1), at, ("switchboard", f"seen {at!r}"))
        assert store.lease().holds_seen == at
    finally:
        store.close()


def test_a_stuck_session_of_another_role_is_left_alone_and_the_takeover_says_why(
        postgres_dsn: str) -> None:
    """Ending another role's session needs that role (or pg_signal_backend): the
    standby logs what to grant and stays standby rather than failing."""
    dbname = psycopg.conninfo.conninfo_to_dict(postgres_dsn)["dbname"]
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("DO $$ BEGIN CREATE ROLE sb_daemon LOGIN; "
                      "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        admin.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO sb_daemon")
        admin.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO sb_daemon")
        # It sees every session's start (a monitoring grant), but may not end them.
        admin.execute("GRANT pg_read_all_stats TO sb_daemon")
    own = postgres_dsn.replace("user=postgres", "user=sb_daemon")
    assert dbname in own and "sb_daemon" in own
    old, standby = PostgresStore.open(postgres_dsn), PostgresStore.open(own)
    try:
        old.take_lease("old", 30)
        thread, errors, pid = _lock_the_lease_and_hang(postgres_dsn)  # a superuser's
        _lapse_the_lease(postgres_dsn)
        with capture_logs() as logs, pytest.raises(StoreUnavailable) as caught:
            standby.take_lease("standby", 30)
        assert caught.value.reason == "busy"
        assert _backend_alive(postgres_dsn, pid) and not errors
        assert [e["pid"] for e in logs if e["event"] == "stale_lease_locker_not_ended"] == [pid]
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        thread.join(timeout=10)
        old.close()
        standby.close()


def _declare_during_a_claim(postgres_dsn: str, claim_lasts: float
                            ) -> tuple[PostgresStore, int | str, float]:
    """A declaration on one daemon while the other's claim holds the holds' lock for
    `claim_lasts` seconds: the declaration's id (or why it was refused), and how
    long it waited."""
    one, two = PostgresStore.open(postgres_dsn), PostgresStore.open(postgres_dsn)
    [post] = _post(one, "x")
    results: list[int | str] = []
    waited: list[float] = []

    def declaring() -> None:
        started = time.monotonic()
        try:
            results.append(one.declare(
                title="outage", runbook="default", severity="major", channels=["outbox"],
                suppress=["marketing"], reason=None, source="api", signal_key=None,
                signal=None, actor="ops", now=10.5))
        except StoreUnavailable as exc:
            results.append(exc.reason)
        waited.append(time.monotonic() - started)

    try:
        with two.transaction() as db:
            two._lock_holds()  # as a claim does, then its write
            db.execute("UPDATE posts SET state = 'queued' WHERE id = ?", (post,))
            declarer = threading.Thread(target=declaring)
            declarer.start()
            wait_until_waiting_for_a_lock(two)
            time.sleep(claim_lasts)
        declarer.join()
    finally:
        two.close()
    return one, results[0], waited[0]


def test_a_declaration_waits_out_a_claim_longer_than_any_other_write_would(
        postgres_dsn: str) -> None:
    # A claim committing on a slow disk, or several side by side, holds the lock
    # past the ordinary wait: the declaration still gets through, after them.
    one, incident, _ = _declare_during_a_claim(postgres_dsn, 2 * BUSY_TIMEOUT_MS / 1000)
    try:
        assert isinstance(incident, int)
        assert [h.incident_id for h in one.holds()] == [incident]
    finally:
        one.close()


def test_a_declaration_behind_a_lock_held_too_long_answers_busy_and_records_nothing(
        postgres_dsn: str) -> None:
    limit = DECLARATION_WAIT_MS / 1000
    one, result, waited = _declare_during_a_claim(postgres_dsn, limit + 0.5)
    try:
        assert result == "busy"
        assert limit <= waited < limit + 0.5, "it did not give up at its limit"
        assert one.holds() == [] and one.incidents() == []
    finally:
        one.close()


def test_values_of_every_shape_come_back_as_they_went_in_through_the_arrays(
        postgres_dsn: str) -> None:
    # The arrays go in binary: nothing is quoted, so nothing can be mis-quoted.
    texts = ["", "NULL", "a,b", "{x}", '"quoted"', "back\\slash", "it's", " spaced ",
             "\u00fcn\u00efcode \U0001f686", "line\nbreak", "tab\there"]
    store = PostgresStore.open(postgres_dsn)
    try:
        now = time.time()
        links = [None] * len(texts)  # a column of NULLs only, as in most bulk schedules
        ids = store.add_posts([NewPost("outbox", "marketing", t, now + 60 + i, link=link)
                               for i, (t, link) in enumerate(zip(texts, links, strict=True))],
                              "test", now)
        mixed = store.add_posts([NewPost("outbox", "marketing", "linked", now + 1e6,
                                         link="https://e.x/{a,b}"),
                                 NewPost("outbox", "marketing", "bare", 2.0 ** 40)], "t", now)
        assert [store.post(i).text for i in ids] == texts
        assert [store.post(i).link for i in ids] == links
        assert [(p.link, p.due_at) for p in store.posts(mixed)] == [
            ("https://e.x/{a,b}", now + 1e6), (None, 2.0 ** 40)]
    finally:
        store.close()
