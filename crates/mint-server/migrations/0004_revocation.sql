-- Revocation that any replica can carry out, after restarts and crashes (docs/server.md, "Revocation").
--
-- A token GitHub issued is kept sealed (AES-256-GCM under the server's seal key, which is never stored; the
-- sandbox id and the token's SHA-256 are the associated data) for as long as it may need revoking, and the
-- sealed bytes are deleted once GitHub agrees it is dead or it has expired. An event that ends a sandbox's
-- right to a repository queues its tokens here, in the same transaction as the event itself.

ALTER TABLE minted_tokens ADD COLUMN sealed TEXT;
-- Which seal key sealed it (a short id derived from the key, never the key).
ALTER TABLE minted_tokens ADD COLUMN seal_key TEXT;
-- Why the token must die, in words (unix ms when asked). NULL while the sandbox may still use it.
ALTER TABLE minted_tokens ADD COLUMN revoke_reason TEXT;
ALTER TABLE minted_tokens ADD COLUMN revoke_requested_at BIGINT;
ALTER TABLE minted_tokens ADD COLUMN revoke_attempts BIGINT NOT NULL DEFAULT 0;
-- Not before this (unix ms): the backoff after a failed attempt, or GitHub's Retry-After.
ALTER TABLE minted_tokens ADD COLUMN revoke_next_at BIGINT NOT NULL DEFAULT 0;
-- A replica working on it until this (unix ms); one that dies mid-call frees it by itself.
ALTER TABLE minted_tokens ADD COLUMN revoke_lease BIGINT NOT NULL DEFAULT 0;
-- What the last failed attempt met, for operators.
ALTER TABLE minted_tokens ADD COLUMN revoke_error TEXT;

CREATE INDEX minted_tokens_revoke_queue ON minted_tokens (revoke_next_at)
    WHERE revoke_requested_at IS NOT NULL AND revoked_at IS NULL AND sealed IS NOT NULL;
CREATE INDEX minted_tokens_sealed_expiry ON minted_tokens (expires_at) WHERE sealed IS NOT NULL;

-- One mint at a time per sandbox across the fleet: the replica minting holds this lease (unix ms).
ALTER TABLE sandboxes ADD COLUMN mint_lease BIGINT NOT NULL DEFAULT 0;
