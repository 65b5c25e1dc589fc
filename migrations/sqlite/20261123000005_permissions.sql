-- What Stripe said about a connection's restricted-key permissions, learned
-- from its answers to actions: granted (a call needing it succeeded) or
-- missing (Stripe's 403 named it). Capabilities are read from here.
CREATE TABLE connection_permissions (
    connection_id     BLOB NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    permission        TEXT NOT NULL,
    granted           INTEGER NOT NULL,
    stripe_request_id TEXT,
    observed_at       INTEGER NOT NULL,
    PRIMARY KEY (connection_id, permission)
) STRICT;
