//! Reading rows into records, as `postgres/rows.rs` does for PostgreSQL rows (the same
//! columns, decoded from SQLite's TEXT and INTEGER). A row that does not parse (a JID
//! or id that was valid when written but is not now) is a backend error, never a panic.

use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::Row;

use crate::domain::{NodeConfig, SubscribeOptions};
use crate::store::{decode, ItemRecord, NodeRecord, StoreError, SubscriptionRecord};

pub use crate::store::decode::{affiliation, bare_jid, item_id, node_id};

/// Columns: pk, name, config, creator, created_at.
pub fn node(row: &SqliteRow) -> Result<NodeRecord, StoreError> {
    let name: String = row.try_get("name")?;
    let creator: String = row.try_get("creator")?;
    let Json(config): Json<NodeConfig> = row.try_get("config")?;
    decode::node(
        row.try_get("pk")?,
        &name,
        config,
        &creator,
        row.try_get("created_at")?,
    )
}

/// Columns: item_id, publisher, payload, published_at.
pub fn item(row: &SqliteRow) -> Result<ItemRecord, StoreError> {
    let id: String = row.try_get("item_id")?;
    decode::item(
        &id,
        row.try_get("publisher")?,
        row.try_get("payload")?,
        row.try_get("published_at")?,
    )
}

/// Columns: pk, node_name, jid, subid, state, options.
pub fn subscription(row: &SqliteRow) -> Result<SubscriptionRecord, StoreError> {
    let node: String = row.try_get("node_name")?;
    let j: String = row.try_get("jid")?;
    let subid: String = row.try_get("subid")?;
    let state: String = row.try_get("state")?;
    let Json(options): Json<SubscribeOptions> = row.try_get("options")?;
    decode::subscription(row.try_get("pk")?, &node, &j, &subid, &state, options)
}

/// The SELECT list matching [`subscription`], for a query over `subscriptions s JOIN
/// nodes n`.
pub const SUBSCRIPTION_COLUMNS: &str =
    "s.pk, n.name AS node_name, s.jid, s.subid, s.state, s.options";
