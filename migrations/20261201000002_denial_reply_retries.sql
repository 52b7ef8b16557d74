-- A refusal reply GitHub did not take (a 5xx, a rate limit, no connection) is given back and
-- tried again later: how often it was tried, and not before when it is tried next (ms).
ALTER TABLE denials ADD COLUMN reply_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE denials ADD COLUMN retry_at BIGINT NOT NULL DEFAULT 0;
