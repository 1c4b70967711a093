-- The durable hand-off between a request and the fan-out engine. A publish (or retract,
-- purge, delete, configure, ...) inserts its job in the same transaction as the change
-- itself, so a committed change always has its notifications queued.

CREATE TABLE fanout_jobs (
    id          BIGSERIAL PRIMARY KEY,
    -- No foreign key: the job of a node deletion outlives the node's row.
    node_pk     BIGINT NOT NULL,
    -- What the message carries, rendered once: usually the complete
    -- <event xmlns='http://jabber.org/protocol/pubsub#event'>...</event> element.
    payload_xml TEXT NOT NULL,
    -- 'headline' or 'normal' (pubsub#notification_type).
    message_type TEXT NOT NULL CHECK (message_type IN ('headline', 'normal')),
    -- NULL: every subscriber of the node; otherwise this one JID only.
    target_jid  TEXT,
    -- Also deliver to subscriptions whose owner has asked not to receive payloads
    -- (events other than items, such as purge, delete and configuration).
    kind        TEXT NOT NULL CHECK (kind IN ('items', 'retract', 'purge', 'delete', 'config', 'subscription', 'direct')),
    -- Keyset position: every subscription with pk <= cursor has been handed to the
    -- server and confirmed by a barrier.
    cursor      BIGINT NOT NULL DEFAULT 0,
    -- Lease: which process works the job, and until when its claim holds.
    lease_owner UUID,
    lease_until TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Claiming: the oldest job of each node first (publish order per node).
CREATE INDEX fanout_jobs_by_node ON fanout_jobs (node_pk, id);
