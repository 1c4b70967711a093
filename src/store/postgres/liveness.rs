//! The process's liveness session on PostgreSQL: what frees a dead process's fan-out
//! claims at once instead of when their lease runs out.
//!
//! The process keeps one connection of its own (not a pool's, which could be closed or
//! handed around) for its whole life, and on it holds a session-level advisory lock
//! `(SESSION_LOCK_CLASS, key)`, the key fresh from the `fanout_sessions` sequence.
//! Every claim records the key (`fanout_jobs.lease_session`), and a claimer treats a
//! lease whose key is no longer locked as dead ([`live_lease!`]): PostgreSQL drops the
//! lock when the backend ends, which it does as soon as the process's socket closes
//! (SIGKILL, a crash, an OOM kill), or when an administrator terminates it.
//!
//! Fencing: a heartbeat on the connection every [`HEARTBEAT_EVERY`] tells the process
//! that its backend, and so its lock, is still there. When a heartbeat fails or does
//! not come back within [`HEARTBEAT_TIMEOUT`], the session is published as lost
//! (`None`) before anything else, and the engine stops sending for the claims made under
//! it ([`crate::store::claims::Liveness`]) and gives them back; then a new connection
//! locks a **new** key. Re-locking the old key would not be safe: leases of the old
//! session that the process has just abandoned would look alive again, and be worked by
//! nobody until their timer ran out; and a claimer that had seen the old key dead and
//! was about to take its jobs over would race with an owner that believed it still held
//! them. A key that is never reused goes from alive to dead once and stays dead.
//!
//! An owner that is alive but cut off from the database keeps its lock (PostgreSQL does
//! not know the peer is gone) until TCP keepalives end the backend
//! ([`SERVER_KEEPALIVES`]); its leases' timer frees them first at the latest. It stopped
//! sending long before: its heartbeat failed within [`HEARTBEAT_TIMEOUT`].
//!
//! Must not: claim or touch jobs (that is [`super::claims`]).

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};
use tokio::sync::watch;

use crate::store::claims::{Liveness, SessionKey};
use crate::store::StoreError;

/// First key of the session locks, as SQL text (the second key is the session): a
/// class of its own ("pslv"), so a session lock never collides with the claim's
/// per-node transaction locks (class "psfd", [`super::claims`]). A macro so that the
/// lock statement and the liveness test in the claim queries share one literal.
macro_rules! session_lock_class {
    () => {
        "1886612598"
    };
}
pub(crate) use session_lock_class;

/// The SQL query "the keys of the sessions alive in this database": those whose lock
/// is held (advisory locks are per database; the two-key form shows as
/// `objsubid = 2`). `pg_locks` is readable by every user.
macro_rules! live_sessions {
    () => {
        concat!(
            "SELECT objid::int FROM pg_locks
             WHERE locktype = 'advisory' AND classid = ",
            $crate::store::postgres::liveness::session_lock_class!(),
            " AND objsubid = 2 AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    };
}
pub(crate) use live_sessions;

/// The SQL condition "the lease of row `l` is live": its timer runs, and it was taken
/// without a session or its session's lock is still held. The lock test reads
/// `pg_locks` once per statement (an uncorrelated `IN`, planned as a hashed subplan),
/// and only for leased rows, which the claim finds through `fanout_jobs_leased`.
macro_rules! live_lease {
    () => {
        concat!(
            "l.lease_owner IS NOT NULL AND l.lease_until > now() AND (
                l.lease_session IS NULL OR l.lease_session IN (",
            $crate::store::postgres::liveness::live_sessions!(),
            "))"
        )
    };
}
pub(crate) use live_lease;

/// The heartbeat: the live sessions of this database, read on the session's own
/// connection. That it answers at all proves the backend, and so its lock, is still
/// there; that it lists our key proves the lock is; a key that was listed before and is
/// gone now is another process's session that ended, whose claims are free.
const HEARTBEAT_SQL: &str = concat!("SELECT ARRAY(", live_sessions!(), ")");

/// Takes the session lock; `false` if another backend holds the key (never, with keys
/// from the sequence, unless someone locked it by hand).
const LOCK_SQL: &str = concat!(
    "SELECT pg_try_advisory_lock(",
    session_lock_class!(),
    ", $1)"
);

/// How often the process checks that its session is there, and looks for sessions of
/// others that ended. A lost session is noticed within this (plus a round trip), so the
/// engine stops sending for a dead session's claims about as soon as another process can
/// take them over; and another's death wakes idle workers within this, where the slow
/// poll would take 5 s. A read of `pg_locks` four times a second is cheap.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);
/// A heartbeat not answered within this counts as a lost session: a database that
/// cannot read its lock table for us in a second is as good as gone for fencing, and
/// the owner must stop long before its leases (30 s by default) can run out.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between attempts to open a new session while the database is away.
const RECONNECT_EVERY: Duration = Duration::from_millis(250);
/// Longest wait for a new session's connection and lock: a database that is not there
/// may leave a connect hanging for the kernel's TCP timeout, and the process is without
/// a session (and so without claims) until one opens.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalives for the session's backend (`tcp_keepalives_idle`, `_interval`,
/// `_count`): a process whose host vanished (no FIN, no RST) lets its lock go after
/// about 10 + 3 × 2 = 16 s instead of the kernel's two hours, before its leases' timer
/// (30 s by default). While the process lives, heartbeats keep the socket busy, so they
/// never fire.
const SERVER_KEEPALIVES: [(&str, &str); 3] = [
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "2"),
    ("tcp_keepalives_count", "3"),
];
/// How the session's backend shows in `pg_stat_activity`, for operators (and tests)
/// looking for it.
pub const APPLICATION_NAME: &str = "pubsubd liveness";

/// Opens the first session and keeps one open for as long as any [`Liveness`] handle
/// exists: returns once the first session is held, so that the first claims have one.
pub async fn start(options: &PgConnectOptions) -> Result<Liveness, StoreError> {
    let options = options
        .clone()
        .application_name(APPLICATION_NAME)
        .options(SERVER_KEEPALIVES)
        .disable_statement_logging();
    let (conn, key) = open(&options).await?;
    let (current, current_rx) = watch::channel(Some(key));
    let (ended, ended_rx) = watch::channel(0u64);
    tracing::info!(session = key.0, "fan-out liveness session opened");
    tokio::spawn(keep(options, conn, key, current, ended));
    Ok(Liveness::sessions(current_rx, ended_rx))
}

/// A new connection holding the lock of a new session key.
async fn open(options: &PgConnectOptions) -> Result<(PgConnection, SessionKey), StoreError> {
    tokio::time::timeout(OPEN_TIMEOUT, open_now(options))
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!("no liveness session within {OPEN_TIMEOUT:?}"))
        })?
}

