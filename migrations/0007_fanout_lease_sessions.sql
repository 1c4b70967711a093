-- Fan-out claims freed by their owner's death instead of a timer. Each pubsubd process
-- holds a session-level advisory lock (class 'pslv', key = its session) on a connection
-- kept for its lifetime (store::postgres::liveness); a claim records that session, and
-- a claimer treats a lease whose session lock is no longer held as dead at once. The
-- lease timer stays, for an owner that is alive but cut off.

-- The claimer's liveness session; NULL for a lease taken without one (by a pubsubd from
-- before this migration, which the timer alone frees).
ALTER TABLE fanout_jobs ADD COLUMN lease_session INTEGER;

-- Session keys are never handed out twice (until the sequence wraps after 2^31
-- sessions): a lease of a lost session can never look alive again because a later
-- session happens to lock the same key.
CREATE SEQUENCE fanout_sessions AS INTEGER CYCLE;
