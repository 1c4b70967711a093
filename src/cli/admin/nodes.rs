//! `pubsubd node …` and `pubsubd stats`.

use serde_json::{json, Value};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::jid::BareJid;

use super::{node_id, Ctx, NodeCommand};
use crate::cli::messages::refused;
use crate::cli::CliError;
use crate::domain::{NodeConfig, NODE_CONFIG_FORM_TYPE};

/// Nodes read per page while listing.
const PAGE: u32 = 500;

pub(crate) async fn run(ctx: &Ctx, cmd: NodeCommand) -> Result<(), CliError> {
    let admin = ctx.admin();
    match cmd {
        NodeCommand::List => list(ctx).await,
        NodeCommand::Show { node } => show(ctx, &node).await,
        NodeCommand::Create { node, owner, set } => {
            let owner: BareJid = owner
                .parse()
                .map_err(|e| CliError::Input(format!("`{owner}` is not a valid owner JID: {e}")))?;
            let form = if set.is_empty() {
                None
            } else {
                Some(form(&set)?)
            };
            let created = ctx
                .pubsub
                .create_node(&ctx.admin_as(&owner), Some(node_id(&node)?), form.as_ref())
                .await
                .map_err(refused(&node))?;
            ctx.out
                .done(&format!("created {} (owner {owner})", created.name));
            Ok(())
        }
        NodeCommand::Delete { node, redirect } => {
            ctx.pubsub
                .delete_node(&admin, &node_id(&node)?, redirect.as_deref())
                .await
                .map_err(refused(&node))?;
            ctx.out
                .done(&format!("deleted {node}; subscribers are being notified"));
            Ok(())
        }
        NodeCommand::Purge { node } => {
            let id = node_id(&node)?;
            let info = ctx
                .pubsub
                .node_info(&admin, &id)
                .await
                .map_err(refused(&node))?;
            eprintln!("purging {} items of {node} ...", info.items);
            ctx.pubsub
                .purge_node(&admin, &id)
                .await
                .map_err(refused(&node))?;
            ctx.out
                .done(&format!("purged {} items of {node}", info.items));
            Ok(())
        }
        NodeCommand::Config { node, set } => {
            let id = node_id(&node)?;
            let config = if set.is_empty() {
                ctx.pubsub
                    .node_config(&admin, &id)
                    .await
                    .map_err(refused(&node))?
            } else {
                ctx.pubsub
                    .configure_node(&admin, &id, &form(&set)?)
                    .await
                    .map_err(refused(&node))?
            };
            print_config(ctx, &config);
            Ok(())
        }
    }
}

/// `--set field=value` pairs as a submitted configuration form, validated exactly as
/// an owner's form is.
fn form(set: &[String]) -> Result<DataForm, CliError> {
    let fields = set
        .iter()
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                CliError::Input(format!("--set expects FIELD=VALUE, got `{pair}`"))
            })?;
            let var = if k.starts_with("pubsub#") {
                k.to_owned()
            } else {
                format!("pubsub#{k}")
            };
            Ok(Field::new(&var, FieldType::TextSingle).with_value(v))
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    Ok(DataForm::new(
        DataFormType::Submit,
        NODE_CONFIG_FORM_TYPE,
        fields,
    ))
}

fn print_config(ctx: &Ctx, config: &NodeConfig) {
    let form = config.to_result_form();
    let pairs = form
        .fields
        .iter()
        .filter_map(|f| {
            let var = f.var.as_deref()?.strip_prefix("pubsub#")?;
            Some((var, Value::String(f.values.join(","))))
        })
        .collect();
    ctx.out.record(pairs);
}

async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let store = &ctx.pubsub.store;
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, _) = store.list_nodes(after.as_deref(), PAGE, None).await?;
        let last = page.last().map(|n| n.name.clone());
        for listing in page {
            let Ok(id) = crate::domain::NodeId::parse(&listing.name) else {
                continue;
            };
            let Some(node) = store.node(&id).await? else {
                continue;
            };
            let subscribers = store.count_subscribers(node.pk).await?;
            let items = store.item_count(node.pk).await?;
            rows.push(vec![
                listing.name,
                node.config.access_model.to_string(),
                subscribers.to_string(),
                items.to_string(),
                listing.title.unwrap_or_default(),
            ]);
        }
        match last {
            Some(l) => after = Some(l),
            None => break,
        }
    }
    ctx.out
        .table(&["node", "access", "subscribers", "items", "title"], rows);
    Ok(())
}

async fn show(ctx: &Ctx, node: &str) -> Result<(), CliError> {
    let info = ctx
        .pubsub
        .node_info(&ctx.admin(), &node_id(node)?)
        .await
        .map_err(refused(node))?;
    let jids = |l: &[BareJid]| Value::Array(l.iter().map(|j| json!(j.to_string())).collect());
    let c = &info.node.config;
    ctx.out.record(vec![
        ("node", json!(info.node.name.to_string())),
        ("title", json!(c.title.clone().unwrap_or_default())),
        ("created", json!(info.node.created_at.to_rfc3339())),
        (
            "creator",
            json!(info
                .node
                .creator
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()),
        ),
        ("owners", jids(&info.owners)),
        ("publishers", jids(&info.publishers)),
        ("access_model", json!(c.access_model.to_string())),
        ("publish_model", json!(c.publish_model.to_string())),
        ("max_items", json!(c.max_items.to_string())),
        ("subscribers", json!(info.subscribers)),
        ("items", json!(info.items)),
    ]);
    Ok(())
}

pub(crate) async fn stats(ctx: &Ctx) -> Result<(), CliError> {
    let s = ctx.pubsub.store.stats().await?;
    ctx.out.record(vec![
        ("nodes", json!(s.nodes)),
        ("items", json!(s.items)),
        ("subscriptions", json!(s.subscriptions)),
        ("pending_subscriptions", json!(s.pending_subscriptions)),
        ("affiliations", json!(s.affiliations)),
        ("fanout_jobs_pending", json!(s.jobs_pending)),
        ("oldest_job_age_seconds", json!(s.oldest_job_age_seconds)),
    ]);
    Ok(())
}
