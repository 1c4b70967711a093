-- As migrations/0011_item_counts.sql: each node's number of stored items in its row,
-- kept by triggers in the transaction of every statement that adds or removes items.
-- SQLite has only row-level triggers: one update of the node's row per item added or
-- removed (an upsert that updates fires no INSERT trigger), in place and under the
-- write lock that the statement holds anyway. The migration runs under that lock too.
ALTER TABLE nodes ADD COLUMN item_count INTEGER NOT NULL DEFAULT 0;

UPDATE nodes SET item_count = (SELECT count(*) FROM items WHERE items.node_pk = nodes.pk);

CREATE TRIGGER items_counted_in AFTER INSERT ON items
BEGIN
    UPDATE nodes SET item_count = item_count + 1 WHERE pk = NEW.node_pk;
END;

CREATE TRIGGER items_counted_out AFTER DELETE ON items
BEGIN
    UPDATE nodes SET item_count = item_count - 1 WHERE pk = OLD.node_pk;
END;
