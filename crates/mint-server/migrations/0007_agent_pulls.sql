-- The pull requests coding tasks opened (head branch under the agents' prefix), as GitHub's `pull_request` and
-- `pull_request_review` webhooks report them: what the Integrations card lists with their state, review and
-- ticket, in the product's current repository and the ones before it. Titles and links only; no code.

CREATE TABLE agent_pulls (
    repository_id BIGINT NOT NULL,
    number BIGINT NOT NULL,
    installation_id BIGINT NOT NULL,
    -- owner/name as GitHub last reported it.
    repository TEXT NOT NULL,
    title TEXT NOT NULL,
    html_url TEXT NOT NULL,
    head_ref TEXT NOT NULL,
    base_ref TEXT NOT NULL,
    -- 'open', 'draft', 'merged' or 'closed'.
    state TEXT NOT NULL,
    -- The latest review's verdict: 'approved', 'changes_requested' or 'commented'; NULL before any.
    review_state TEXT,
    -- The ticket `mint publish --ticket` put at the end of the body ("Ticket: ID").
    ticket TEXT,
    -- Unix seconds: when mint-server first heard of it, and of its latest change.
    opened_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, number)
);
CREATE INDEX agent_pulls_updated ON agent_pulls (repository_id, updated_at);
