-- As migrations/0011_item_counts.sql: each node's number of stored items, kept by
-- triggers in the transaction of every statement that adds or removes items. SQLite
-- has only row-level triggers, and one writer at a time: they update the node's row
-- directly (in place, under the write lock the statement holds anyway; an upsert that
-- updates fires no INSERT trigger). `item_count_changes` stays empty here, so the
-- statements that read a count are the same on both stores.
ALTER TABLE nodes ADD COLUMN item_count INTEGER NOT NULL DEFAULT 0;

UPDATE nodes SET item_count = (SELECT count(*) FROM items WHERE items.node_pk = nodes.pk);

CREATE TABLE item_count_changes (
    node_pk INTEGER NOT NULL,
    delta   INTEGER NOT NULL
);

CREATE TRIGGER items_counted_in AFTER INSERT ON items
BEGIN
    UPDATE nodes SET item_count = item_count + 1 WHERE pk = NEW.node_pk;
END;

CREATE TRIGGER items_counted_out AFTER DELETE ON items
BEGIN
    UPDATE nodes SET item_count = item_count - 1 WHERE pk = OLD.node_pk;
END;
