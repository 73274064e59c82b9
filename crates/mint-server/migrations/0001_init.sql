-- One schema for SQLite and PostgreSQL: TEXT ids, BIGINT unix seconds, no backend-specific types.
-- What is stored is listed in docs/server.md; no GitHub token, user token or key is ever stored.

CREATE TABLE products (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The GitHub logins allowed to manage a product (the Integrations page).
CREATE TABLE product_members (
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    login TEXT NOT NULL,
    PRIMARY KEY (product_id, login)
);

-- A product's GitHub connection: which installation, which one repository (by numeric id), and whether
-- it works. A disconnected product keeps its row with status 'not_connected'.
CREATE TABLE connections (
    product_id TEXT PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    installation_id BIGINT,
    repository_id BIGINT,
    repository TEXT,
    account_login TEXT,
    account_type TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX connections_installation ON connections (installation_id);

-- A sandbox's credential is shown once; only its SHA-256 is kept.
CREATE TABLE sandboxes (
    id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    credential_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sandboxes_product ON sandboxes (product_id);

-- Every token minted for a sandbox, by the SHA-256 of the token, so teardown knows what to revoke.
CREATE TABLE minted_tokens (
    token_sha256 TEXT PRIMARY KEY,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    installation_id BIGINT NOT NULL,
    repository_id BIGINT NOT NULL,
    minted_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX minted_tokens_sandbox ON minted_tokens (sandbox_id);
