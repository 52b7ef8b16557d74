-- Named leases: one instance at a time does a shared chore (the lost-delivery sweep), on SQLite
-- and Postgres alike.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- When a job was acknowledged on GitHub (👀 and its progress comment), by the worker or, while
-- it waited for one, by the acknowledgement lane; NULL until then, -1 when the lane left it to
-- its worker.
ALTER TABLE jobs ADD COLUMN acknowledged_at BIGINT;
