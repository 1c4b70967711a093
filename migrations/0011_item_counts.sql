-- Each node's number of stored items, in its row, so that a retrieval's RSM <count>
-- (XEP-0059) and disco#info's `pubsub#num_items` read one row instead of counting the
-- node's items (0.8 s at ten million). Triggers keep it, in the transaction of every
-- statement that adds or removes items, whoever runs it: publish (an overwrite adds
-- no row), retract, purge, the trim to `max_items`, expiry, a node's deletion.
--
-- Statement-level triggers with transition tables: one update per node a statement
-- touched, whatever the number of rows (a purge of a million items is one update, a
-- batch of publishes one per node). The rows are locked in pk order, so two batches
-- over the same nodes queue rather than deadlock. A publish holds its node's row until
-- it commits, as the trim of a full node already held the oldest item.

-- No item comes or goes between the count below and the triggers.
LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE nodes ADD COLUMN item_count BIGINT NOT NULL DEFAULT 0;

UPDATE nodes n SET item_count = c.n
FROM (SELECT node_pk, count(*) AS n FROM items GROUP BY node_pk) c
WHERE n.pk = c.node_pk;

CREATE FUNCTION items_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM nodes WHERE pk IN (SELECT node_pk FROM added)
        ORDER BY pk FOR NO KEY UPDATE;
    UPDATE nodes n SET item_count = n.item_count + d.n
    FROM (SELECT node_pk, count(*) AS n FROM added GROUP BY node_pk) d
    WHERE n.pk = d.node_pk;
    RETURN NULL;
END
$$;

CREATE FUNCTION items_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM nodes WHERE pk IN (SELECT node_pk FROM removed)
        ORDER BY pk FOR NO KEY UPDATE;
    UPDATE nodes n SET item_count = n.item_count - d.n
    FROM (SELECT node_pk, count(*) AS n FROM removed GROUP BY node_pk) d
    WHERE n.pk = d.node_pk;
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
