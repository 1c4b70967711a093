//! Reading rows into records, for both backends: one set of column lists and one
//! decoding, generic over the row type. A value that does not parse (a JID or id that
//! was valid when written but is not now) is a [`StoreError`], never a panic.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::{Database, Decode, Postgres, Row, Sqlite, Type};

use crate::domain::{NodeId, SubscribeOptions};
use crate::store::{decode, ItemRecord, NodeRecord, StoreError, SubscriptionRecord};

/// The SELECT list matching [`node`], for a query over `nodes`.
pub const NODE_COLUMNS: &str = "pk, name, config, creator, created_at";

/// The SELECT list matching [`item`], for a query over `items` (with `seq`, the
/// position a page of items is counted from).
pub const ITEM_COLUMNS: &str = "item_id, publisher, payload, published_at, seq";

/// The subscriptions with their node's name, as [`subscription`] reads them: the
/// `WHERE` clause (over `s` and `n`) follows.
pub const SUBSCRIPTIONS: &str = "SELECT s.pk, n.name AS node_name, s.jid, s.subid, s.state,
    s.options FROM subscriptions s JOIN nodes n ON n.pk = s.node_pk";

/// A column type a backend decodes.
pub trait Column<DB: Database>: for<'r> Decode<'r, DB> + Type<DB> {}
impl<DB: Database, T: for<'r> Decode<'r, DB> + Type<DB>> Column<DB> for T {}

/// A column type both backends decode.
pub trait Value: Column<Postgres> + Column<Sqlite> {}
impl<T: Column<Postgres> + Column<Sqlite>> Value for T {}

/// A row of either backend, read by column name: what the decoding below is generic
/// over.
pub trait Stored {
    /// The value of `column`.
    fn field<T: Value>(&self, column: &str) -> Result<T, sqlx::Error>;
}

macro_rules! stored {
    ($($row:ty),*) => {$(
        impl Stored for $row {
            fn field<T: Value>(&self, column: &str) -> Result<T, sqlx::Error> {
                self.try_get(column)
            }
        }
    )*};
}
stored!(PgRow, SqliteRow);

/// Columns: [`NODE_COLUMNS`].
pub fn node<R: Stored>(row: &R) -> Result<NodeRecord, StoreError> {
    let Json(config) = row.field("config")?;
    Ok(NodeRecord {
        pk: row.field("pk")?,
        name: decode::node_id(&row.field::<String>("name")?)?,
        config,
        creator: row.field::<String>("creator")?.parse().ok(),
        created_at: row.field("created_at")?,
    })
}

/// Columns: [`ITEM_COLUMNS`].
pub fn item<R: Stored>(row: &R) -> Result<ItemRecord, StoreError> {
    Ok(ItemRecord {
        id: decode::item_id(&row.field::<String>("item_id")?)?,
        publisher: row.field("publisher")?,
        payload: row.field("payload")?,
        published_at: row.field("published_at")?,
    })
}

/// An item with its place in the publish order (`seq` among the columns).
pub fn seq_item<R: Stored>(row: &R) -> Result<crate::store::item_seq::SeqItem, StoreError> {
    Ok(crate::store::item_seq::SeqItem {
        seq: row.field("seq")?,
        item: item(row)?,
    })
}

/// Rows of [`SUBSCRIPTIONS`].
pub fn subscription<R: Stored>(row: &R) -> Result<SubscriptionRecord, StoreError> {
    let Json(options) = row.field("options")?;
    let subscription = SubscriptionJson {
        pk: row.field("pk")?,
        jid: row.field("jid")?,
        subid: row.field("subid")?,
        state: row.field("state")?,
        options,
    };
    subscription.into_record(&decode::node_id(&row.field::<String>("node_name")?)?)
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
