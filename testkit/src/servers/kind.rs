//! The kinds of XMPP server the testkit can start, and the dispatch to each
//! kind's config writer and command line.

use std::fmt;
use std::process::Command;

use super::layout::ServerLayout;
use super::{ejabberd, prosody};

/// Which XMPP server implementation an instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerKind {
    /// Prosody 0.12 (Lua).
    Prosody,
    /// ejabberd 23.01 (Erlang).
    Ejabberd,
}

impl ServerKind {
    /// Both kinds, for tests that run against each.
    pub const ALL: [ServerKind; 2] = [ServerKind::Prosody, ServerKind::Ejabberd];

    /// Lower-case name, used in directory names and test names.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody",
            ServerKind::Ejabberd => "ejabberd",
        }
    }

    pub(super) fn write_config(self, layout: &ServerLayout) -> anyhow::Result<()> {
        match self {
            ServerKind::Prosody => prosody::write_config(layout),
            ServerKind::Ejabberd => ejabberd::write_config(layout),
        }
    }

    pub(super) fn command(self, layout: &ServerLayout) -> Command {
        match self {
            ServerKind::Prosody => prosody::command(layout),
            ServerKind::Ejabberd => ejabberd::command(layout),
        }
    }

    pub(super) fn ready_markers(self, layout: &ServerLayout) -> Vec<String> {
        match self {
            ServerKind::Prosody => prosody::ready_markers(layout),
            ServerKind::Ejabberd => ejabberd::ready_markers(layout),
        }
    }

    pub(super) fn failure_markers(self) -> &'static [&'static str] {
        match self {
            ServerKind::Prosody => prosody::FAILURE_MARKERS,
            ServerKind::Ejabberd => ejabberd::FAILURE_MARKERS,
        }
    }

    pub(super) fn port_in_use_marker(self) -> &'static str {
        match self {
            ServerKind::Prosody => prosody::PORT_IN_USE_MARKER,
            ServerKind::Ejabberd => ejabberd::PORT_IN_USE_MARKER,
        }
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
