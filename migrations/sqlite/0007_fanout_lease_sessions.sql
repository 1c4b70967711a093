-- The column of PostgreSQL's 0007_fanout_lease_sessions.sql, so both schemas have the
-- same columns. SQLite never sets it: one process holds the file (the instance lock),
-- and it clears every lease when it opens the file, so a dead owner's claims are taken
-- over by the next start without a liveness session (store::sqlite::fanout).
ALTER TABLE fanout_jobs ADD COLUMN lease_session INTEGER;
