-- What Stripe said about a connection's restricted-key permissions, learned
-- from its answers to actions: granted (a call needing it succeeded) or
-- missing (Stripe's 403 named it). Capabilities are read from here.
CREATE TABLE connection_permissions (
    connection_id     uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    permission        text NOT NULL,
    granted           boolean NOT NULL,
    stripe_request_id text,
    observed_at       timestamptz NOT NULL,
    PRIMARY KEY (connection_id, permission)
);
