-- Stripe Connect OAuth: credentials become a type. A connection's sealed
-- secrets move to rows of their own (an API key and the key kept after a
-- rotation; or a grant's access and refresh tokens), each sealed with the
-- connection's data key and its role bound into the associated data.
CREATE TABLE connection_secrets (
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    role          text NOT NULL
                  CHECK (role IN ('api_key', 'previous_api_key', 'access_token', 'refresh_token')),
    sealed        bytea NOT NULL,
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (connection_id, role)
);
CREATE INDEX connection_secrets_expiry ON connection_secrets (expires_at)
    WHERE expires_at IS NOT NULL;

INSERT INTO connection_secrets (connection_id, role, sealed, expires_at, created_at)
SELECT id, 'api_key', secret, NULL, updated_at FROM connections;
INSERT INTO connection_secrets (connection_id, role, sealed, expires_at, created_at)
SELECT id, 'previous_api_key', previous_secret, previous_key_expires_at, updated_at
FROM connections WHERE previous_secret IS NOT NULL;

DROP INDEX connections_previous_expiry;
ALTER TABLE connections DROP COLUMN secret, DROP COLUMN previous_secret;

-- A Connect grant's platform client id, scope and refresh state.
ALTER TABLE connections
    ADD COLUMN oauth_client_id     text,
    ADD COLUMN grant_scope         text,
    ADD COLUMN grant_refreshed_at  timestamptz,
    ADD COLUMN refresh_lease_token uuid,
    ADD COLUMN refresh_lease_until timestamptz;
CREATE INDEX connections_by_auth_method ON connections (tenant_id, auth_method, livemode);

-- The tenant's Connect platform, one per mode: client id, sealed platform key,
-- registered redirect URIs.
CREATE TABLE stripe_platforms (
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    livemode            boolean NOT NULL,
    client_id           text NOT NULL,
    key_hint            text NOT NULL,
    platform_account_id text,
    redirect_uris       jsonb NOT NULL DEFAULT '[]',
    scope               text NOT NULL CHECK (scope IN ('read_write', 'read_only')),
    data_key_id         uuid NOT NULL REFERENCES data_keys (id) ON DELETE CASCADE,
    secret              bytea NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, livemode)
);

-- Pending OAuth flows: only the hash of `state` is stored; single use, expiring.
CREATE TABLE oauth_states (
    state_hash         text PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    livemode           boolean NOT NULL,
    external_id        text,
    redirect_uri       text NOT NULL,
    return_to          text,
    scope              text NOT NULL,
    session_id         uuid,
    session_expires_at timestamptz,
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);
CREATE INDEX oauth_states_by_tenant ON oauth_states (tenant_id);

-- Connect sessions that have created their one connection.
CREATE TABLE connect_session_uses (
    session_id    uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id uuid NOT NULL,
    used_at       timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX connect_session_uses_expiry ON connect_session_uses (expires_at);
CREATE INDEX connect_session_uses_by_tenant ON connect_session_uses (tenant_id);

-- Browser origins a tenant allows on the connect-session routes (CORS).
CREATE TABLE tenant_origins (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    origin    text NOT NULL,
    PRIMARY KEY (tenant_id, origin)
);
CREATE INDEX tenant_origins_by_origin ON tenant_origins (origin);
