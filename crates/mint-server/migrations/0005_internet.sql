-- mint-server faces the internet (docs/security.md, "mint-server on the internet").

-- People are matched by GitHub's user id, which never changes hands; a login can be renamed and reused.
-- A member row's id is learnt at that login's first sign-in, and from then on only that id matches.
ALTER TABLE product_members ADD COLUMN user_id BIGINT;
ALTER TABLE web_sessions ADD COLUMN user_id BIGINT;

-- A delivery is a duplicate if its id or its signed body was seen: a body replayed under a new
-- X-GitHub-Delivery (which is not signed) is not processed twice.
ALTER TABLE webhook_deliveries ADD COLUMN body_sha256 TEXT;
CREATE UNIQUE INDEX webhook_deliveries_body ON webhook_deliveries (body_sha256);

-- What the sweep deletes once it has expired.
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
CREATE INDEX oauth_states_age ON oauth_states (created_at);
CREATE INDEX verified_choices_expiry ON verified_choices (expires_at);
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (received_at);
