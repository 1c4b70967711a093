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
    let Json(config) = row.try_get("config")?;
    Ok(NodeRecord {
        pk: row.try_get("pk")?,
        name: decode::node_id(&row.try_get::<String, _>("name")?)?,
        config,
        creator: row.try_get::<String, _>("creator")?.parse().ok(),
        created_at: row.try_get("created_at")?,
    })
}

/// Columns: [`ITEM_COLUMNS`].
pub fn item<R: Row>(row: &R) -> Result<ItemRecord, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: Column<R::Database>,
    Option<String>: Column<R::Database>,
    DateTime<Utc>: Column<R::Database>,
{
    Ok(ItemRecord {
        id: decode::item_id(&row.try_get::<String, _>("item_id")?)?,
        publisher: row.try_get("publisher")?,
        payload: row.try_get("payload")?,
        published_at: row.try_get("published_at")?,
    })
}

/// Columns: [`SUBSCRIPTION_COLUMNS`].
pub fn subscription<R: Row>(row: &R) -> Result<SubscriptionRecord, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: Column<R::Database>,
    i64: Column<R::Database>,
    Json<SubscribeOptions>: Column<R::Database>,
{
    let Json(options) = row.try_get("options")?;
    let subscription = SubscriptionJson {
        pk: row.try_get("pk")?,
        jid: row.try_get("jid")?,
        subid: row.try_get("subid")?,
        state: row.try_get("state")?,
        options,
    };
    subscription.into_record(&decode::node_id(&row.try_get::<String, _>("node_name")?)?)
}

/// A subscription as [`super::Backend::SUBSCRIPTIONS_JSON`] gives it (in `node_access`),
/// or as [`subscription`] reads it.
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
        Ok(SubscriptionRecord {
            pk: self.pk,
            node: node.clone(),
            jid: decode::jid(&self.jid)?,
            subid: decode::sub_id(&self.subid)?,
            state: decode::subscription_state(&self.state)?,
            options: self.options,
        })
    }
}
