-- A JID's subscriptions on one node (every permission check reads them) without
-- scanning all of that JID's subscriptions: a bot subscribed to 10,000 nodes is normal.
DROP INDEX IF EXISTS subscriptions_by_bare_jid;
CREATE INDEX subscriptions_by_bare_jid ON subscriptions (bare_jid, node_pk);
