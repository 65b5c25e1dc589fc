-- Webhooks. In: Stripe posts signed events to an endpoint of a connection, or
-- to one endpoint of the tenant's Connect platform (events of connected
-- accounts). Out: Patchbay delivers stored events, and its own, to the
-- tenant's subscriptions in the Standard Webhooks format, from the jobs table.
-- Signing secrets are sealed with the tenant's data key (the previous one kept
-- until it expires, while a secret is being rolled).
CREATE TABLE webhook_endpoints (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id       uuid REFERENCES connections (id) ON DELETE CASCADE,
    livemode            boolean NOT NULL,
    events              jsonb NOT NULL DEFAULT '["*"]',
    description         text,
    data_key_id         uuid NOT NULL REFERENCES data_keys (id) ON DELETE CASCADE,
    secret              bytea NOT NULL,
    secret_hint         text NOT NULL,
    previous_secret     bytea,
    previous_expires_at timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, id);
CREATE INDEX webhook_endpoints_by_connection ON webhook_endpoints (connection_id);

-- Events: Stripe's, stored once per (endpoint, Stripe event id), and
-- Patchbay's own (connection.created, …). `payload` is the event as received
-- (Stripe) or as built (Patchbay); `created` is the event's own time.
CREATE TABLE events (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source          text NOT NULL CHECK (source IN ('stripe', 'patchbay')),
    endpoint_id     uuid REFERENCES webhook_endpoints (id) ON DELETE SET NULL,
    connection_id   uuid REFERENCES connections (id) ON DELETE SET NULL,
    stripe_event_id text,
    type            text NOT NULL,
    account         text,
    livemode        boolean NOT NULL,
    created         timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    payload         text NOT NULL
);
CREATE UNIQUE INDEX events_endpoint_stripe_event ON events (endpoint_id, stripe_event_id);
CREATE INDEX events_by_tenant ON events (tenant_id, id);
CREATE INDEX events_by_connection ON events (connection_id, id);
CREATE INDEX events_received ON events (received_at);

-- The tenant's subscriptions: where events go. `connection_id` narrows one to
-- a connection's events (no foreign key: `connection.deleted` still reaches it).
CREATE TABLE event_subscriptions (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id       uuid,
    url                 text NOT NULL,
    events              jsonb NOT NULL,
    description         text,
    status              text NOT NULL CHECK (status IN ('enabled', 'disabled')),
    disabled_reason     text,
    failing_since       timestamptz,
    data_key_id         uuid NOT NULL REFERENCES data_keys (id) ON DELETE CASCADE,
    secret              bytea NOT NULL,
    secret_hint         text NOT NULL,
    previous_secret     bytea,
    previous_expires_at timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX event_subscriptions_by_tenant ON event_subscriptions (tenant_id, id);

-- One delivery of one event to one subscription; its attempts are logged.
-- The work itself is a `webhook.deliver` job whose subject is the delivery.
CREATE TABLE event_deliveries (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_id         uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    subscription_id  uuid NOT NULL REFERENCES event_subscriptions (id) ON DELETE CASCADE,
    status           text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX event_deliveries_by_event ON event_deliveries (event_id, id);
CREATE INDEX event_deliveries_by_subscription ON event_deliveries (subscription_id, status);

CREATE TABLE delivery_attempts (
    delivery_id      uuid NOT NULL REFERENCES event_deliveries (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    attempted_at     timestamptz NOT NULL,
    status_code      integer,
    duration_ms      integer NOT NULL,
    error            text,
    response_snippet text NOT NULL DEFAULT '',
    PRIMARY KEY (delivery_id, attempt)
);
