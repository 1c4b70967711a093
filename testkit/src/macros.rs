//! `both_servers!`: one async test body, run against Prosody and ejabberd, on
//! PostgreSQL and on SQLite. `both_stores!`: one async test body that needs no
//! server of its own, run on both stores.

use crate::XmppServer;

/// Generates a module `$name` with four `#[tokio::test]`s, `prosody_postgres`,
/// `prosody_sqlite`, `ejabberd_postgres` and `ejabberd_sqlite` (so `cargo test $name`
/// runs them all), each running the closure with a server of that kind while the
/// harness creates stores of that backend ([`StoreKind::current`](crate::StoreKind::current)).
///
/// `postgres` before the name generates only the two PostgreSQL tests, `prosody` and
/// `ejabberd`: for tests about PostgreSQL itself (an outage, several instances on one
/// database) or about the link alone, whose store makes no difference.
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
    (dedicated postgres $name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__server_test!(dedicated prosody, Prosody, Postgres, $body);
            $crate::__server_test!(dedicated ejabberd, Ejabberd, Postgres, $body);
        }
    };
    (dedicated $name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__server_test!(dedicated prosody_postgres, Prosody, Postgres, $body);
            $crate::__server_test!(dedicated prosody_sqlite, Prosody, Sqlite, $body);
            $crate::__server_test!(dedicated ejabberd_postgres, Ejabberd, Postgres, $body);
            $crate::__server_test!(dedicated ejabberd_sqlite, Ejabberd, Sqlite, $body);
        }
    };
    (postgres $name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__server_test!(shared prosody, Prosody, Postgres, $body);
            $crate::__server_test!(shared ejabberd, Ejabberd, Postgres, $body);
        }
    };
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__server_test!(shared prosody_postgres, Prosody, Postgres, $body);
            $crate::__server_test!(shared prosody_sqlite, Prosody, Sqlite, $body);
            $crate::__server_test!(shared ejabberd_postgres, Ejabberd, Postgres, $body);
            $crate::__server_test!(shared ejabberd_sqlite, Ejabberd, Sqlite, $body);
        }
    };
}

/// One test of [`both_servers!`]: a server of `$server` kind, shared or dedicated,
/// and stores of `$store` kind.
#[doc(hidden)]
#[macro_export]
macro_rules! __server_test {
    (shared $test:ident, $server:ident, $store:ident, $body:expr) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let server = $crate::shared($crate::ServerKind::$server);
            if let Some(outcome) = $crate::on_store(
                $crate::StoreKind::$store,
                $crate::__with_shared(server, $body),
            )
            .await
            {
                $crate::TestOutcome::check(outcome);
            }
        }
    };
    (dedicated $test:ident, $server:ident, $store:ident, $body:expr) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            if $crate::StoreKind::selected()
                .map(|only| only.is_some_and(|k| k != $crate::StoreKind::$store))
                .unwrap_or(false)
            {
                return;
            }
            let server = $crate::XmppServer::start_new($crate::ServerKind::$server)
                .expect("cannot start a dedicated server");
            if let Some(outcome) = $crate::on_store(
                $crate::StoreKind::$store,
                $crate::__with_dedicated(server, $body),
            )
            .await
            {
                $crate::TestOutcome::check(outcome);
            }
        }
    };
}

/// For an async test function `$name` (not itself a `#[tokio::test]`) that sets up its
/// own servers: generates a module `$name` with two `#[tokio::test]`s, `postgres` and
/// `sqlite`, each calling it with the harness creating stores of that backend.
///
/// ```ignore
/// async fn restart_keeps_items() -> anyhow::Result<()> {
///     let store = TestStore::create().await?;
///     // ...
///     Ok(())
/// }
/// both_stores!(restart_keeps_items);
/// ```
#[macro_export]
macro_rules! both_stores {
    ($name:ident) => {
        mod $name {
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(outcome) =
                    $crate::on_store($crate::StoreKind::Postgres, super::$name()).await
                {
                    $crate::TestOutcome::check(outcome);
                }
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(outcome) =
                    $crate::on_store($crate::StoreKind::Sqlite, super::$name()).await
                {
                    $crate::TestOutcome::check(outcome);
                }
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
