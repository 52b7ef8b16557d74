-- Named leases: one instance at a time does a shared chore (the lost-delivery sweep), on SQLite
-- and Postgres alike.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- When a queued job was acknowledged on GitHub (👀 and its progress comment) while it waited
-- for a worker; NULL until then.
ALTER TABLE jobs ADD COLUMN acknowledged_at BIGINT;
