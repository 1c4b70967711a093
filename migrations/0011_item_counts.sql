-- Each node's number of stored items, so that a retrieval's RSM <count> (XEP-0059)
-- and disco#info's `pubsub#num_items` read a row or a few instead of counting the
-- node's items (0.8 s at ten million). Triggers keep it, in the transaction of every
-- statement that adds or removes items, whoever runs it: publish (an overwrite adds no
-- row), retract, purge, the trim to `max_items`, expiry, a node's deletion.
--
-- The count is `nodes.item_count` plus the node's rows in `item_count_changes`
-- (store::sql::items::ITEM_COUNT). A statement-level trigger with a transition table
-- adds one change row per node the statement touched, whatever the number of items (a
-- purge of a million items is one row). It does not update the node's row: that would
-- hold the row until commit and make every publish to one node wait for the one
-- before it to commit (measured: a third of the publishes per second to one node). The
-- changes are folded into `nodes.item_count` in the background, one statement that
-- deletes them and adds them up, so every reader sees an exact count before or after.

-- No item comes or goes between the count below and the triggers. Until this
-- migration commits, publishes, retractions and purges wait on this lock, and every
-- statement that reads a node waits on ALTER TABLE nodes, while the count below scans
-- all items: apply it with every instance stopped (docs/operations.md, Upgrading).
LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE nodes ADD COLUMN item_count BIGINT NOT NULL DEFAULT 0;

UPDATE nodes n SET item_count = c.n
FROM (SELECT node_pk, count(*) AS n FROM items GROUP BY node_pk) c
WHERE n.pk = c.node_pk;

-- No foreign key: the items of a node being deleted leave a change behind, which the
-- next fold drops with the others.
CREATE TABLE item_count_changes (
    node_pk BIGINT NOT NULL,
    delta   BIGINT NOT NULL
);
CREATE INDEX item_count_changes_by_node ON item_count_changes (node_pk);
-- A queue: every publishing statement adds a row and each fold deletes them, so at a
-- thousand publishes a second it leaves a thousand dead rows a second. Autovacuum
-- takes it after every thousand, not once a fifth of the table is dead (the default,
-- which a burst that grew the table would put off in proportion).
ALTER TABLE item_count_changes SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000
);

CREATE FUNCTION items_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO item_count_changes (node_pk, delta)
    SELECT node_pk, count(*) FROM added GROUP BY node_pk;
    RETURN NULL;
END
$$;

CREATE FUNCTION items_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO item_count_changes (node_pk, delta)
    SELECT node_pk, -count(*) FROM removed GROUP BY node_pk;
    RETURN NULL;
END
$$;

-- An INSERT … ON CONFLICT DO UPDATE lists only the rows it inserted in `added`.
CREATE TRIGGER items_counted_in AFTER INSERT ON items
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION items_added();

CREATE TRIGGER items_counted_out AFTER DELETE ON items
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION items_removed();
