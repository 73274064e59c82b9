-- What replicas share beyond the connections: GitHub's pauses and the fleet-wide mint bound.

-- GitHub asked mint-server to slow down for this installation (a 403 or 429 with Retry-After or a rate
-- limit's reset): every replica answers 503 with the remaining wait instead of calling GitHub.
CREATE TABLE installation_pauses (
    installation_id BIGINT PRIMARY KEY,
    until_at BIGINT NOT NULL,
    reason TEXT NOT NULL
);

-- The fleet-wide bound on mints in flight per installation (PostgreSQL; SQLite is one process and counts
-- in memory): one row per slot, taken by one mint at a time with a lease (unix milliseconds) so a slot
-- held by a replica that died frees itself.
CREATE TABLE mint_slots (
    installation_id BIGINT NOT NULL,
    slot BIGINT NOT NULL,
    holder TEXT,
    lease_until BIGINT NOT NULL,
    PRIMARY KEY (installation_id, slot)
);
