-- A tenant's own limits, set by the platform admin; NULL is the server's
-- default (PATCHBAY_TENANT_RATE_LIMIT, PATCHBAY_TENANT_RATE_BURST,
-- PATCHBAY_TENANT_MAX_CONCURRENT_UPSTREAM).

ALTER TABLE tenants
    ADD COLUMN limit_requests_per_second bigint
        CHECK (limit_requests_per_second IS NULL OR limit_requests_per_second > 0),
    ADD COLUMN limit_burst bigint
        CHECK (limit_burst IS NULL OR limit_burst > 0),
    ADD COLUMN limit_max_concurrent_upstream bigint
        CHECK (limit_max_concurrent_upstream IS NULL OR limit_max_concurrent_upstream > 0);
