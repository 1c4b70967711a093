//! XEP-0248 in configuration forms, against real Prosody and ejabberd, on both stores:
//! a form that changes a node's configuration and its links (`pubsub#collection`,
//! `pubsub#children`) takes effect whole or not at all, and the form shows a leaf the
//! fields of a leaf and a collection those of a collection (§6.2).

mod common;

use common::*;
use pubsubd_testkit::{both_servers, Client};

const COLLECTION: &[(&str, &str)] = &[("pubsub#node_type", "collection")];

/// An owner's configuration request for `node` whose form has `fields`, each with its
/// values (a multi-valued field such as `pubsub#children` in one field).
fn configure(node: &str, fields: &[(&str, &[&str])]) -> String {
    let mut x = format!(
        "<x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>http://jabber.org/protocol/pubsub#node_config</value></field>"
    );
    for (var, values) in fields {
        x.push_str(&format!("<field var='{var}'>"));
        for value in *values {
            x.push_str(&format!("<value>{value}</value>"));
        }
        x.push_str("</field>");
    }
    x.push_str("</x>");
    owner(&format!("<configure node='{node}'>{x}</configure>"))
}

/// The title, parents, children and `children_max` `node`'s form shows.
async fn state(c: &mut Client, ps: &Pubsubd, node: &str) -> anyhow::Result<[Vec<String>; 4]> {
    Ok([
        config_values(c, ps, node, "pubsub#title").await?,
        config_values(c, ps, node, "pubsub#collection").await?,
        config_values(c, ps, node, "pubsub#children").await?,
        config_values(c, ps, node, "pubsub#children_max").await?,
    ])
}

/// `pubsub#num_items` of `node`'s disco#info meta-data (§5.4).
async fn num_items(c: &mut Client, ps: &Pubsubd, node: &str) -> anyhow::Result<Option<String>> {
    const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    let reply = iq(
        c,
        ps,
        "get",
        &format!("<query xmlns='{NS_DISCO_INFO}' node='{node}'/>"),
    )
    .await?;
    ok(&reply);
    Ok(reply
        .get_child("query", NS_DISCO_INFO)
        .and_then(|q| q.get_child("x", NS_DATA))
        .and_then(|x| {
            x.children()
                .find(|f| f.attr("var") == Some("pubsub#num_items"))
        })
        .and_then(|f| f.children().find(|v| v.name() == "value"))
        .map(|v| v.text()))
}

both_servers!(
    a_form_changes_configuration_and_links_together_or_not_at_all,
    |server| async move {
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(
            &mut a,
            &ps,
            "full",
            &[
                ("pubsub#node_type", "collection"),
                ("pubsub#children_max", "1"),
            ],
        )
        .await?;
        create(&mut a, &ps, "kid", &[("pubsub#collection", "full")]).await?;
        create(&mut a, &ps, "top", COLLECTION).await?;
        create(
            &mut a,
            &ps,
            "mid",
            &[
                ("pubsub#node_type", "collection"),
                ("pubsub#collection", "top"),
            ],
        )
        .await?;
        create(&mut a, &ps, "leaf", &[("pubsub#title", "old")]).await?;
        let before = [
            state(&mut a, &ps, "full").await?,
            state(&mut a, &ps, "top").await?,
            state(&mut a, &ps, "mid").await?,
            state(&mut a, &ps, "leaf").await?,
        ];

        // A parent that is full: the new title is not kept either (§6.2.3.3).
        err(
            &iq(
                &mut a,
                &ps,
                "set",
                &configure(
                    "leaf",
                    &[("pubsub#title", &["new"]), ("pubsub#collection", &["full"])],
                ),
            )
            .await?,
            "cancel",
            "not-allowed",
            Some("max-nodes-exceeded"),
        );
        // A cycle (§6.2.3.5), with a title.
        err(
            &iq(
                &mut a,
                &ps,
                "set",
                &configure(
                    "top",
                    &[("pubsub#title", &["T"]), ("pubsub#collection", &["mid"])],
                ),
            )
            .await?,
            "cancel",
            "not-allowed",
            Some("invalid-options"),
        );
        // More children than the children_max of the same form.
        err(
            &iq(
                &mut a,
                &ps,
                "set",
                &configure(
                    "top",
                    &[
                        ("pubsub#children_max", &["1"]),
                        ("pubsub#children", &["mid", "leaf"]),
                    ],
                ),
            )
            .await?,
            "cancel",
            "not-allowed",
            Some("max-nodes-exceeded"),
        );
        // A children_max below the children held already.
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &configure("top", &[("pubsub#children", &["mid", "kid"])]),
        )
        .await?);
        let before_top = state(&mut a, &ps, "top").await?;
        err(
            &iq(
                &mut a,
                &ps,
                "set",
                &configure("top", &[("pubsub#children_max", &["1"])]),
            )
            .await?,
            "cancel",
            "not-allowed",
            Some("max-nodes-exceeded"),
        );
        assert_eq!(state(&mut a, &ps, "top").await?, before_top);
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &configure("top", &[("pubsub#children", &["mid"])]),
        )
        .await?);
        // And the other way round: a refused configuration (a collection made a leaf,
        // §6.2.3.4) leaves the links it came with unmade.
        err(
            &iq(
                &mut a,
                &ps,
                "set",
                &configure(
                    "mid",
                    &[
                        ("pubsub#node_type", &["leaf"]),
                        ("pubsub#collection", &[""]),
                    ],
                ),
            )
            .await?,
            "cancel",
            "not-allowed",
            Some("invalid-options"),
        );
        let after = [
            state(&mut a, &ps, "full").await?,
            state(&mut a, &ps, "top").await?,
            state(&mut a, &ps, "mid").await?,
            state(&mut a, &ps, "leaf").await?,
        ];
        assert_eq!(after, before, "nothing refused changed anything");

        // A form that is accepted changes both.
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &configure(
                "leaf",
                &[("pubsub#title", &["new"]), ("pubsub#collection", &["top"])],
            ),
        )
        .await?);
        assert_eq!(
            config_values(&mut a, &ps, "leaf", "pubsub#title").await?,
            ["new"]
        );
        assert_eq!(
            config_values(&mut a, &ps, "leaf", "pubsub#collection").await?,
            ["top"]
        );
        assert_eq!(
            config_values(&mut a, &ps, "top", "pubsub#children").await?,
            ["leaf", "mid"]
        );
        Ok::<_, anyhow::Error>(())
    }
);

