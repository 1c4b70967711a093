//! Nodes in PostgreSQL: the shared SQL ([`crate::store::sql`]), and `node_accesses`
//! for a run of nodes in one statement (`unnest … WITH ORDINALITY`).

use sqlx::{AssertSqlSafe, Row};
use xmpp_parsers::jid::BareJid;

use super::PgStore;
use crate::domain::NodeId;
use crate::store::sql::nodes::{access_columns, node_access};
use crate::store::{NodeAccess, StoreError};

crate::store::sql::node_store!(PgStore, {
    async fn node_accesses(
        &self,
        names: &[NodeId],
        requester: &BareJid,
    ) -> Result<Vec<Option<NodeAccess>>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // node_access's read for every name at once; a name without a live node has a
        // row with a NULL pk. Unprepared, so planned for the table as it is: the
        // generic plan of a prepared statement made while `nodes` is nearly empty
        // hashes a sequential scan of it, and would keep doing so for the life of
        // the connection as the table grows.
        let names: Vec<&str> = names.iter().map(NodeId::as_str).collect();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT u.ord, {}
             FROM unnest($1::text[]) WITH ORDINALITY AS u(name, ord)
             LEFT JOIN nodes n ON n.name = u.name AND NOT n.deleted
             ORDER BY u.ord",
            access_columns!(PgStore)
        )))
        .bind(&names)
        .bind(requester.as_str())
        .persistent(false)
        .fetch_all(self.pool())
        .await?;
        let mut found: Vec<Option<NodeAccess>> = (0..names.len()).map(|_| None).collect();
        for row in &rows {
            if row.try_get::<Option<i64>, _>("pk")?.is_none() {
                continue;
            }
            let ord: i64 = row.try_get("ord")?;
            if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|i| found.get_mut(i)) {
                *slot = Some(node_access(row)?);
            }
        }
        Ok(found)
    }
});
