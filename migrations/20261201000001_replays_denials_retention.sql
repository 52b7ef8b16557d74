-- Replays: what makes a request the same request again, whatever delivery id brings it (the
-- signature covers only the body): the body's digest, a comment's id with its body's digest, a
-- label event's issue, label and time. A key seen before starts nothing.
CREATE TABLE replay_keys (
    replay_key  TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX replay_keys_by_age ON replay_keys (created_at);

-- Commands refused without a run (the requester may not start runs): one row per requester and
-- issue, so that the permission is asked once and the reply is posted once, across instances.
-- replied_at is NULL until an instance takes the reply on (it is set before the reply is posted,
-- so at most one is).
CREATE TABLE denials (
    installation_id BIGINT,
    repository TEXT NOT NULL,
    number     BIGINT NOT NULL,
    requester  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    replied_at BIGINT,
    PRIMARY KEY (repository, number, requester)
);
CREATE INDEX denials_by_age ON denials (created_at);

-- Retention: old rows are found by age, and a delivery is kept while a job points at it.
CREATE INDEX deliveries_by_age ON deliveries (received_at);
CREATE INDEX jobs_by_finish ON jobs (finished_at);
CREATE INDEX jobs_by_delivery ON jobs (delivery_id);
