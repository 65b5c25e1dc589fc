-- The client's own x-request-id, kept apart from the server's request id.
ALTER TABLE audit_events ADD COLUMN client_request_id TEXT;

-- Durable background work: one table, one worker loop. A job is claimed under
-- a lease (owner, token, expiry) and finished only by the token's holder. At
-- most one queued or running job per (kind, subject): enqueueing another is a
-- no-op. Finished jobs are deleted; dead ones stay for inspection.
CREATE TABLE jobs (
    id               BLOB PRIMARY KEY,
    kind             TEXT NOT NULL,
    tenant_id        BLOB REFERENCES tenants (id) ON DELETE CASCADE,
    subject_id       BLOB NOT NULL,
    payload          TEXT NOT NULL DEFAULT '{}',
    run_at           INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'dead')),
    lease_owner      TEXT,
    lease_token      BLOB,
    lease_expires_at INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_pending_subject ON jobs (kind, subject_id) WHERE status <> 'dead';
CREATE INDEX jobs_by_tenant ON jobs (tenant_id);

-- Re-validation moves from two columns of connections onto the jobs table.
-- Timestamps are microseconds since the epoch.
INSERT INTO jobs (id, kind, tenant_id, subject_id, payload, run_at, attempts, max_attempts,
                  status, created_at, updated_at)
SELECT randomblob(16), 'connection.revalidate', tenant_id, id, '{}', next_validation_at, 0, 10,
       'queued', CAST(strftime('%s', 'now') AS INTEGER) * 1000000,
       CAST(strftime('%s', 'now') AS INTEGER) * 1000000
FROM connections;
DROP INDEX connections_due;
ALTER TABLE connections DROP COLUMN next_validation_at;
ALTER TABLE connections DROP COLUMN lease_until;
