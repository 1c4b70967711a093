//! `both_servers!`: one async test body, run against Prosody and ejabberd.

use crate::XmppServer;

/// Generates a module `$name` with two `#[tokio::test]`s, `prosody` and
/// `ejabberd` (so `cargo test $name` runs both), each running the closure
/// with a server of that kind.
///
/// Shared servers (the default) are `&'static XmppServer`s shared by every
/// test in the binary; tests must not stop them and should use unique user
/// names ([`XmppServer::create_user`](crate::XmppServer::create_user)).
/// `dedicated` gives each test its own `XmppServer` by value, for restart
/// tests.
///
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`).
/// The body is a closure returning a future; return `()` or any
/// `Result<(), E: Debug>`.
///
/// ```ignore
/// use pubsubd_testkit::both_servers;
///
/// both_servers!(ping_answers, |server| async move {
///     let account = server.create_user("alice").await?;
///     // ...
///     Ok::<_, anyhow::Error>(())
/// });
///
/// both_servers!(dedicated survives_restart, |server| async move {
///     let mut server = server;
///     server.stop()?;
///     server.start()?;
///     Ok::<_, anyhow::Error>(())
/// });
/// ```
#[macro_export]
macro_rules! both_servers {
    (dedicated $name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn prosody() {
                let server = $crate::XmppServer::start_new($crate::ServerKind::Prosody)
                    .expect("cannot start a dedicated Prosody");
                $crate::TestOutcome::check($crate::__with_dedicated(server, $body).await);
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ejabberd() {
                let server = $crate::XmppServer::start_new($crate::ServerKind::Ejabberd)
                    .expect("cannot start a dedicated ejabberd");
                $crate::TestOutcome::check($crate::__with_dedicated(server, $body).await);
            }
        }
    };
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn prosody() {
                let server = $crate::shared_prosody();
                $crate::TestOutcome::check($crate::__with_shared(server, $body).await);
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ejabberd() {
                let server = $crate::shared_ejabberd();
                $crate::TestOutcome::check($crate::__with_shared(server, $body).await);
            }
        }
    };
}

/// Calls a [`both_servers!`] body with a shared server. Passing the closure
/// through a function with an `FnOnce` bound lets the compiler infer the
/// type of its parameter, so bodies need no annotation.
#[doc(hidden)]
pub fn __with_shared<F, Fut>(server: &'static XmppServer, body: F) -> Fut
where
    F: FnOnce(&'static XmppServer) -> Fut,
{
    body(server)
}

/// Calls a [`both_servers!`] body with a dedicated server; see
/// [`__with_shared`].
#[doc(hidden)]
pub fn __with_dedicated<F, Fut>(server: XmppServer, body: F) -> Fut
where
    F: FnOnce(XmppServer) -> Fut,
{
    body(server)
}

/// What a [`both_servers!`] body may return: `()` or a `Result` whose error
/// fails the test.
pub trait TestOutcome {
    /// Panics (failing the test) on an error outcome.
    fn check(self);
}

impl TestOutcome for () {
    fn check(self) {}
}

impl<E: std::fmt::Debug> TestOutcome for Result<(), E> {
    fn check(self) {
        if let Err(e) = self {
            panic!("test failed: {e:?}");
        }
    }
}
