-- Feed ingestion: Atom/RSS feeds polled into nodes. Feeds come from [[feed]] in the
-- configuration (source 'config', re-synced at start-up) or are added at run time
-- (`pubsubd feed add`, source 'runtime'). Several pubsubd processes share this table;
-- a feed is polled by one of them at a time (a lease claimed with SKIP LOCKED).

CREATE TABLE feeds (
    pk              BIGSERIAL PRIMARY KEY,
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
    next_poll_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Consecutive failed polls: the exponent of the backoff.
    failures        INTEGER NOT NULL DEFAULT 0,
    last_status     TEXT,
    last_polled_at  TIMESTAMPTZ,
    lease_owner     UUID,
    lease_until     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (url, node)
);
-- Claiming: the feed due first.
CREATE INDEX feeds_due ON feeds (next_poll_at);

-- What each feed's entries looked like when last published, so a re-poll publishes
-- only new or changed entries (and never re-creates an item an owner retracted).
CREATE TABLE feed_entries (
    feed_pk      BIGINT NOT NULL REFERENCES feeds (pk) ON DELETE CASCADE,
    -- The ItemID the entry is published under (derived from the entry id).
    item_id      TEXT NOT NULL,
    -- SHA-256 of the entry as rendered, without fallback dates.
    content_hash TEXT NOT NULL,
    last_seen    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (feed_pk, item_id)
);
