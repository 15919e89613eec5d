-- Schema 2: runs, their journals and inboxes. A run's record is the model's JSON; the
-- columns beside it are what listings, pins, retention and compare-and-swap need.

CREATE TABLE runs (
    id              text COLLATE "C" PRIMARY KEY,
    workflow        text COLLATE "C" NOT NULL,
    status          text NOT NULL,
    created_ms      bigint NOT NULL,
    -- The record's revision: a save names the one it follows (compare-and-swap).
    revision        bigint NOT NULL,
    -- Journal entries below this are reflected in the record.
    journaled       integer NOT NULL,
    -- Done for good: its pins released, deleted by retention after `ended_ms`.
    closed          boolean NOT NULL,
    ended_ms        bigint,
    idempotency_key text COLLATE "C",
    -- Search fields' values from the input: {"field": "value"}.
    search          jsonb NOT NULL,
    record          jsonb NOT NULL
);
-- One run per workflow and client key.
CREATE UNIQUE INDEX runs_by_idempotency_key ON runs (workflow, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Listings, newest first.
CREATE INDEX runs_by_created ON runs (created_ms, id);
CREATE INDEX runs_by_status ON runs (status, created_ms, id);
CREATE INDEX runs_by_workflow_status ON runs (workflow, status, created_ms, id);
CREATE INDEX runs_by_search ON runs USING gin (search jsonb_path_ops);
-- Retention.
CREATE INDEX runs_by_ended ON runs (ended_ms, id) WHERE closed;

CREATE TABLE journal (
    run_id text COLLATE "C" NOT NULL,
    seq    integer NOT NULL,
    entry  jsonb NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Messages for a run's await steps, by id (a ULID: oldest first).
CREATE TABLE inbox (
    run_id     text COLLATE "C" NOT NULL,
    message_id text COLLATE "C" NOT NULL,
    message    jsonb NOT NULL,
    PRIMARY KEY (run_id, message_id)
);
