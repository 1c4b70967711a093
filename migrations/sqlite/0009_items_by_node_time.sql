-- Archive queries (XEP-0313 on nodes) filtered by time alone (`start`, `end`) with no
-- archive id to start from: the planner can find the few items of a late `start`
-- here instead of walking items_by_seq from the node's first item.
CREATE INDEX items_by_node_time ON items (node_pk, published_at);
