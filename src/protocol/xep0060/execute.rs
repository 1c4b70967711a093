//! Running a [`Command`] through [`Pubsub`] and rendering what it returns.

use minidom::Element;
use xmpp_parsers::ns;

use super::command::Command;
use super::render;
use crate::domain::collection::link_fields;
use crate::domain::{DomainError, SubscribeOptions};
use crate::pubsub::{Pubsub, Requester};

/// The reply payload of a request, or the error it earned.
pub type Answer = Result<Option<Element>, DomainError>;

fn wrap_owner(child: Element) -> Element {
    Element::builder("pubsub", ns::PUBSUB_OWNER)
        .append(child)
        .build()
}

/// Executes one command as `who`.
pub async fn execute(pubsub: &Pubsub, who: &Requester, cmd: Command) -> Answer {
    match cmd {
        Command::OwnSubscriptions { node } => {
            let subs = pubsub.own_subscriptions(who, node.as_ref()).await?;
            Ok(Some(render::own_subscriptions(node.as_ref(), &subs)))
        }
        Command::OwnAffiliations { node } => {
            let affs = pubsub.own_affiliations(who, node.as_ref()).await?;
            Ok(Some(render::own_affiliations(node.as_ref(), &affs)))
        }
        Command::Subscribe { node, jid, options } => {
            let record = pubsub.subscribe(who, &node, &jid, options.as_ref()).await?;
            Ok(Some(render::subscription(&record)))
        }
        Command::Unsubscribe { node, jid, subid } => {
            pubsub.unsubscribe(who, &node, &jid, subid.as_ref()).await?;
            Ok(None)
        }
        Command::GetOptions { node, jid, subid } => {
            let sub = pubsub
                .subscription_options(who, &node, &jid, subid.as_ref())
                .await?;
            Ok(Some(render::options(&sub)))
        }
        Command::SetOptions {
            node,
            jid,
            subid,
            form,
        } => {
            pubsub
                .set_subscription_options(who, &node, &jid, subid.as_ref(), &form)
                .await?;
            Ok(None)
        }
        Command::DefaultOptions { node } => {
            if let Some(node) = &node {
                // The node must exist (§6.4.3.2); its defaults are the service's.
                pubsub
                    .store
                    .node(node)
                    .await
                    .map_err(crate::pubsub::internal)?
                    .ok_or(DomainError::NodeNotFound)?;
            }
            Ok(Some(render::default_options(
                node.as_ref(),
                &SubscribeOptions::default(),
            )))
        }
        Command::Items {
            node,
            query,
            subid,
            paged,
        } => {
            let got = pubsub.items(who, &node, query, subid.as_ref()).await?;
            Ok(Some(render::items(&got, paged)))
        }
        Command::Publish {
            node,
            item,
            options,
        } => {
            let done = pubsub.publish(who, &node, item, options.as_ref()).await?;
            Ok(Some(render::published(&done.node, done.id.as_ref())))
        }
        Command::Retract { node, ids, notify } => {
            pubsub.retract(who, &node, &ids, notify).await?;
            Ok(None)
        }
        Command::Create { node, form } => {
            let node = pubsub.create_node(who, node, form.as_ref()).await?;
            Ok(Some(render::created(&node.name)))
        }
        Command::GetConfig { node } => {
            let config = pubsub.node_config(who, &node).await?;
            let (_, links) = pubsub.node_links(who, &node).await?;
            let mut form = config.to_form();
            form.fields.extend(link_fields(
                config.node_type,
                &links.parents,
                &links.children,
            ));
            Ok(Some(wrap_owner(
                Element::builder("configure", ns::PUBSUB_OWNER)
                    .attr(render::xml_name("node"), node.as_str())
                    .append(Element::from(form))
                    .build(),
            )))
        }
        Command::Associate { collection, child } => {
            pubsub.associate(who, &collection, &child).await?;
            Ok(None)
        }
        Command::Dissociate { collection, child } => {
            pubsub.dissociate(who, &collection, &child).await?;
            Ok(None)
        }
        Command::Configure { node, form } => {
            pubsub.configure_node(who, &node, &form).await?;
            Ok(None)
        }
        Command::CancelConfigure { node } => {
            pubsub.node_config(who, &node).await?;
            Ok(None)
        }
        Command::DefaultConfig => {
            let form = pubsub.default_node_config().to_form();
            Ok(Some(wrap_owner(
                Element::builder("default", ns::PUBSUB_OWNER)
                    .append(Element::from(form))
                    .build(),
            )))
        }
        Command::Delete { node, redirect } => {
            pubsub.delete_node(who, &node, redirect.as_deref()).await?;
            Ok(None)
        }
        Command::Purge { node } => {
            pubsub.purge_node(who, &node).await?;
            Ok(None)
        }
        Command::NodeSubscriptions { node } => {
            let subs = pubsub.node_subscriptions(who, &node).await?;
            Ok(Some(render::node_subscriptions(&node, &subs)))
        }
        Command::ModifySubscriptions { node, changes } => {
            pubsub.modify_subscriptions(who, &node, &changes).await?;
            Ok(None)
        }
        Command::NodeAffiliations { node } => {
            let affs = pubsub.node_affiliations(who, &node).await?;
            Ok(Some(render::node_affiliations(&node, &affs)))
        }
        Command::ModifyAffiliations { node, changes } => {
            pubsub.modify_affiliations(who, &node, &changes).await?;
            Ok(None)
        }
    }
}
