//! Reading rows into records, for both backends: one set of column lists and one
//! decoding, generic over the row type. A value that does not parse (a JID or id that
//! was valid when written but is not now) is a [`StoreError`], never a panic.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Database, Decode, Row, Type};

use crate::domain::{NodeConfig, NodeId, SubscribeOptions};
use crate::store::{decode, ItemRecord, NodeRecord, StoreError, SubscriptionRecord};

/// The SELECT list matching [`node`], for a query over `nodes`.
pub const NODE_COLUMNS: &str = "pk, name, config, creator, created_at";

/// The SELECT list matching [`item`], for a query over `items` (with `seq`, the
/// position a page of items is counted from).
pub const ITEM_COLUMNS: &str = "item_id, publisher, payload, published_at, seq";

/// The SELECT list matching [`subscription`], for a query over `subscriptions s JOIN
/// nodes n`.
pub const SUBSCRIPTION_COLUMNS: &str =
    "s.pk, n.name AS node_name, s.jid, s.subid, s.state, s.options";

/// A column type both backends decode.
pub trait Column<DB: Database>: for<'r> Decode<'r, DB> + Type<DB> {}
impl<DB: Database, T: for<'r> Decode<'r, DB> + Type<DB>> Column<DB> for T {}

/// Columns: [`NODE_COLUMNS`].
pub fn node<R: Row>(row: &R) -> Result<NodeRecord, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: Column<R::Database>,
    i64: Column<R::Database>,
    Json<NodeConfig>: Column<R::Database>,
    DateTime<Utc>: Column<R::Database>,
{
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

/// Columns: [`ITEM_COLUMNS`].
pub fn item<R: Row>(row: &R) -> Result<ItemRecord, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: Column<R::Database>,
    Option<String>: Column<R::Database>,
    DateTime<Utc>: Column<R::Database>,
{
    let id: String = row.try_get("item_id")?;
    decode::item(
        &id,
        row.try_get("publisher")?,
        row.try_get("payload")?,
        row.try_get("published_at")?,
    )
}

/// Columns: [`SUBSCRIPTION_COLUMNS`].
pub fn subscription<R: Row>(row: &R) -> Result<SubscriptionRecord, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: Column<R::Database>,
    i64: Column<R::Database>,
    Json<SubscribeOptions>: Column<R::Database>,
{
    let node: String = row.try_get("node_name")?;
    let j: String = row.try_get("jid")?;
    let subid: String = row.try_get("subid")?;
    let state: String = row.try_get("state")?;
    let Json(options): Json<SubscribeOptions> = row.try_get("options")?;
    decode::subscription(row.try_get("pk")?, &node, &j, &subid, &state, options)
}

/// A subscription as [`super::Backend::SUBSCRIPTIONS_JSON`] gives it (in `node_access`).
#[derive(serde::Deserialize)]
pub struct SubscriptionJson {
    pk: i64,
    jid: String,
    subid: String,
    state: String,
    options: SubscribeOptions,
}

impl SubscriptionJson {
    /// The record, for a subscription to `node`.
    pub fn into_record(self, node: &NodeId) -> Result<SubscriptionRecord, StoreError> {
        decode::subscription(
            self.pk,
            node.as_str(),
            &self.jid,
            &self.subid,
            &self.state,
            self.options,
        )
    }
}
