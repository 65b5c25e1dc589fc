-- Stripe Connect OAuth: credentials become a type. A connection's sealed
-- secrets move to rows of their own (an API key and the key kept after a
-- rotation; or a grant's access and refresh tokens), each sealed with the
-- connection's data key and its role bound into the associated data.
-- Timestamps are microseconds since the epoch.
CREATE TABLE connection_secrets (
    connection_id BLOB NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    role          TEXT NOT NULL
                  CHECK (role IN ('api_key', 'previous_api_key', 'access_token', 'refresh_token')),
    sealed        BLOB NOT NULL,
    expires_at    INTEGER,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (connection_id, role)
) STRICT;
CREATE INDEX connection_secrets_expiry ON connection_secrets (expires_at)
    WHERE expires_at IS NOT NULL;

INSERT INTO connection_secrets (connection_id, role, sealed, expires_at, created_at)
SELECT id, 'api_key', secret, NULL, updated_at FROM connections;
INSERT INTO connection_secrets (connection_id, role, sealed, expires_at, created_at)
SELECT id, 'previous_api_key', previous_secret, previous_key_expires_at, updated_at
FROM connections WHERE previous_secret IS NOT NULL;

DROP INDEX connections_previous_expiry;
ALTER TABLE connections DROP COLUMN secret;
ALTER TABLE connections DROP COLUMN previous_secret;

-- A Connect grant's platform client id, scope and refresh state.
ALTER TABLE connections ADD COLUMN oauth_client_id TEXT;
ALTER TABLE connections ADD COLUMN grant_scope TEXT;
ALTER TABLE connections ADD COLUMN grant_refreshed_at INTEGER;
ALTER TABLE connections ADD COLUMN refresh_lease_token BLOB;
ALTER TABLE connections ADD COLUMN refresh_lease_until INTEGER;
CREATE INDEX connections_by_auth_method ON connections (tenant_id, auth_method, livemode);

-- The tenant's Connect platform, one per mode: client id, sealed platform key,
-- registered redirect URIs.
CREATE TABLE stripe_platforms (
    tenant_id           BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    livemode            INTEGER NOT NULL,
    client_id           TEXT NOT NULL,
    key_hint            TEXT NOT NULL,
    platform_account_id TEXT,
    redirect_uris       TEXT NOT NULL DEFAULT '[]',
    scope               TEXT NOT NULL CHECK (scope IN ('read_write', 'read_only')),
    data_key_id         BLOB NOT NULL REFERENCES data_keys (id) ON DELETE CASCADE,
    secret              BLOB NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, livemode)
) STRICT;

-- Pending OAuth flows: only the hash of `state` is stored; single use, expiring.
CREATE TABLE oauth_states (
    state_hash         TEXT PRIMARY KEY,
    tenant_id          BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    livemode           INTEGER NOT NULL,
    external_id        TEXT,
    redirect_uri       TEXT NOT NULL,
    return_to          TEXT,
    scope              TEXT NOT NULL,
    session_id         BLOB,
    session_expires_at INTEGER,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);
CREATE INDEX oauth_states_by_tenant ON oauth_states (tenant_id);

-- Connect sessions that have created their one connection.
CREATE TABLE connect_session_uses (
    session_id    BLOB PRIMARY KEY,
    tenant_id     BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id BLOB NOT NULL,
    used_at       INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX connect_session_uses_expiry ON connect_session_uses (expires_at);
CREATE INDEX connect_session_uses_by_tenant ON connect_session_uses (tenant_id);

-- Browser origins a tenant allows on the connect-session routes (CORS).
CREATE TABLE tenant_origins (
    tenant_id BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    origin    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, origin)
) STRICT;
CREATE INDEX tenant_origins_by_origin ON tenant_origins (origin);
