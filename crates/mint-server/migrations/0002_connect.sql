-- The Integrations page: browser sessions, single-use OAuth states, what a user was verified to be able
-- to bind (for ten minutes), webhook deliveries seen (for dedupe), and what the card shows beside the ids.
-- Session ids and OAuth states are kept as SHA-256; no user token is ever stored.

CREATE TABLE web_sessions (
    id_sha256 TEXT PRIMARY KEY,
    login TEXT,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE oauth_states (
    state_sha256 TEXT PRIMARY KEY,
    session_sha256 TEXT NOT NULL,
    purpose TEXT NOT NULL,
    product_id TEXT,
    installation_hint BIGINT,
    next_path TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE verified_choices (
    session_sha256 TEXT NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    installation_id BIGINT NOT NULL,
    repository_id BIGINT NOT NULL,
    repository TEXT NOT NULL,
    account_login TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (session_sha256, product_id, installation_id, repository_id)
);

CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

ALTER TABLE connections ADD COLUMN installation_url TEXT;
