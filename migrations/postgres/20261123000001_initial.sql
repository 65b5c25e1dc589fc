-- Patchbay schema, PostgreSQL dialect: native uuid (UUIDv7, time-ordered),
-- timestamptz, jsonb and bytea.

CREATE TABLE master_key_checks (
    key_id      text PRIMARY KEY,
    check_value bytea NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE tenants (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    status     text NOT NULL CHECK (status IN ('active', 'disabled')),
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- One data key per tenant, wrapped by a master key. Deleting it crypto-shreds
-- every secret of the tenant.
CREATE TABLE data_keys (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    master_key_id text NOT NULL,
    wrapped       bytea NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX data_keys_by_tenant ON data_keys (tenant_id, id);
CREATE INDEX data_keys_by_master_key ON data_keys (master_key_id, id);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text,
    scopes       text NOT NULL,
    hint         text NOT NULL,
    hash         text NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    created_at   timestamptz NOT NULL
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

CREATE TABLE connections (
    id                      uuid PRIMARY KEY,
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider                text NOT NULL,
    auth_method             text NOT NULL,
    livemode                boolean NOT NULL,
    status                  text NOT NULL,
    stripe_account_id       text,
    account_name            text,
    account_country         text,
    default_currency        text,
    key_hint                text NOT NULL,
    external_id             text,
    name                    text,
    metadata                jsonb NOT NULL DEFAULT '{}',
    stripe_version          text,
    missing_permissions     jsonb NOT NULL DEFAULT '[]',
    last_validated_at       timestamptz,
    last_error              jsonb,
    data_key_id             uuid NOT NULL REFERENCES data_keys (id) ON DELETE CASCADE,
    secret                  bytea NOT NULL,
    previous_secret         bytea,
    previous_key_hint       text,
    previous_key_expires_at timestamptz,
    next_validation_at      timestamptz NOT NULL,
    lease_until             timestamptz,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL
);
CREATE INDEX connections_by_tenant ON connections (tenant_id, id);
CREATE INDEX connections_by_tenant_status ON connections (tenant_id, status, id);
CREATE UNIQUE INDEX connections_external_id ON connections (tenant_id, external_id);
CREATE INDEX connections_due ON connections (next_validation_at);
CREATE INDEX connections_previous_expiry ON connections (previous_key_expires_at)
    WHERE previous_key_expires_at IS NOT NULL;
-- Tenants import connections in bursts; analyze early so keyset pages keep
-- using connections_by_tenant instead of a plan made for an empty table.
ALTER TABLE connections SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 500);

-- Audit events outlive what they describe: no foreign key to tenants.
CREATE TABLE audit_events (
    id         uuid PRIMARY KEY,
    tenant_id  uuid,
    actor      text NOT NULL,
    action     text NOT NULL,
    target_id  text,
    details    jsonb NOT NULL DEFAULT '{}',
    request_id text,
    created_at timestamptz NOT NULL
);
CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, id);
