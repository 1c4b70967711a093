-- As migrations/0010_collections.sql.
-- Collection nodes (XEP-0248): which node is a child of which collection. A node's
-- type (leaf or collection) and `children_max` live in its configuration; the links
-- live here, once, so that `pubsub#children` of a collection and `pubsub#collection`
-- of its children are two reads of the same rows.
--
-- The graph stays acyclic: every change of links runs in one transaction that checks,
-- after the change and before commit, that no node is its own ancestor (the
-- association statements in store/sql/collections.rs).
CREATE TABLE collection_links (
    parent_pk   INTEGER NOT NULL REFERENCES nodes (pk) ON DELETE CASCADE,
    child_pk    INTEGER NOT NULL REFERENCES nodes (pk) ON DELETE CASCADE,
    PRIMARY KEY (parent_pk, child_pk),
    CHECK (parent_pk <> child_pk)
);
-- The fan-out walks upwards: the collections above a leaf.
CREATE INDEX collection_links_by_child ON collection_links (child_pk, parent_pk);
