"""The schema, as forward migrations: one string per version, applied in order.

Append new ones at the end; never edit one that has shipped."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema
    """
    CREATE TABLE posts (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        link TEXT,
        state TEXT NOT NULL,
        due_at REAL NOT NULL,
        expires_at REAL,
        incident_id INTEGER,
        remote_id TEXT,
        error TEXT,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        published_at REAL,
        updated_at REAL NOT NULL
    );
    -- Partial index: only pending posts, so a million published ones cost nothing here.
    CREATE INDEX posts_pending ON posts(due_at) WHERE state = 'scheduled';
    CREATE INDEX posts_state_channel ON posts(state, channel);
    CREATE INDEX posts_incident ON posts(incident_id) WHERE incident_id IS NOT NULL;
    CREATE INDEX posts_published ON posts(channel, published_at) WHERE state = 'published';
    CREATE TABLE post_events (
        id INTEGER PRIMARY KEY,
        post_id INTEGER NOT NULL,
        at REAL NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX post_events_post ON post_events(post_id);
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        runbook TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        channels TEXT NOT NULL,
        suppress TEXT NOT NULL,
        reason TEXT,
        source TEXT NOT NULL,
        signal_key TEXT,
        signal TEXT,
        declared_at REAL NOT NULL,
        declared_by TEXT NOT NULL,
        resolved_at REAL,
        resolved_by TEXT,
        resolve_note TEXT,
        cooldown_until REAL,
        held_done INTEGER NOT NULL DEFAULT 0,
        last_operational_at REAL,
        auto_resolve_at REAL
    );
    CREATE UNIQUE INDEX incidents_active_signal ON incidents(signal_key)
        WHERE state = 'active' AND signal_key IS NOT NULL;
    CREATE TABLE timeline (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL,
        at REAL NOT NULL,
        event TEXT NOT NULL,
        actor TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX timeline_incident ON timeline(incident_id);
    CREATE TABLE channel_control (
        channel TEXT NOT NULL,
        incident_id INTEGER NOT NULL,
        until REAL,
        PRIMARY KEY (channel, incident_id)
    );
    CREATE TABLE step_runs (
        incident_id INTEGER NOT NULL,
        step TEXT NOT NULL,
        occurrence INTEGER NOT NULL,
        at REAL NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (incident_id, step, occurrence)
    );
    """,
    # 2: feed events already taken (PagerDuty event ids), so a replay is recognised
    """
    CREATE TABLE feed_events (
        feed TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seen_at REAL NOT NULL,
        PRIMARY KEY (feed, event_id)
    );
    CREATE INDEX feed_events_seen_at ON feed_events (seen_at);
    CREATE INDEX incidents_signal_key ON incidents (signal_key, resolved_at);
    """,
    # 3: facts about this store itself, such as its install id
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('install_id', lower(hex(randomblob(8))));
    """,
    # 4: keyset paging of the post listings (design §7.8): each state's posts in
    # due order, overall and per channel, so any page is one index range.
    """
    CREATE INDEX posts_listing ON posts(state, due_at);
    CREATE INDEX posts_channel_listing ON posts(channel, state, due_at)
    """,
    # 5: idempotency keys of API requests, immediate sends, import row keys
    """
    CREATE TABLE request_keys (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        kind TEXT NOT NULL,
        refs TEXT NOT NULL,
        status INTEGER NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE INDEX request_keys_age ON request_keys(created_at);
    CREATE TABLE immediate_sends (
        post_id INTEGER PRIMARY KEY
    );
    CREATE TABLE post_keys (
        key TEXT PRIMARY KEY,
        post_id INTEGER NOT NULL
    );
    """,
    # 6: people, their personal tokens and team roles, and the audit of writes
    """
    CREATE TABLE people (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        password_hash TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE person_tokens (
        id INTEGER PRIMARY KEY,
        person TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX person_tokens_person ON person_tokens(person);
    CREATE TABLE team_roles (
        person TEXT NOT NULL,
        team TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (person, team, role)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        person TEXT,
        credential TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        teams TEXT NOT NULL,
        status INTEGER NOT NULL
    );
    CREATE INDEX audit_at ON audit(at);
    CREATE INDEX audit_person ON audit(person, at);
    """,
    # 7: how each post came in (a due time of its own, or sent at once); before,
    # a post due when it was created counted as sent at once
    """
    ALTER TABLE posts ADD COLUMN origin TEXT NOT NULL DEFAULT 'schedule';
    UPDATE posts SET origin = 'send_now' WHERE created_at >= due_at;
    """,
    # 8: the web console's sign-in sessions (only the token's digest is kept)
    """
    CREATE TABLE console_sessions (
        digest TEXT PRIMARY KEY,
        person TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        seen_at REAL NOT NULL
    );
    CREATE INDEX console_sessions_person ON console_sessions(person);
    """,
    # 9: each channel's last error, kept across restarts and reloads
    """
    CREATE TABLE channel_errors (
        channel TEXT PRIMARY KEY,
        at REAL NOT NULL,
        message TEXT NOT NULL,
        permanent INTEGER NOT NULL
    );
    """,
)
