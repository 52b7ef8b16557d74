-- One schema for SQLite and Postgres: only types both understand (TEXT, BIGINT, DOUBLE
-- PRECISION); times are Unix milliseconds; booleans are 0 / 1.

CREATE TABLE deliveries (
    delivery_id     TEXT PRIMARY KEY,
    event           TEXT NOT NULL,
    action          TEXT,
    installation_id BIGINT,
    repository      TEXT,
    received_at     BIGINT NOT NULL,
    -- 'queued' when it made a job, otherwise why it made none
    outcome         TEXT NOT NULL
);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    delivery_id      TEXT REFERENCES deliveries (delivery_id),
    kind             TEXT NOT NULL,
    source           TEXT NOT NULL,
    state            TEXT NOT NULL,
    installation_id  BIGINT,
    repository       TEXT NOT NULL,
    clone_url        TEXT,
    default_branch   TEXT,
    number           BIGINT,
    is_pull_request  BIGINT NOT NULL DEFAULT 0,
    comment_id       BIGINT,
    requester        TEXT NOT NULL,
    prompt           TEXT NOT NULL,
    context          TEXT NOT NULL DEFAULT '{}',
    attempts         BIGINT NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    result           TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    updated_at       BIGINT NOT NULL
);

CREATE INDEX jobs_by_state ON jobs (state, created_at);
CREATE INDEX jobs_by_target ON jobs (repository, number, state);
CREATE INDEX jobs_by_installation ON jobs (installation_id, state);

CREATE TABLE run_events (
    run_id     TEXT NOT NULL REFERENCES jobs (id),
    seq        BIGINT NOT NULL,
    type       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE installations (
    id           BIGINT PRIMARY KEY,
    account      TEXT NOT NULL,
    -- 'active' | 'suspended' | 'deleted'
    state        TEXT NOT NULL,
    repositories TEXT NOT NULL DEFAULT '[]',
    updated_at   BIGINT NOT NULL
);

-- One run at a time per issue or pull request, even with several instances claiming at once:
-- a second claim on the same target fails on this index instead of running beside the first.
CREATE UNIQUE INDEX one_running_job_per_target ON jobs (repository, number)
    WHERE state = 'running' AND kind IN ('run', 'iterate');
