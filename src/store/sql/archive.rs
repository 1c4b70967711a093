//! [`ArchiveStore`](crate::store::archive::ArchiveStore) in shared SQL. A page is one
//! statement over the `items_by_seq (node_pk, seq DESC)` index from the bound it starts
//! at (keyset paging: as fast at item ten million as at item ten); `start`/`end`
//! alone, without an id to start from, can use `items_by_node_time (node_pk,
//! published_at)` instead when they select few items (migration 0009). Only the clauses
//! a query uses are written, so the planner sees plain range conditions.
//!
//! The one dialect difference, how a timestamp parameter compares with `published_at`
//! (a `timestamptz` on PostgreSQL, text in one fixed format on SQLite), is
//! [`ArchiveDialect`].

/// How a timestamp parameter, bound as text in `published_at`'s SQLite format
/// ([`stamp_text`]), compares with the `published_at` column.
pub trait ArchiveDialect {
    /// The expression for timestamp parameter `param`.
    fn stamp(param: &str) -> String;
}

impl ArchiveDialect for crate::store::postgres::PgStore {
    fn stamp(param: &str) -> String {
        format!("CAST({param} AS timestamptz)")
    }
}

impl ArchiveDialect for crate::store::sqlite::SqliteStore {
    /// SQLite's `published_at` is text in this same format, so text order is time order.
    fn stamp(param: &str) -> String {
        param.to_owned()
    }
}

/// A timestamp as `published_at` holds it on SQLite (`%Y-%m-%dT%H:%M:%fZ`, UTC,
/// milliseconds), which PostgreSQL also reads.
pub fn stamp_text(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// One bound parameter of an archive statement, in order.
#[derive(Debug)]
pub enum Param {
    Int(i64),
    Text(String),
    Ints(Vec<i64>),
}

/// The `WHERE`, `ORDER BY` and `LIMIT` of a page query and their parameters (`$1` is
/// the node), for a backend whose list and timestamp words are given.
pub fn page_sql(
    query: &crate::domain::archive::ArchiveQuery,
    in_list: fn(&str) -> String,
    stamp: fn(&str) -> String,
) -> (String, Vec<Param>) {
    use crate::domain::archive::{PageFrom, PublisherFilter};
    let mut sql = String::from("node_pk = $1");
    let mut params = Vec::new();
    // Adds a parameter and names it (`$1` is the node).
    fn next(p: Param, params: &mut Vec<Param>) -> String {
        params.push(p);
        format!("${}", params.len() + 1)
    }
    if let Some(after) = query.after {
        let n = next(Param::Int(after.0), &mut params);
        sql.push_str(&format!(" AND seq > {n}"));
    }
    if let Some(before) = query.before {
        let n = next(Param::Int(before.0), &mut params);
        sql.push_str(&format!(" AND seq < {n}"));
    }
    if let Some(start) = &query.start {
        let n = next(Param::Text(stamp_text(start)), &mut params);
        sql.push_str(&format!(" AND published_at >= {}", stamp(&n)));
    }
    if let Some(end) = &query.end {
        let n = next(Param::Text(stamp_text(end)), &mut params);
        sql.push_str(&format!(" AND published_at <= {}", stamp(&n)));
    }
    match &query.with {
        Some(PublisherFilter::Full(jid)) => {
            let n = next(Param::Text(jid.clone()), &mut params);
            sql.push_str(&format!(" AND publisher = {n}"));
        }
        // Every resource of the bare JID: an exact prefix test (no LIKE, whose
        // wildcards `%` and `_` may appear in a JID's local part).
        Some(PublisherFilter::Bare(jid)) => {
            let n = next(Param::Text(format!("{jid}/")), &mut params);
            sql.push_str(&format!(
                " AND (publisher = substr({n}, 1, length({n}) - 1)
                       OR substr(publisher, 1, length({n})) = {n})"
            ));
        }
        None => {}
    }
    if !query.ids.is_empty() {
        let n = next(
            Param::Ints(query.ids.iter().map(|i| i.0).collect()),
            &mut params,
        );
        sql.push_str(&format!(" AND seq {}", in_list(&n)));
    }
    let order = match query.from {
        PageFrom::Oldest => "seq",
        PageFrom::Newest => "seq DESC",
    };
    let n = next(Param::Int(i64::from(query.limit)), &mut params);
    (format!("{sql} ORDER BY {order} LIMIT {n}"), params)
}

