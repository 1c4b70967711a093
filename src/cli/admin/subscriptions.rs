//! `pubsubd subscriptions …` and `pubsubd affiliations …`.

use std::io::BufRead;
use std::time::{Duration, Instant};

use xmpp_parsers::jid::Jid;

use super::{node_id, AffiliationsCommand, Ctx, SubscriptionsCommand};
use crate::cli::messages::{refusal, refused};
use crate::cli::CliError;
use crate::domain::{Affiliation, SubscriptionState};
use crate::pubsub::owner::SubscriptionChange;
use crate::store::AffiliationChange;

/// How often `import` reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub(crate) async fn run(ctx: &Ctx, cmd: SubscriptionsCommand) -> Result<(), CliError> {
    let admin = ctx.admin();
    match cmd {
        SubscriptionsCommand::List { node } => {
            let id = node_id(&node)?;
            let access = ctx
                .pubsub
                .store
                .node(&id)
                .await?
                .ok_or_else(|| refusal(&node, crate::domain::DomainError::NodeNotFound))?;
            let subs = ctx
                .pubsub
                .store
                .node_subscriptions(access.pk, u32::MAX)
                .await?;
            let rows = subs
                .into_iter()
                .map(|s| vec![s.jid.to_string(), s.state.to_string(), s.subid.to_string()])
                .collect();
            ctx.out.table(&["jid", "subscription", "subid"], rows);
            Ok(())
        }
        SubscriptionsCommand::Remove { node, subscriber } => {
            let jid: Jid = subscriber
                .parse()
                .map_err(|e| CliError::Input(format!("`{subscriber}` is not a valid JID: {e}")))?;
            ctx.pubsub
                .modify_subscriptions(
                    &admin,
                    &node_id(&node)?,
                    &[SubscriptionChange {
                        jid: jid.clone(),
                        state: SubscriptionState::None,
                        subid: None,
                    }],
                )
                .await
                .map_err(refused(&node))?;
            ctx.out.done(&format!("removed {jid} from {node}"));
            Ok(())
        }
        SubscriptionsCommand::Import { node, file } => import(ctx, &node, &file).await,
    }
}

async fn import(ctx: &Ctx, node: &str, file: &str) -> Result<(), CliError> {
    let id = node_id(node)?;
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(file).map_err(
            |e| CliError::Input(format!("cannot read {file}: {e}")),
        )?))
    };
    let (mut done, mut bad) = (0u64, 0u64);
    let mut last = Instant::now();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| CliError::Input(format!("cannot read {file}: {e}")))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Ok(jid) = line.parse::<Jid>() else {
            eprintln!("line {}: `{line}` is not a JID; skipped", n + 1);
            bad += 1;
            continue;
        };
        // As that user, with administrator rights: the access model is not in the way.
        let who = ctx.admin_as(&jid.to_bare());
        ctx.pubsub
            .subscribe(&who, &id, &jid, None)
            .await
            .map_err(|e| CliError::Refused(format!("line {}: {}", n + 1, refusal(node, e))))?;
        done += 1;
        if last.elapsed() >= PROGRESS_EVERY {
            eprintln!("{done} subscribed ...");
            last = Instant::now();
        }
    }
    ctx.out.done(&format!(
        "{done} subscriptions imported into {node}, {bad} lines skipped"
    ));
    Ok(())
}

pub(crate) async fn affiliations(ctx: &Ctx, cmd: AffiliationsCommand) -> Result<(), CliError> {
    let admin = ctx.admin();
    match cmd {
        AffiliationsCommand::Set {
            node,
            entity,
            affiliation,
        } => {
            let jid: Jid = entity
                .parse()
                .map_err(|e| CliError::Input(format!("`{entity}` is not a valid JID: {e}")))?;
            let affiliation = Affiliation::parse(&affiliation).map_err(|_| {
                CliError::Input(format!(
                    "`{affiliation}` is not an affiliation: give owner, publisher, publish-only, member, none or outcast"
                ))
            })?;
            ctx.pubsub
                .modify_affiliations(
                    &admin,
                    &node_id(&node)?,
                    &[AffiliationChange {
                        jid: jid.to_bare(),
                        affiliation,
                    }],
                )
                .await
                .map_err(refused(&node))?;
            ctx.out
                .done(&format!("{} is now {affiliation} of {node}", jid.to_bare()));
            Ok(())
        }
        AffiliationsCommand::List { node } => {
            let affs = ctx
                .pubsub
                .node_affiliations(&admin, &node_id(&node)?)
                .await
                .map_err(refused(&node))?;
            let rows = affs
                .into_iter()
                .map(|(j, a)| vec![j.to_string(), a.to_string()])
                .collect();
            ctx.out.table(&["jid", "affiliation"], rows);
            Ok(())
        }
    }
}
