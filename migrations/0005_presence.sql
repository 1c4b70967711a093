-- Presence-aware fan-out: the available resources of subscribers, shared by every
-- pubsubd process attached to this database (ejabberd may hand a user's presence to any
-- of them), and the indexes the fan-out engine's claim and walk need.

CREATE TABLE presence (
    -- The available resource (full JID; a bare JID when the sender had no resource).
    jid         TEXT PRIMARY KEY,
    bare_jid    TEXT NOT NULL,
    -- domain::ShowValue: 'online' is available without <show/>.
    show        TEXT NOT NULL CHECK (show IN ('online', 'away', 'chat', 'dnd', 'xa')),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Presence-based delivery looks up a page's bare JIDs at once.
CREATE INDEX presence_by_bare_jid ON presence (bare_jid);

-- Claiming asks "does this node have a job under a live lease?": only leased rows (a
-- batch at the head of each busy node) are in this index, so the check is a probe.
CREATE INDEX fanout_jobs_leased ON fanout_jobs (node_pk) WHERE lease_owner IS NOT NULL;

-- The walk asks, for each subscription of a page, whether the same bare JID has another
-- subscription to the node (then notifications carry a SubID header). Without this, a
-- bare JID subscribed to many nodes would make each probe scan all its subscriptions.
CREATE INDEX subscriptions_by_node_bare ON subscriptions (node_pk, bare_jid) WHERE state = 'subscribed';
