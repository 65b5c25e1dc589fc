-- Patchbay schema, SQLite dialect. Ids are 16-byte UUIDv7 blobs (time-ordered);
-- timestamps are INTEGER microseconds since the Unix epoch.

CREATE TABLE master_key_checks (
    key_id      TEXT PRIMARY KEY,
    check_value BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE tenants (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    metadata   TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- One data key per tenant, wrapped by a master key. Deleting it crypto-shreds
-- every secret of the tenant.
CREATE TABLE data_keys (
    id            BLOB PRIMARY KEY,
    tenant_id     BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    master_key_id TEXT NOT NULL,
    wrapped       BLOB NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX data_keys_by_tenant ON data_keys (tenant_id, id);
CREATE INDEX data_keys_by_master_key ON data_keys (master_key_id, id);

CREATE TABLE api_keys (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT,
    scopes       TEXT NOT NULL,
    hint         TEXT NOT NULL,
    hash         TEXT NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

CREATE TABLE connections (
    id                      BLOB PRIMARY KEY,
    tenant_id               BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider                TEXT NOT NULL,
    auth_method             TEXT NOT NULL,
    livemode                INTEGER NOT NULL,
    status                  TEXT NOT NULL,
    stripe_account_id       TEXT,
    account_name            TEXT,
    account_country         TEXT,
    default_currency        TEXT,
    key_hint                TEXT NOT NULL,
    external_id             TEXT,
    name                    TEXT,
    metadata                TEXT NOT NULL DEFAULT '{}',
    stripe_version          TEXT,
    missing_permissions     TEXT NOT NULL DEFAULT '[]',
    last_validated_at       INTEGER,
    last_error              TEXT,
    data_key_id             BLOB NOT NULL REFERENCES data_keys (id) ON DELETE CASCADE,
    secret                  BLOB NOT NULL,
    previous_secret         BLOB,
    previous_key_hint       TEXT,
    previous_key_expires_at INTEGER,
    next_validation_at      INTEGER NOT NULL,
    lease_until             INTEGER,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
) STRICT;
CREATE INDEX connections_by_tenant ON connections (tenant_id, id);
CREATE INDEX connections_by_tenant_status ON connections (tenant_id, status, id);
CREATE UNIQUE INDEX connections_external_id ON connections (tenant_id, external_id);
CREATE INDEX connections_due ON connections (next_validation_at);
CREATE INDEX connections_previous_expiry ON connections (previous_key_expires_at)
    WHERE previous_key_expires_at IS NOT NULL;

-- Audit events outlive what they describe: no foreign key to tenants.
CREATE TABLE audit_events (
    id         BLOB PRIMARY KEY,
    tenant_id  BLOB,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target_id  TEXT,
    details    TEXT NOT NULL DEFAULT '{}',
    request_id TEXT,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, id);
