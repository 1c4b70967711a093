-- Presence-aware fan-out, as PostgreSQL's 0005_presence.sql (read its comments): the
-- available resources of subscribers and the indexes the fan-out engine's claim and
-- walk need. Numbered 0005 like its PostgreSQL twin (0004 has no SQLite counterpart).
-- Only one process uses an SQLite file, so the table is that process's view, kept
-- across a restart as on PostgreSQL.

CREATE TABLE presence (
    -- The available resource (full JID; a bare JID when the sender had no resource).
    jid         TEXT PRIMARY KEY,
    bare_jid    TEXT NOT NULL,
    -- domain::ShowValue: 'online' is available without <show/>.
    show        TEXT NOT NULL CHECK (show IN ('online', 'away', 'chat', 'dnd', 'xa')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX presence_by_bare_jid ON presence (bare_jid);

-- "Does this node have a job under a live lease?": only leased rows are in this index.
CREATE INDEX fanout_jobs_leased ON fanout_jobs (node_pk) WHERE lease_owner IS NOT NULL;

-- "Has this bare JID another subscription to the node?" (the SubID header), per row of
-- a walk page.
CREATE INDEX subscriptions_by_node_bare ON subscriptions (node_pk, bare_jid) WHERE state = 'subscribed';
