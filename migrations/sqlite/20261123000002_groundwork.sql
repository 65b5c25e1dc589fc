-- The client's own x-request-id, kept apart from the server's request id.
ALTER TABLE audit_events ADD COLUMN client_request_id TEXT;
