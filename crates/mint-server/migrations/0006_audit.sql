-- The audit trail (docs/server.md, "The audit trail"): one row per event that changed who may reach what,
-- written in the same transaction as the event. No secret is ever written here: actors are GitHub user ids
-- and logins, tokens are named by the first 12 hex digits of their SHA-256.

CREATE TABLE audit_events (
    -- Random, so two events in the same millisecond keep a stable order for pagination.
    id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL,
    -- Unix milliseconds.
    at BIGINT NOT NULL,
    -- 'user' (a person on the Integrations page, verified by GitHub), 'admin' (the admin API), 'github'
    -- (a signed webhook, or GitHub's answer to a call), 'sandbox', or 'server' (mint-server's own sweeps).
    actor TEXT NOT NULL,
    actor_id BIGINT,
    actor_login TEXT,
    action TEXT NOT NULL,
    sandbox_id TEXT,
    repository TEXT,
    -- The event's particulars as a JSON object.
    detail TEXT NOT NULL
);
-- Rows are kept after their product or sandbox is deleted: the trail outlives what it describes until the
-- retention sweep (--audit-retention) removes it.
CREATE INDEX audit_events_product ON audit_events (product_id, at, id);
CREATE INDEX audit_events_at ON audit_events (at);

-- The repository a token was minted for, as GitHub named it then, so its revocation reads the same.
ALTER TABLE minted_tokens ADD COLUMN repository TEXT;
