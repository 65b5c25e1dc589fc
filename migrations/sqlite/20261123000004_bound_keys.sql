-- A tenant API key may be bound to one connection: it then calls only the
-- raw proxy's root paths (/v1/*, /v2/*) for that connection, like a Stripe
-- key, which is all an official SDK needs. Deleting the connection deletes
-- its bound keys (an unbound key would reach every connection).
ALTER TABLE api_keys ADD COLUMN connection_id BLOB REFERENCES connections (id) ON DELETE CASCADE;
CREATE INDEX api_keys_by_connection ON api_keys (connection_id) WHERE connection_id IS NOT NULL;
