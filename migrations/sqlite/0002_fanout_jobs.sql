-- The fan-out jobs, with the columns of PostgreSQL's 0002_fanout_jobs.sql (read its
-- comments). SQLite has no LISTEN/NOTIFY: the store wakes its fan-out workers itself
-- after each commit that queued jobs (store::sqlite::jobs), which is enough because a
-- SQLite file serves one pubsubd process only.

CREATE TABLE fanout_jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- No foreign key: the job of a node deletion outlives the node's row.
    node_pk     INTEGER NOT NULL,
    payload_xml TEXT NOT NULL,
    message_type TEXT NOT NULL CHECK (message_type IN ('headline', 'normal')),
    target_jid  TEXT,
    kind        TEXT NOT NULL CHECK (kind IN ('items', 'retract', 'purge', 'delete', 'config', 'subscription', 'direct')),
    cursor      INTEGER NOT NULL DEFAULT 0,
    -- The owner's UUID in its hyphenated text form.
    lease_owner TEXT,
    -- Same time format as every other column: strftime('%Y-%m-%dT%H:%M:%fZ', ...).
    lease_until TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX fanout_jobs_by_node ON fanout_jobs (node_pk, id);