/// Implements `ArchiveStore` for `$store`.
macro_rules! archive_store {
    ($store:ty) => {
        const _: () = {
            use sqlx::AssertSqlSafe;

            use $crate::domain::archive::{ArchiveId, ArchiveQuery};
            use $crate::store::archive::ArchiveStore;
            use $crate::store::item_seq::SeqItem;
            use $crate::store::sql::archive::{page_sql, ArchiveDialect, Param};
            use $crate::store::sql::rows::{self, ITEM_COLUMNS};
            use $crate::store::sql::Backend;
            use $crate::store::StoreError;

            #[async_trait::async_trait]
            impl ArchiveStore for $store {
                async fn archive_page(
                    &self,
                    node_pk: i64,
                    query: &ArchiveQuery,
                ) -> Result<Vec<SeqItem>, StoreError> {
                    let (clauses, params) = page_sql(
                        query,
                        <$store as Backend>::in_list,
                        <$store as ArchiveDialect>::stamp,
                    );
                    let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE {clauses}");
                    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(node_pk);
                    for p in &params {
                        q = match p {
                            Param::Int(n) => q.bind(*n),
                            Param::Text(s) => q.bind(s.as_str()),
                            Param::Ints(ns) => q.bind(Self::list(ns)),
                        };
                    }
                    let rows = q.fetch_all(self.pool()).await?;
                    rows.iter().map(rows::seq_item).collect()
                }

                async fn archive_present(
                    &self,
                    node_pk: i64,
                    ids: &[ArchiveId],
                ) -> Result<Vec<ArchiveId>, StoreError> {
                    let wanted: Vec<i64> = ids.iter().map(|i| i.0).collect();
                    let found: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                        "SELECT seq FROM items WHERE node_pk = $1 AND seq {}",
                        <$store as Backend>::in_list("$2")
                    )))
                    .bind(node_pk)
                    .bind(Self::list(&wanted))
                    .fetch_all(self.pool())
                    .await?;
                    Ok(found.into_iter().map(ArchiveId).collect())
                }

                async fn archive_horizon(&self) -> Result<i64, StoreError> {
                    // The sequence on PostgreSQL and the one-row counter on SQLite
                    // have the same name and column.
                    Ok(sqlx::query_scalar("SELECT last_value FROM item_seq")
                        .fetch_one(self.pool())
                        .await?)
                }
            }
        };
    };
}
pub(crate) use archive_store;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::archive::{ArchiveId, ArchiveQuery, PageFrom, PublisherFilter};

    fn pg_list(p: &str) -> String {
        format!("= ANY({p})")
    }

    #[test]
    fn a_page_writes_only_the_clauses_it_uses_numbered_from_two() {
        let q = ArchiveQuery {
            after: Some(ArchiveId(7)),
            before: None,
            start: None,
            end: None,
            with: Some(PublisherFilter::Full("a@b/c".into())),
            ids: vec![],
            from: PageFrom::Oldest,
            limit: 101,
        };
        let (sql, params) = page_sql(&q, pg_list, |p| p.to_owned());
        assert_eq!(
            sql,
            "node_pk = $1 AND seq > $2 AND publisher = $3 ORDER BY seq LIMIT $4"
        );
        assert_eq!(params.len(), 3);
    }

    #[test]
    fn the_newest_end_orders_descending_and_lists_use_the_backend_word() {
        let q = ArchiveQuery {
            after: None,
            before: Some(ArchiveId(9)),
            start: None,
            end: None,
            with: None,
            ids: vec![ArchiveId(1), ArchiveId(2)],
            from: PageFrom::Newest,
            limit: 3,
        };
        let (sql, _) = page_sql(&q, pg_list, |p| p.to_owned());
        assert_eq!(
            sql,
            "node_pk = $1 AND seq < $2 AND seq = ANY($3) ORDER BY seq DESC LIMIT $4"
        );
    }

    #[test]
    fn stamps_have_the_sqlite_column_format() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:44:09.5+01:00")
            .map(|t| t.with_timezone(&chrono::Utc))
            .expect("test time");
        assert_eq!(stamp_text(&t), "2026-12-06T09:44:09.500Z");
    }
}
