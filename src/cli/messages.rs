//! What the command line says when something fails: one line of plain English per
//! error, naming the thing the operator typed ("no node named nosuch"), never the
//! protocol's condition names.

use crate::app::StartError;
use crate::config::ConfigError;
use crate::domain::error::FailureKind;
use crate::domain::DomainError;
use crate::store::StoreError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service refused the change; the text explains why in terms of the command.
    #[error("{0}")]
    Refused(String),
    /// A value given on the command line (or in an input file) is not usable.
    #[error("{0}")]
    Input(String),
    /// Required settings were not given; all of them are named at once.
    #[error("{command} needs {}", list(.missing))]
    Missing {
        command: &'static str,
        missing: Vec<&'static str>,
    },
}

/// "a", "a and b", "a, b and c".
fn list(items: &[&'static str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A domain refusal of a command on `node`, in plain English.
pub fn refusal(node: &str, e: DomainError) -> CliError {
    CliError::Refused(match e {
        DomainError::NodeNotFound => format!("no node named {node}"),
        DomainError::ItemNotFound => format!("no such item in node {node}"),
        DomainError::NodeExists => format!("a node named {node} already exists"),
        DomainError::LastOwner => {
            format!("{node} would have no owner left: make someone else owner first")
        }
        DomainError::Forbidden => format!("not allowed on node {node}"),
        DomainError::PayloadTooBig => {
            "the payload is larger than max_payload_size allows".to_string()
        }
        DomainError::InvalidPayload => "the payload is not one XML element".to_string(),
        DomainError::Internal {
            kind: FailureKind::Unavailable,
            details,
        } => format!("the database is unavailable: {details}"),
        DomainError::Internal { details, .. } => format!("internal error: {details}"),
        other => format!("node {node}: {other}"),
    })
}

/// Binds [`refusal`] to a node name, for `map_err`.
pub fn refused(node: &str) -> impl FnOnce(DomainError) -> CliError + '_ {
    move |e| refusal(node, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_plain_english() {
        assert_eq!(
            refusal("nosuch", DomainError::NodeNotFound).to_string(),
            "no node named nosuch"
        );
        assert!(!refusal("n", DomainError::NodeExists)
            .to_string()
            .contains("refused"));
    }

    #[test]
    fn every_missing_flag_is_named_in_one_message() {
        let e = CliError::Missing {
            command: "pubsubd publish",
            missing: vec!["--node NODE", "--jid JID", "a FILE"],
        };
        assert_eq!(
            e.to_string(),
            "pubsubd publish needs --node NODE, --jid JID and a FILE"
        );
    }
}