both_servers!(
    a_leaf_form_offers_parents_and_a_collection_form_children_too,
    |server| async move {
        // XEP-0248 §6.2: `pubsub#node_type` and `pubsub#collection` on every node's
        // form; `pubsub#children` and `pubsub#children_max` (an option specific to
        // collections, which should not appear on a leaf's form) on collections only.
        let ps = start(server).await?;
        let mut a = user(server, "a").await?;
        create(&mut a, &ps, "coll", COLLECTION).await?;
        create(&mut a, &ps, "leaf", &[("pubsub#collection", "coll")]).await?;
        let vars = |fields: Vec<(String, Vec<String>)>| -> Vec<String> {
            fields
                .into_iter()
                .map(|(var, _)| var)
                .filter(|v| {
                    v == "pubsub#node_type"
                        || v == "pubsub#collection"
                        || v.starts_with("pubsub#children")
                })
                .collect()
        };
        assert_eq!(
            vars(config_fields(&mut a, &ps, "leaf").await?),
            ["pubsub#node_type", "pubsub#collection"]
        );
        assert_eq!(
            vars(config_fields(&mut a, &ps, "coll").await?),
            [
                "pubsub#node_type",
                "pubsub#children_max",
                "pubsub#collection",
                "pubsub#children"
            ]
        );
        // A leaf made a collection (§6.2.4) may name its first children in the same
        // form, though its form did not offer the field; its form offers it from then.
        // Its items are purged (§6.2.4), and its count says so.
        create(&mut a, &ps, "grows", &[]).await?;
        for id in ["1", "2"] {
            ok(&publish(&mut a, &ps, "grows", Some(id), "<x xmlns='urn:example'/>").await?);
        }
        assert_eq!(num_items(&mut a, &ps, "grows").await?.as_deref(), Some("2"));
        ok(&iq(
            &mut a,
            &ps,
            "set",
            &configure(
                "grows",
                &[
                    ("pubsub#node_type", &["collection"]),
                    ("pubsub#children", &["leaf"]),
                ],
            ),
        )
        .await?);
        assert_eq!(
            config_values(&mut a, &ps, "grows", "pubsub#children").await?,
            ["leaf"]
        );
        assert_eq!(num_items(&mut a, &ps, "grows").await?.as_deref(), Some("0"));
        assert_eq!(
            config_values(&mut a, &ps, "leaf", "pubsub#collection").await?,
            ["coll", "grows"]
        );
        Ok::<_, anyhow::Error>(())
    }
);
