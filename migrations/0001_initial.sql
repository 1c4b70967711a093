-- pubsubd schema: nodes, their configuration, affiliations, subscriptions and items.
-- Sized for millions of rows: every hot lookup has an index that matches it exactly.

CREATE TABLE nodes (
    pk          BIGSERIAL PRIMARY KEY,
    -- The XEP-0060 NodeID, as the client wrote it.
    name        TEXT NOT NULL,
    -- Node configuration (domain::NodeConfig as JSON). Kept as one document: it is read
    -- whole on every request and changed rarely.
    config      JSONB NOT NULL,
    creator     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A deleted node stays until the fan-out engine has told its subscribers (it walks
    -- the node's subscriptions), then the row goes. Every other query ignores it.
    deleted     BOOLEAN NOT NULL DEFAULT false
);
-- A name is taken only by a live node: a deleted one may be re-created at once.
CREATE UNIQUE INDEX nodes_live_name ON nodes (name) WHERE NOT deleted;

CREATE TABLE affiliations (
    node_pk     BIGINT NOT NULL REFERENCES nodes (pk) ON DELETE CASCADE,
    -- Bare JID.
    jid         TEXT NOT NULL,
    -- 'none' is never stored: no row means none.
    affiliation TEXT NOT NULL
        CHECK (affiliation IN ('owner', 'publisher', 'publish-only', 'member', 'outcast')),
    PRIMARY KEY (node_pk, jid)
);
-- "My affiliations" across the service.
CREATE INDEX affiliations_by_jid ON affiliations (jid);

CREATE TABLE subscriptions (
    -- Also the fan-out order: a node's subscribers are walked by pk (keyset paging), a
    -- stable order that new subscriptions only extend.
    pk          BIGSERIAL PRIMARY KEY,
    node_pk     BIGINT NOT NULL REFERENCES nodes (pk) ON DELETE CASCADE,
    -- The subscribed JID, bare or full, as the subscriber asked.
    jid         TEXT NOT NULL,
    -- Its bare form, for "my subscriptions" and permission checks.
    bare_jid    TEXT NOT NULL,
    subid       TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL CHECK (state IN ('subscribed', 'pending', 'unconfigured')),
    -- Subscription options (domain::SubscribeOptions as JSON).
    options     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (node_pk, jid)
);
-- The fan-out walk: subscribers of a node in pk order, only those to deliver to.
CREATE INDEX subscriptions_fanout ON subscriptions (node_pk, pk) WHERE state = 'subscribed';
-- A JID's subscriptions across the service.
CREATE INDEX subscriptions_by_bare_jid ON subscriptions (bare_jid);

-- Global publish order. An overwrite takes a new number, so "newest first" is simply
-- "highest seq first".
CREATE SEQUENCE item_seq;

CREATE TABLE items (
    node_pk      BIGINT NOT NULL REFERENCES nodes (pk) ON DELETE CASCADE,
    item_id      TEXT NOT NULL,
    seq          BIGINT NOT NULL DEFAULT nextval('item_seq'),
    -- Full JID of the publisher.
    publisher    TEXT NOT NULL,
    -- The payload exactly as published (serialised XML), or NULL for notification-only items.
    payload      TEXT,
    published_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (node_pk, item_id)
);
-- Items of a node by time, newest first (retrieval, RSM paging, max_items trimming).
CREATE UNIQUE INDEX items_by_seq ON items (node_pk, seq DESC);
-- Retention (item_expire) deletes by age across all nodes.
CREATE INDEX items_by_published_at ON items (published_at);
