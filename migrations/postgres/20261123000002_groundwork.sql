-- The client's own x-request-id, kept apart from the server's request id.
ALTER TABLE audit_events ADD COLUMN client_request_id text;

-- Durable background work: one table, one worker loop. A job is claimed under
-- a lease (owner, token, expiry) and finished only by the token's holder. At
-- most one queued or running job per (kind, subject): enqueueing another is a
-- no-op. Finished jobs are deleted; dead ones stay for inspection.
CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    kind             text NOT NULL,
    tenant_id        uuid REFERENCES tenants (id) ON DELETE CASCADE,
    subject_id       uuid NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}',
    run_at           timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    status           text NOT NULL CHECK (status IN ('queued', 'running', 'dead')),
    lease_owner      text,
    lease_token      uuid,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_pending_subject ON jobs (kind, subject_id) WHERE status <> 'dead';
CREATE INDEX jobs_by_tenant ON jobs (tenant_id);

-- Re-validation moves from two columns of connections onto the jobs table.
INSERT INTO jobs (id, kind, tenant_id, subject_id, payload, run_at, attempts, max_attempts,
                  status, created_at, updated_at)
SELECT gen_random_uuid(), 'connection.revalidate', tenant_id, id, '{}', next_validation_at, 0, 10,
       'queued', now(), now()
FROM connections;
DROP INDEX connections_due;
ALTER TABLE connections DROP COLUMN next_validation_at, DROP COLUMN lease_until;
