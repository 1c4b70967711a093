//! The permission table, tested as use cases and exhaustively over every combination of
//! affiliation × access model × publish model × subscription state × what the owners'
//! rosters say (presence subscription, roster group: unknown, no, yes).

use super::*;

const AFFILIATIONS: [Affiliation; 6] = Affiliation::ALL;
const KNOWN: [Option<bool>; 3] = [None, Some(false), Some(true)];

fn ctx(affiliation: Affiliation, access_model: AccessModel) -> AccessContext {
    AccessContext {
        affiliation,
        subscription: SubscriptionState::None,
        presence_subscribed: Some(false),
        in_roster_group: Some(false),
        access_model,
        publish_model: PublishModel::Publishers,
    }
}

/// Every context the rules can be asked about.
fn all_contexts() -> impl Iterator<Item = AccessContext> {
    AFFILIATIONS.into_iter().flat_map(|affiliation| {
        AccessModel::ALL.into_iter().flat_map(move |access_model| {
            PublishModel::ALL
                .into_iter()
                .flat_map(move |publish_model| {
                    SubscriptionState::ALL
                        .into_iter()
                        .flat_map(move |subscription| {
                            KNOWN.into_iter().flat_map(move |presence_subscribed| {
                                KNOWN.into_iter().map(move |in_roster_group| AccessContext {
                                    affiliation,
                                    subscription,
                                    presence_subscribed,
                                    in_roster_group,
                                    access_model,
                                    publish_model,
                                })
                            })
                        })
                })
        })
    })
}

