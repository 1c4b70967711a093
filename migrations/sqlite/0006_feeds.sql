-- PostgreSQL's 0006_feeds.sql for SQLite: the same tables and columns, with SQLite's
-- types (see 0001_initial.sql: times are TEXT in one format whose string order is time
-- order, the lease owner a UUID as TEXT). One process holds an SQLite file (the
-- instance lock), so a feed's lease only keeps the poller from taking it twice.

CREATE TABLE feeds (
    pk              INTEGER PRIMARY KEY AUTOINCREMENT,
    url             TEXT NOT NULL,
    -- The NodeID the entries are published to.
    node            TEXT NOT NULL,
    interval_secs   INTEGER NOT NULL CHECK (interval_secs > 0),
    -- A whole request header line such as 'Authorization: Bearer ...'. A secret: never
    -- logged, never listed.
    auth_header     TEXT,
    source          TEXT NOT NULL CHECK (source IN ('config', 'runtime')),
    -- Validators of the last 200 response, for conditional GET.
    etag            TEXT,
    last_modified   TEXT,
    next_poll_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- Consecutive failed polls: the exponent of the backoff.
    failures        INTEGER NOT NULL DEFAULT 0,
    last_status     TEXT,
    last_polled_at  TEXT,
    lease_owner     TEXT,
    lease_until     TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (url, node)
);
-- Claiming: the feed due first.
CREATE INDEX feeds_due ON feeds (next_poll_at);

-- What each feed's entries looked like when last published, so a re-poll publishes
-- only new or changed entries (and never re-creates an item an owner retracted).
CREATE TABLE feed_entries (
    feed_pk      INTEGER NOT NULL REFERENCES feeds (pk) ON DELETE CASCADE,
    -- The ItemID the entry is published under (derived from the entry id).
    item_id      TEXT NOT NULL,
    -- SHA-256 of the entry as rendered, without fallback dates.
    content_hash TEXT NOT NULL,
    last_seen    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (feed_pk, item_id)
);
