-- Schema 6: nodes, and the leases under which they own runs. A run is driven by its owner
-- only; every write of it names the epoch it was claimed under, which grows with every new
-- owner, so that a node that lost a run (its lease ran out, or another node took the run)
-- writes nothing more of it (fencing).

-- The time by PostgreSQL's clock, ms since the Unix epoch: what leases are measured by,
-- so that the nodes' clocks need not agree.
CREATE FUNCTION flowhost_now_ms() RETURNS bigint LANGUAGE sql VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

-- Every node that registered: what it said of itself, its last heartbeat, and when its
-- lease ends unless renewed.
CREATE TABLE nodes (
    id           text COLLATE "C" PRIMARY KEY,
    address      text NOT NULL,
    version      text NOT NULL,
    started_ms   bigint NOT NULL,
    heartbeat_ms bigint NOT NULL,
    expires_ms   bigint NOT NULL
);

-- The run's owner (a node id; none for runs from before schema 6, claimed by whichever
-- node comes first), the incarnation of that node (one per process) that holds it, and the
-- epoch it holds the run under.
ALTER TABLE runs ADD COLUMN owner text COLLATE "C", ADD COLUMN incarnation text COLLATE "C",
    ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
CREATE INDEX runs_unfinished_by_owner ON runs (owner)
    WHERE status IN ('pending', 'running', 'compensating');

-- The epoch each journal entry was written under: one owner per epoch.
ALTER TABLE journal ADD COLUMN epoch bigint NOT NULL DEFAULT 0;

-- The run an outbox entry's gate waits on, so that a claim finds the orphans its earlier
-- owners left.
ALTER TABLE outbox ADD COLUMN run_id text COLLATE "C"
    GENERATED ALWAYS AS (entry -> 'gate' ->> 'run_id') STORED;
CREATE INDEX outbox_by_run ON outbox (run_id) WHERE run_id IS NOT NULL;
