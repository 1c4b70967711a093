-- pubsubd schema for SQLite: the same tables, columns and rules as the PostgreSQL
-- schema in migrations/ (read that first; comments here only say what differs).
--
-- Versions follow migrations/: a change made to both backends takes the same number
-- in both folders. This file holds PostgreSQL's 0001 and 0003 (the subscription
-- index in its final form); 0002 is fanout_jobs, as there.
--
-- SQLite has no BIGSERIAL, JSONB, TIMESTAMPTZ, BOOLEAN or sequences:
-- - keys are INTEGER PRIMARY KEY AUTOINCREMENT, which, like a sequence, never hands
--   out a number twice (plain rowids reuse the highest one after a delete, and a
--   reused subscription pk could fall behind a fan-out cursor);
-- - JSON documents are TEXT checked with json_valid, read with ->> and json_type;
-- - times are TEXT in one fixed format, UTC with milliseconds,
--   strftime('%Y-%m-%dT%H:%M:%fZ', 'now') = '2026-12-01T07:20:00.123Z', so that
--   comparing the strings compares the times;
-- - flags are INTEGER 0/1.

CREATE TABLE nodes (
    pk          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    config      TEXT NOT NULL CHECK (json_valid(config)),
    creator     TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1))
);
CREATE UNIQUE INDEX nodes_live_name ON nodes (name) WHERE NOT deleted;

CREATE TABLE affiliations (
    node_pk     INTEGER NOT NULL REFERENCES nodes (pk) ON DELETE CASCADE,
    jid         TEXT NOT NULL,
    affiliation TEXT NOT NULL
        CHECK (affiliation IN ('owner', 'publisher', 'publish-only', 'member', 'outcast')),
    PRIMARY KEY (node_pk, jid)
);
CREATE INDEX affiliations_by_jid ON affiliations (jid);

CREATE TABLE subscriptions (
    pk          INTEGER PRIMARY KEY AUTOINCREMENT,
    node_pk     INTEGER NOT NULL REFERENCES nodes (pk) ON DELETE CASCADE,
    jid         TEXT NOT NULL,
    bare_jid    TEXT NOT NULL,
    subid       TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL CHECK (state IN ('subscribed', 'pending', 'unconfigured')),
    options     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(options)),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (node_pk, jid)
);
CREATE INDEX subscriptions_fanout ON subscriptions (node_pk, pk) WHERE state = 'subscribed';
CREATE INDEX subscriptions_by_bare_jid ON subscriptions (bare_jid, node_pk);

-- PostgreSQL's item_seq sequence: one row holding the last number handed out. Every
-- write to SQLite is serialised anyway, so the counter costs no extra waiting.
CREATE TABLE item_seq (
    only_row    INTEGER PRIMARY KEY CHECK (only_row = 1),
    last_value  INTEGER NOT NULL
);
INSERT INTO item_seq (only_row, last_value) VALUES (1, 0);

CREATE TABLE items (
    node_pk      INTEGER NOT NULL REFERENCES nodes (pk) ON DELETE CASCADE,
    item_id      TEXT NOT NULL,
    -- From item_seq; an overwrite takes a new number (newest first = highest seq).
    seq          INTEGER NOT NULL,
    publisher    TEXT NOT NULL,
    payload      TEXT,
    published_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (node_pk, item_id)
);
CREATE UNIQUE INDEX items_by_seq ON items (node_pk, seq DESC);
CREATE INDEX items_by_published_at ON items (published_at);
