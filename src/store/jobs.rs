//! Fan-out jobs as the store sees them: the contract between the requests that change a
//! node and the fan-out engine that tells subscribers.
//!
//! A request inserts a [`NewJob`] in the same transaction as its change (the backends'
//! `insert_job`, [`super::sql::claims`]); the engine claims, walks and completes jobs.

/// Who receives a job's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobTarget {
    /// Every subscriber of the node (subject to presence and subscription options).
    Subscribers,
    /// One JID only (last published item on subscribe, subscription state changes,
    /// the owner's approval form).
    Jid(String),
}

/// What kind of notification a job carries; the engine filters recipients by it
/// (`deliver_notifications`, `notify_retract`, and similar settings are applied when
/// the job is created, not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Items,
    Retract,
    Purge,
    /// The node was deleted: after the last notification the engine removes the node row.
    Delete,
    Config,
    Subscription,
    /// Any other message to a single JID (for example the approval form).
    Direct,
}

impl JobKind {
    /// The value stored in `fanout_jobs.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Items => "items",
            JobKind::Retract => "retract",
            JobKind::Purge => "purge",
            JobKind::Delete => "delete",
            JobKind::Config => "config",
            JobKind::Subscription => "subscription",
            JobKind::Direct => "direct",
        }
    }

    /// Parses a stored value.
    pub fn parse(s: &str) -> Option<JobKind> {
        Some(match s {
            "items" => JobKind::Items,
            "retract" => JobKind::Retract,
            "purge" => JobKind::Purge,
            "delete" => JobKind::Delete,
            "config" => JobKind::Config,
            "subscription" => JobKind::Subscription,
            "direct" => JobKind::Direct,
            _ => return None,
        })
    }
}

/// A notification to send, as queued by a request.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub node_pk: i64,
    pub kind: JobKind,
    /// The message's child element(s), rendered once, e.g. the whole `<event/>`.
    pub payload_xml: String,
    /// `true` for `type='headline'`, `false` for `type='normal'`.
    pub headline: bool,
    pub target: JobTarget,
}

impl NewJob {
    /// The value stored in `fanout_jobs.message_type`.
    pub fn message_type(&self) -> &'static str {
        if self.headline {
            "headline"
        } else {
            "normal"
        }
    }

    /// The value stored in `fanout_jobs.target_jid` (`NULL`: every subscriber).
    pub fn target_jid(&self) -> Option<&str> {
        match &self.target {
            JobTarget::Subscribers => None,
            JobTarget::Jid(j) => Some(j),
        }
    }
}