/// A short code for an outcome, so expectations read as a table.
fn code<T: Into<Outcome>>(result: Result<T, DomainError>) -> &'static str {
    match result {
        Ok(v) => match v.into() {
            Outcome::Allowed => "ok",
            Outcome::Pending => "pending",
        },
        Err(DomainError::Forbidden) => "forbidden",
        Err(DomainError::ClosedNode) => "closed-node",
        Err(DomainError::NodeNotFound) => "hidden",
        Err(DomainError::NotAuthorized { reason }) => match reason {
            NotAuthorizedReason::PresenceSubscriptionRequired => "presence-required",
            NotAuthorizedReason::PresenceUnknown => "presence-unknown",
            NotAuthorizedReason::NotInRosterGroup => "not-in-roster-group",
            NotAuthorizedReason::RosterUnknown => "roster-unknown",
            NotAuthorizedReason::NotSubscribed => "not-subscribed",
        },
        Err(DomainError::PendingSubscription) => "pending-subscription",
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

enum Outcome {
    Allowed,
    Pending,
}

impl From<()> for Outcome {
    fn from(_: ()) -> Self {
        Outcome::Allowed
    }
}

impl From<SubscribeDecision> for Outcome {
    fn from(d: SubscribeDecision) -> Self {
        match d {
            SubscribeDecision::Subscribed => Outcome::Allowed,
            SubscribeDecision::Pending => Outcome::Pending,
        }
    }
}

/// Checks `f` against a table whose rows follow [`Affiliation::ALL`] and whose columns
/// follow [`AccessModel::ALL`] (open, presence, roster, authorize, whitelist).
fn assert_table<T: Into<Outcome>>(
    table: [[&str; 5]; 6],
    base: impl Fn(Affiliation, AccessModel) -> AccessContext,
    f: impl Fn(&AccessContext) -> Result<T, DomainError>,
) {
    for (row, affiliation) in table.iter().zip(AFFILIATIONS) {
        for (expected, model) in row.iter().zip(AccessModel::ALL) {
            let got = code(f(&base(affiliation, model)));
            assert_eq!(got, *expected, "{affiliation} on a {model} node");
        }
    }
}

// ---- The tables (XEP-0060 §4.1 × §4.5), for a requester with no subscription and no
// ---- presence subscription to the owner.

#[test]
fn subscribe_table() {
    assert_table(
        [
            ["ok", "ok", "ok", "ok", "ok"], // owner
            ["ok", "ok", "ok", "ok", "ok"], // publisher
            [
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
            ], // publish-only
            ["ok", "ok", "ok", "ok", "ok"], // member
            [
                "ok",
                "presence-required",
                "not-in-roster-group",
                "pending",
                "closed-node",
            ], // none
            [
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
            ], // outcast
        ],
        ctx,
        check_subscribe,
    );
}

#[test]
fn retrieve_items_table() {
    assert_table(
        [
            ["ok", "ok", "ok", "ok", "ok"],
            ["ok", "ok", "ok", "ok", "ok"],
            [
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
            ],
            ["ok", "ok", "ok", "ok", "ok"],
            [
                "ok",
                "presence-required",
                "not-in-roster-group",
                "not-subscribed",
                "closed-node",
            ],
            [
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
            ],
        ],
        ctx,
        check_retrieve_items,
    );
}

#[test]
fn retrieve_items_table_for_active_subscribers() {
    // The owners' rosters no longer admit the subscriber: the subscription granted under
    // them does not outlive them.
    let subscribed = |a, m| AccessContext {
        subscription: SubscriptionState::Subscribed,
        ..ctx(a, m)
    };
    assert_table(
        [
            ["ok", "ok", "ok", "ok", "ok"],
            ["ok", "ok", "ok", "ok", "ok"],
            [
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
            ],
            ["ok", "ok", "ok", "ok", "ok"],
            [
                "ok",
                "presence-required",
                "not-in-roster-group",
                "ok",
                "closed-node",
            ],
            [
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
                "forbidden",
            ],
        ],
        subscribed,
        check_retrieve_items,
    );
}

#[test]
fn node_visibility_table() {
    assert_table(
        [
            ["ok", "ok", "ok", "ok", "ok"],
            ["ok", "ok", "ok", "ok", "ok"],
            ["ok", "ok", "ok", "ok", "ok"],
            ["ok", "ok", "ok", "ok", "ok"],
            ["ok", "ok", "ok", "ok", "hidden"],
            ["ok", "ok", "ok", "ok", "hidden"],
        ],
        ctx,
        check_node_metadata_visibility,
    );
}

#[test]
fn publish_table() {
    // Rows: affiliations; columns: publishers, subscribers, open; (unsubscribed, subscribed).
    let expected: [[(&str, &str); 3]; 6] = [
        [("ok", "ok"), ("ok", "ok"), ("ok", "ok")],
        [("ok", "ok"), ("ok", "ok"), ("ok", "ok")],
        [("ok", "ok"), ("ok", "ok"), ("ok", "ok")],
        [
            ("forbidden", "forbidden"),
            ("forbidden", "ok"),
            ("ok", "ok"),
        ],
        [
            ("forbidden", "forbidden"),
            ("forbidden", "ok"),
            ("ok", "ok"),
        ],
        [
            ("forbidden", "forbidden"),
            ("forbidden", "forbidden"),
            ("forbidden", "forbidden"),
        ],
    ];
    for (row, affiliation) in expected.iter().zip(AFFILIATIONS) {
        for ((unsubscribed, subscribed), publish_model) in row.iter().zip(PublishModel::ALL) {
            for access_model in AccessModel::ALL {
                let mut c = AccessContext {
                    publish_model,
                    ..ctx(affiliation, access_model)
                };
                assert_eq!(
                    code(check_publish(&c)),
                    *unsubscribed,
                    "{affiliation} {publish_model}"
                );
                c.subscription = SubscriptionState::Subscribed;
                assert_eq!(
                    code(check_publish(&c)),
                    *subscribed,
                    "{affiliation} {publish_model}"
                );
            }
        }
    }
}

#[test]
fn retract_table() {
    // Rows: affiliations; columns: (own item, someone else's) under publish models
    // publishers and open.
    let expected: [[(&str, &str); 2]; 6] = [
        [("ok", "ok"), ("ok", "ok")],
        [("ok", "ok"), ("ok", "ok")],
        [("ok", "forbidden"), ("ok", "forbidden")],
        [("forbidden", "forbidden"), ("ok", "forbidden")],
        [("forbidden", "forbidden"), ("ok", "forbidden")],
        [("forbidden", "forbidden"), ("forbidden", "forbidden")],
    ];
    for (row, affiliation) in expected.iter().zip(AFFILIATIONS) {
        for ((own, other), publish_model) in row
            .iter()
            .zip([PublishModel::Publishers, PublishModel::Open])
        {
            let c = AccessContext {
                publish_model,
                ..ctx(affiliation, AccessModel::Open)
            };
            assert_eq!(
                code(check_retract(&c, ItemAuthor::Requester)),
                *own,
                "{affiliation} {publish_model}"
            );
            assert_eq!(
                code(check_retract(&c, ItemAuthor::Other)),
                *other,
                "{affiliation} {publish_model}"
            );
        }
    }
}

// ---- Exhaustive properties over every context.

type Check = fn(&AccessContext) -> Result<(), DomainError>;

const OWNER_ONLY: [(&str, Check); 5] = [
    ("purge", check_purge),
    ("delete", check_delete),
    ("configure", check_configure),
    ("manage subscriptions", check_manage_subscriptions),
    ("manage affiliations", check_manage_affiliations),
];

#[test]
fn owner_use_cases_are_for_owners_only_in_every_context() {
    for c in all_contexts() {
        for (action, check) in OWNER_ONLY {
            let expected = if c.affiliation == Affiliation::Owner {
                "ok"
            } else {
                "forbidden"
            };
            assert_eq!(code(check(&c)), expected, "{action} by {c:?}");
        }
    }
}

#[test]
fn owner_may_do_everything_in_every_context() {
    for c in all_contexts().filter(|c| c.affiliation == Affiliation::Owner) {
        if c.subscription != SubscriptionState::Pending {
            assert_eq!(
                check_subscribe(&c),
                Ok(SubscribeDecision::Subscribed),
                "{c:?}"
            );
        }
        assert_eq!(check_retrieve_items(&c), Ok(()), "{c:?}");
        assert_eq!(check_publish(&c), Ok(()), "{c:?}");
        assert_eq!(check_retract(&c, ItemAuthor::Other), Ok(()), "{c:?}");
        assert_eq!(check_node_metadata_visibility(&c), Ok(()), "{c:?}");
    }
}

#[test]
fn outcast_is_forbidden_everything_in_every_context() {
    for c in all_contexts().filter(|c| c.affiliation == Affiliation::Outcast) {
        assert_eq!(check_subscribe(&c), Err(DomainError::Forbidden), "{c:?}");
        assert_eq!(
            check_retrieve_items(&c),
            Err(DomainError::Forbidden),
            "{c:?}"
        );
        assert_eq!(check_publish(&c), Err(DomainError::Forbidden), "{c:?}");
        for author in [ItemAuthor::Requester, ItemAuthor::Other] {
            assert_eq!(
                check_retract(&c, author),
                Err(DomainError::Forbidden),
                "{c:?}"
            );
        }
    }
}

#[test]
fn publish_only_never_subscribes_or_retrieves_but_always_publishes() {
    for c in all_contexts().filter(|c| c.affiliation == Affiliation::PublishOnly) {
        assert_eq!(check_subscribe(&c), Err(DomainError::Forbidden), "{c:?}");
        assert_eq!(
            check_retrieve_items(&c),
            Err(DomainError::Forbidden),
            "{c:?}"
        );
        assert_eq!(check_publish(&c), Ok(()), "{c:?}");
        assert_eq!(check_retract(&c, ItemAuthor::Requester), Ok(()), "{c:?}");
        assert_eq!(
            check_retract(&c, ItemAuthor::Other),
            Err(DomainError::Forbidden),
            "{c:?}"
        );
    }
}

/// An unknown-roster refusal as the refusal of a roster that said no.
fn as_known<T>(r: Result<T, DomainError>) -> Result<T, DomainError> {
    r.map_err(|e| match e {
        DomainError::NotAuthorized {
            reason: NotAuthorizedReason::PresenceUnknown,
        } => not_authorized(NotAuthorizedReason::PresenceSubscriptionRequired),
        DomainError::NotAuthorized {
            reason: NotAuthorizedReason::RosterUnknown,
        } => not_authorized(NotAuthorizedReason::NotInRosterGroup),
        other => other,
    })
}

#[test]
fn unknown_rosters_refuse_newcomers_as_a_no_would_and_say_so() {
    // Without the roster privilege a newcomer is refused as if the rosters said no,
    // with a reason saying the service cannot tell.
    for c in all_contexts().filter(|c| !c.subscription.is_active()) {
        let known_no = AccessContext {
            presence_subscribed: c.presence_subscribed.or(Some(false)),
            in_roster_group: c.in_roster_group.or(Some(false)),
            ..c
        };
        assert_eq!(
            as_known(check_subscribe(&c)),
            check_subscribe(&known_no),
            "{c:?}"
        );
        assert_eq!(
            as_known(check_retrieve_items(&c)),
            check_retrieve_items(&known_no),
            "{c:?}"
        );
    }
}

/// Neither outcast nor publish-only: the access model is asked at all.
fn is_granted_or_outcast_free(c: &AccessContext) -> bool {
    !matches!(
        c.affiliation,
        Affiliation::Outcast | Affiliation::PublishOnly
    )
}

#[test]
fn the_rosters_decide_for_subscribers_and_newcomers_alike() {
    for c in all_contexts().filter(|c| {
        c.access_model.needs_rosters()
            && is_granted_or_outcast_free(c)
            && !matches!(
                c.affiliation,
                Affiliation::Owner | Affiliation::Publisher | Affiliation::Member
            )
            && c.subscription != SubscriptionState::Pending
    }) {
        let known = match c.access_model {
            AccessModel::Presence => c.presence_subscribed,
            _ => c.in_roster_group,
        };
        let expected = known.unwrap_or(c.subscription.is_active());
        assert_eq!(check_retrieve_items(&c).is_ok(), expected, "{c:?}");
        assert_eq!(check_subscribe(&c).is_ok(), expected, "{c:?}");
    }
}

#[test]
fn each_model_reads_only_its_own_roster_fact() {
    for c in all_contexts() {
        let flipped = match c.access_model {
            AccessModel::Presence => AccessContext {
                in_roster_group: c.in_roster_group.map(|b| !b),
                ..c
            },
            _ => AccessContext {
                presence_subscribed: c.presence_subscribed.map(|b| !b),
                ..c
            },
        };
        assert_eq!(check_subscribe(&c), check_subscribe(&flipped), "{c:?}");
        assert_eq!(
            check_retrieve_items(&c),
            check_retrieve_items(&flipped),
            "{c:?}"
        );
    }
}

#[test]
fn whoever_is_subscribed_immediately_may_also_retrieve_items() {
    for c in all_contexts() {
        if check_subscribe(&c) == Ok(SubscribeDecision::Subscribed) {
            assert_eq!(check_retrieve_items(&c), Ok(()), "{c:?}");
        }
    }
}

#[test]
fn whoever_may_retrieve_items_may_see_the_node() {
    for c in all_contexts() {
        if check_retrieve_items(&c).is_ok() {
            assert_eq!(check_node_metadata_visibility(&c), Ok(()), "{c:?}");
        }
    }
}

#[test]
fn a_pending_request_is_never_repeated_or_upgraded() {
    for c in all_contexts().filter(|c| c.subscription == SubscriptionState::Pending) {
        let expected = match c.affiliation {
            Affiliation::Outcast | Affiliation::PublishOnly => DomainError::Forbidden,
            _ => DomainError::PendingSubscription,
        };
        assert_eq!(check_subscribe(&c), Err(expected), "{c:?}");
    }
}

#[test]
fn only_the_authorize_model_ever_yields_pending() {
    for c in all_contexts() {
        if check_subscribe(&c) == Ok(SubscribeDecision::Pending) {
            assert_eq!(c.access_model, AccessModel::Authorize, "{c:?}");
            assert_eq!(c.affiliation, Affiliation::None, "{c:?}");
        }
    }
}

// ---- Use cases.

#[test]
fn outcast_cannot_subscribe() {
    let c = ctx(Affiliation::Outcast, AccessModel::Open);
    assert_eq!(check_subscribe(&c), Err(DomainError::Forbidden));
}

#[test]
fn stranger_may_subscribe_to_open_node() {
    let c = ctx(Affiliation::None, AccessModel::Open);
    assert_eq!(check_subscribe(&c), Ok(SubscribeDecision::Subscribed));
}

#[test]
fn member_may_subscribe_to_whitelist_node() {
    let c = ctx(Affiliation::Member, AccessModel::Whitelist);
    assert_eq!(check_subscribe(&c), Ok(SubscribeDecision::Subscribed));
}

#[test]
fn stranger_cannot_subscribe_to_whitelist_node() {
    let c = ctx(Affiliation::None, AccessModel::Whitelist);
    assert_eq!(check_subscribe(&c), Err(DomainError::ClosedNode));
}

#[test]
fn stale_subscription_does_not_reopen_a_whitelist_node() {
    let c = AccessContext {
        subscription: SubscriptionState::Subscribed,
        ..ctx(Affiliation::None, AccessModel::Whitelist)
    };
    assert_eq!(check_subscribe(&c), Err(DomainError::ClosedNode));
    assert_eq!(check_retrieve_items(&c), Err(DomainError::ClosedNode));
}

#[test]
fn presence_subscriber_may_subscribe_to_presence_node() {
    let c = AccessContext {
        presence_subscribed: Some(true),
        ..ctx(Affiliation::None, AccessModel::Presence)
    };
    assert_eq!(check_subscribe(&c), Ok(SubscribeDecision::Subscribed));
    assert_eq!(check_retrieve_items(&c), Ok(()));
}

#[test]
fn stranger_without_presence_subscription_is_told_it_is_required() {
    let c = ctx(Affiliation::None, AccessModel::Presence);
    assert_eq!(
        check_subscribe(&c),
        Err(DomainError::NotAuthorized {
            reason: NotAuthorizedReason::PresenceSubscriptionRequired
        })
    );
}

#[test]
fn stranger_on_roster_node_is_not_in_roster_group() {
    let c = ctx(Affiliation::None, AccessModel::Roster);
    assert_eq!(
        check_subscribe(&c),
        Err(DomainError::NotAuthorized {
            reason: NotAuthorizedReason::NotInRosterGroup
        })
    );
}

#[test]
fn stranger_subscribing_to_authorize_node_waits_for_approval() {
    let c = ctx(Affiliation::None, AccessModel::Authorize);
    assert_eq!(check_subscribe(&c), Ok(SubscribeDecision::Pending));
}

#[test]
fn member_is_auto_approved_on_authorize_node() {
    let c = ctx(Affiliation::Member, AccessModel::Authorize);
    assert_eq!(check_subscribe(&c), Ok(SubscribeDecision::Subscribed));
}

#[test]
fn pending_subscriber_cannot_subscribe_again() {
    let c = AccessContext {
        subscription: SubscriptionState::Pending,
        ..ctx(Affiliation::None, AccessModel::Authorize)
    };
    assert_eq!(check_subscribe(&c), Err(DomainError::PendingSubscription));
}

#[test]
fn pending_subscriber_cannot_retrieve_items_from_authorize_node() {
    let c = AccessContext {
        subscription: SubscriptionState::Pending,
        ..ctx(Affiliation::None, AccessModel::Authorize)
    };
    assert_eq!(
        check_retrieve_items(&c),
        Err(DomainError::NotAuthorized {
            reason: NotAuthorizedReason::NotSubscribed
        })
    );
}

#[test]
fn approved_subscriber_may_retrieve_items_from_authorize_node() {
    let c = AccessContext {
        subscription: SubscriptionState::Subscribed,
        ..ctx(Affiliation::None, AccessModel::Authorize)
    };
    assert_eq!(check_retrieve_items(&c), Ok(()));
}

#[test]
fn stranger_may_retrieve_items_from_open_node_without_subscribing() {
    assert_eq!(
        check_retrieve_items(&ctx(Affiliation::None, AccessModel::Open)),
        Ok(())
    );
}

#[test]
fn stranger_cannot_publish_to_a_publishers_node() {
    assert_eq!(
        check_publish(&ctx(Affiliation::None, AccessModel::Open)),
        Err(DomainError::Forbidden)
    );
}

#[test]
fn subscriber_may_publish_to_a_subscribers_node() {
    let c = AccessContext {
        subscription: SubscriptionState::Subscribed,
        publish_model: PublishModel::Subscribers,
        ..ctx(Affiliation::None, AccessModel::Open)
    };
    assert_eq!(check_publish(&c), Ok(()));
}

#[test]
fn publisher_may_retract_any_item() {
    let c = ctx(Affiliation::Publisher, AccessModel::Open);
    assert_eq!(check_retract(&c, ItemAuthor::Other), Ok(()));
}

#[test]
fn publish_only_may_retract_only_its_own_items() {
    let c = ctx(Affiliation::PublishOnly, AccessModel::Open);
    assert_eq!(check_retract(&c, ItemAuthor::Requester), Ok(()));
    assert_eq!(
        check_retract(&c, ItemAuthor::Other),
        Err(DomainError::Forbidden)
    );
}

#[test]
fn publisher_cannot_purge_delete_or_configure() {
    let c = ctx(Affiliation::Publisher, AccessModel::Open);
    assert_eq!(check_purge(&c), Err(DomainError::Forbidden));
    assert_eq!(check_delete(&c), Err(DomainError::Forbidden));
    assert_eq!(check_configure(&c), Err(DomainError::Forbidden));
}

#[test]
fn service_admin_acts_as_owner() {
    let c = ctx(Affiliation::None.effective(true), AccessModel::Whitelist);
    assert_eq!(check_delete(&c), Ok(()));
    assert_eq!(check_manage_affiliations(&c), Ok(()));
    assert_eq!(check_retrieve_items(&c), Ok(()));
}

#[test]
fn whitelist_node_is_hidden_from_strangers_but_not_from_members() {
    assert_eq!(
        check_node_metadata_visibility(&ctx(Affiliation::None, AccessModel::Whitelist)),
        Err(DomainError::NodeNotFound)
    );
    assert_eq!(
        check_node_metadata_visibility(&ctx(Affiliation::Member, AccessModel::Whitelist)),
        Ok(())
    );
}

#[test]
fn entity_acts_for_its_own_full_and_bare_jids_only() {
    let me = BareJid::new("francisco@denmark.lit").unwrap();
    let mine = Jid::new("francisco@denmark.lit/barracks").unwrap();
    let other = Jid::new("bernardo@denmark.lit").unwrap();
    assert!(acts_for(&me, &mine, false));
    assert!(acts_for(&me, &Jid::from(me.clone()), false));
    assert!(!acts_for(&me, &other, false));
    assert!(
        acts_for(&me, &other, true),
        "a service admin may act for anyone"
    );
}

#[test]
fn only_presence_and_roster_need_rosters() {
    let needing: Vec<_> = AccessModel::ALL
        .into_iter()
        .filter(|m| m.needs_rosters())
        .collect();
    assert_eq!(needing, [AccessModel::Presence, AccessModel::Roster]);
}

#[test]
fn contact_in_an_allowed_group_may_subscribe_to_roster_node() {
    let c = AccessContext {
        in_roster_group: Some(true),
        ..ctx(Affiliation::None, AccessModel::Roster)
    };
    assert_eq!(check_subscribe(&c), Ok(SubscribeDecision::Subscribed));
    assert_eq!(check_retrieve_items(&c), Ok(()));
}

#[test]
fn without_the_roster_privilege_the_error_says_why() {
    let c = AccessContext {
        presence_subscribed: None,
        in_roster_group: None,
        ..ctx(Affiliation::None, AccessModel::Presence)
    };
    let err = check_subscribe(&c).expect_err("fails closed");
    assert_eq!(
        err,
        DomainError::NotAuthorized {
            reason: NotAuthorizedReason::PresenceUnknown
        }
    );
    assert!(err.to_string().contains("roster privilege"), "{err}");
    let c = AccessContext {
        access_model: AccessModel::Roster,
        ..c
    };
    assert!(check_retrieve_items(&c)
        .expect_err("fails closed")
        .to_string()
        .contains("roster privilege"));
}

#[test]
fn model_names_round_trip() {
    for m in AccessModel::ALL {
        assert_eq!(AccessModel::parse(m.as_str()), Ok(m));
    }
    for m in PublishModel::ALL {
        assert_eq!(PublishModel::parse(m.as_str()), Ok(m));
    }
    assert!(AccessModel::parse("private").is_err());
}

// ---- Keeping a subscription (the revocation sweep).

/// A subscriber whose subscription is active, with what the rosters say as given.
fn subscribed_with(known: Option<bool>) -> impl Fn(Affiliation, AccessModel) -> AccessContext {
    move |affiliation, access_model| AccessContext {
        subscription: SubscriptionState::Subscribed,
        presence_subscribed: known,
        in_roster_group: known,
        ..ctx(affiliation, access_model)
    }
}

#[test]
fn keep_subscription_table() {
    const FORBIDDEN: [&str; 5] = ["forbidden"; 5];
    const OK: [&str; 5] = ["ok"; 5];
    // The rosters say no: only the unaffiliated lose it, and only on roster nodes.
    assert_table(
        [
            OK,
            OK,
            FORBIDDEN,
            OK,
            ["ok", "presence-required", "not-in-roster-group", "ok", "ok"],
            FORBIDDEN,
        ],
        subscribed_with(Some(false)),
        check_keep_subscription,
    );
    // The rosters cannot be read, or say yes: an active subscription stays.
    for known in [None, Some(true)] {
        assert_table(
            [OK, OK, FORBIDDEN, OK, OK, FORBIDDEN],
            subscribed_with(known),
            check_keep_subscription,
        );
    }
}

#[test]
fn a_subscription_is_taken_back_only_on_a_known_no_in_every_context() {
    for c in all_contexts() {
        let keep = check_keep_subscription(&c).is_ok();
        let fact = match c.access_model {
            AccessModel::Presence => c.presence_subscribed,
            AccessModel::Roster => c.in_roster_group,
            _ => Some(true),
        };
        let expected = match c.affiliation {
            Affiliation::Outcast | Affiliation::PublishOnly => false,
            Affiliation::Owner | Affiliation::Publisher | Affiliation::Member => true,
            Affiliation::None => match fact {
                Some(yes) => yes,
                None => c.subscription.is_active(),
            },
        };
        assert_eq!(keep, expected, "{c:?}");
        if keep && c.subscription.is_active() && c.access_model.needs_rosters() {
            // On the roster models, whatever may be kept may be subscribed to again.
            assert!(check_subscribe(&c).is_ok(), "{c:?}");
        }
    }
}
