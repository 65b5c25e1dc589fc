-- Webhooks. In: Stripe posts signed events to an endpoint of a connection, or
-- to one endpoint of the tenant's Connect platform (events of connected
-- accounts). Out: Patchbay delivers stored events, and its own, to the
-- tenant's subscriptions in the Standard Webhooks format, from the jobs table.
-- Signing secrets are sealed with the tenant's data key (the previous one kept
-- until it expires, while a secret is being rolled).
CREATE TABLE webhook_endpoints (
    id                  BLOB PRIMARY KEY,
    tenant_id           BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id       BLOB REFERENCES connections (id) ON DELETE CASCADE,
    livemode            INTEGER NOT NULL,
    events              TEXT NOT NULL DEFAULT '["*"]',
    description         TEXT,
    data_key_id         BLOB NOT NULL REFERENCES data_keys (id) ON DELETE CASCADE,
    secret              BLOB NOT NULL,
    secret_hint         TEXT NOT NULL,
    previous_secret     BLOB,
    previous_expires_at INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, id);
CREATE INDEX webhook_endpoints_by_connection ON webhook_endpoints (connection_id);

-- Events: Stripe's, stored once per (endpoint, Stripe event id), and
-- Patchbay's own (connection.created, …). `payload` is the event as received
-- (Stripe) or as built (Patchbay); `created` is the event's own time.
CREATE TABLE events (
    id              BLOB PRIMARY KEY,
    tenant_id       BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source          TEXT NOT NULL CHECK (source IN ('stripe', 'patchbay')),
    endpoint_id     BLOB REFERENCES webhook_endpoints (id) ON DELETE SET NULL,
    connection_id   BLOB REFERENCES connections (id) ON DELETE SET NULL,
    stripe_event_id TEXT,
    type            TEXT NOT NULL,
    account         TEXT,
    livemode        INTEGER NOT NULL,
    created         INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    payload         TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX events_endpoint_stripe_event ON events (endpoint_id, stripe_event_id);
CREATE INDEX events_by_tenant ON events (tenant_id, id);
CREATE INDEX events_by_connection ON events (connection_id, id);
CREATE INDEX events_received ON events (received_at);

-- The tenant's subscriptions: where events go. `connection_id` narrows one to
-- a connection's events (no foreign key: `connection.deleted` still reaches it).
CREATE TABLE event_subscriptions (
    id                  BLOB PRIMARY KEY,
    tenant_id           BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id       BLOB,
    url                 TEXT NOT NULL,
    events              TEXT NOT NULL,
    description         TEXT,
    status              TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
    disabled_reason     TEXT,
    failing_since       INTEGER,
    data_key_id         BLOB NOT NULL REFERENCES data_keys (id) ON DELETE CASCADE,
    secret              BLOB NOT NULL,
    secret_hint         TEXT NOT NULL,
    previous_secret     BLOB,
    previous_expires_at INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
) STRICT;
CREATE INDEX event_subscriptions_by_tenant ON event_subscriptions (tenant_id, id);

-- One delivery of one event to one subscription; its attempts are logged.
-- The work itself is a `webhook.deliver` job whose subject is the delivery.
CREATE TABLE event_deliveries (
    id               BLOB PRIMARY KEY,
    tenant_id        BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_id         BLOB NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    subscription_id  BLOB NOT NULL REFERENCES event_subscriptions (id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error       TEXT,
    next_attempt_at  INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX event_deliveries_by_event ON event_deliveries (event_id, id);
CREATE INDEX event_deliveries_by_subscription ON event_deliveries (subscription_id, status);

CREATE TABLE delivery_attempts (
    delivery_id      BLOB NOT NULL REFERENCES event_deliveries (id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL,
    attempted_at     INTEGER NOT NULL,
    status_code      INTEGER,
    duration_ms      INTEGER NOT NULL,
    error            TEXT,
    response_snippet TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (delivery_id, attempt)
) STRICT;