async fn open_now(options: &PgConnectOptions) -> Result<(PgConnection, SessionKey), StoreError> {
    let mut conn = PgConnection::connect_with(options).await?;
    loop {
        let key: i32 = sqlx::query_scalar("SELECT nextval('fanout_sessions')::int")
            .fetch_one(&mut conn)
            .await?;
        let locked: bool = sqlx::query_scalar(LOCK_SQL)
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            return Ok((conn, SessionKey(key)));
        }
        tracing::warn!(
            session = key,
            "session key locked by someone else; taking the next"
        );
    }
}

/// Heartbeats on `conn`, holding session `key`; when the session is lost, says so at
/// once and opens a new one. Bumps `ended` when another session ended. Ends when
/// nobody holds a [`Liveness`] handle any more.
async fn keep(
    options: PgConnectOptions,
    mut conn: PgConnection,
    mut key: SessionKey,
    current: watch::Sender<Option<SessionKey>>,
    ended: watch::Sender<u64>,
) {
    let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Vec<i32> = Vec::new();
    loop {
        beat.tick().await;
        if current.is_closed() {
            let _ = conn.close().await;
            return;
        }
        let answered = tokio::time::timeout(
            HEARTBEAT_TIMEOUT,
            sqlx::query_scalar::<_, Vec<i32>>(HEARTBEAT_SQL).fetch_one(&mut conn),
        )
        .await;
        let failure = match answered {
            Ok(Ok(live)) if live.contains(&key.0) => {
                if seen.iter().any(|k| !live.contains(k)) {
                    ended.send_modify(|n| *n = n.wrapping_add(1));
                }
                seen = live;
                continue;
            }
            Ok(Ok(_)) => "the session lock is no longer held".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {HEARTBEAT_TIMEOUT:?}"),
        };
        // First the fence, then everything else: from here on no page goes out for
        // the old session's claims.
        current.send_replace(None);
        tracing::warn!(
            session = key.0,
            error = %failure,
            "fan-out liveness session lost: no more sending for its claims; opening a new one"
        );
        // Dropped, not closed: a close would wait for a server that may not answer.
        drop(conn);
        (conn, key) = loop {
            if current.is_closed() {
                return;
            }
            match open(&options).await {
                Ok(opened) => break opened,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open a fan-out liveness session");
                    tokio::time::sleep(RECONNECT_EVERY).await;
                }
            }
        };
        tracing::info!(session = key.0, "fan-out liveness session opened");
        current.send_replace(Some(key));
        seen.clear();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_session_claim_and_fold_lock_classes_differ() {
        // Advisory locks of one database share one key space: a class taken twice
        // would let a claim, a liveness session or a fold be taken for another kind.
        let session: i32 = session_lock_class!().parse().expect("a number");
        let claim = super::super::claims::CLAIM_LOCK_CLASS;
        let fold = super::super::FOLD_LOCK_CLASS;
        assert_eq!(session.to_be_bytes(), *b"pslv");
        assert_eq!(claim.to_be_bytes(), *b"psfd");
        assert_eq!(fold.to_be_bytes(), *b"psic");
        assert_ne!(session, claim);
        assert_ne!(session, fold);
        assert_ne!(claim, fold);
    }
}
